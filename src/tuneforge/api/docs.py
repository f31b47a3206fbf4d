"""The API's documentation page, Swagger UI at `/docs`, with its script and styles served by
the studio itself (from the `fastapi-offline` package's copy), so it works on a machine without
internet, as a self-hosted studio often is. FastAPI's own page fetches them from a CDN and stays
blank offline. (ReDoc is not offered: it loads its logo from its maker's CDN.)"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = "/api/docs-assets"
SWAGGER_OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def install(app: FastAPI, openapi_url: str) -> None:
    """Add `/docs` and the files it loads to `app` (made with no docs of its own)."""
    assets = files("fastapi_offline").joinpath("static")
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url=SWAGGER_OAUTH2_REDIRECT,
        )

    @app.get(SWAGGER_OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

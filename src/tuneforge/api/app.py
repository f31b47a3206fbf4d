"""The application factory: API, web UI and (by default) the job runner in one process."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tuneforge import __version__
from tuneforge.api import docs, errors, openapi, unknown
from tuneforge.api.job_feeds import JobFeeds
from tuneforge.api.limits import BodyLimit
from tuneforge.api.routes import (
    auth,
    chat,
    datasets,
    evaluations,
    exports,
    graders,
    health,
    jobs,
    models,
    openai,
    quotas,
    secrets,
    synthesis,
    trainings,
)
from tuneforge.api.stopping import Stopping
from tuneforge.db.session import make_engine, make_sessionmaker, migrate, transaction
from tuneforge.inference.client import InferenceClient
from tuneforge.inference.supervisor import InferenceProcess
from tuneforge.inference.warmup import warm
from tuneforge.jobs.executor_check import check_executor
from tuneforge.jobs.executors import make_runner
from tuneforge.services import accounts
from tuneforge.services.auth import LoginLimiter, SessionSigner
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

API_PREFIX = "/api/v1"
UPLOAD_PATHS = frozenset(
    API_PREFIX + path for path in (datasets.UPLOAD_PATH, synthesis.UPLOAD_PATH)
)
# NiceGUI posts the files of each upload widget to a route of its own (see `ui/datasets.py`).
UI_UPLOAD_PATTERNS = (re.compile(r"/_nicegui/client/[0-9a-f-]+/upload/[0-9]+"),)
#: Chat requests carry their images inside (base64): `max_chat_request_bytes`.
CHAT_PATHS = (API_PREFIX + "/chat", "/v1/chat/completions")
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, ui: bool = True) -> FastAPI:
    """Build the app. The database is migrated and the runner started when it starts serving."""
    settings = settings or Settings()
    settings.check_safe()
    if settings.run_jobs:
        check_executor(settings)  # refuse now, with the reason, rather than at the first job
    engine = make_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.stopping.attach()
        migrate(engine)
        if settings.auth_mode == "none":
            with transaction(app.state.sessions) as session:
                accounts.ensure_user(session, accounts.LOCAL_USER, is_admin=True)
        if settings.run_jobs:
            app.state.runner = make_runner(settings, app.state.sessions)
            app.state.runner.start()
        log.info("TuneForge %s serving with %s auth", __version__, settings.auth_mode)
        # The bundled model loads in the background, so the first chat answers at once.
        warming = asyncio.create_task(warm(app.state.inference, settings))
        try:
            yield
        finally:
            warming.cancel()
            if app.state.runner is not None:
                app.state.runner.stop()
            await app.state.inference.close()
            app.state.inference.process.stop()
            engine.dispose()

    app = FastAPI(
        title="TuneForge",
        version=__version__,
        description="Fine-tune Gemma models: datasets, training, chat, evaluation and export.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    docs.install(app, f"{API_PREFIX}/openapi.json")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    # Sessions of requests that only read (`api/deps.py`): on SQLite they begin without a lock.
    app.state.read_sessions = make_sessionmaker(engine.execution_options(read_only=True))
    app.state.store = ArtifactStore(settings.resolved_storage_url, settings.storage_options)
    app.state.runner = None
    app.state.stopping = Stopping()  # set by SIGTERM under `tuneforge serve`: streams end
    app.state.job_feeds = JobFeeds(
        app.state.sessions, poll=settings.poll_interval, stopping=app.state.stopping
    )
    app.state.inference = InferenceClient(InferenceProcess(settings))
    app.state.signer = SessionSigner(settings.session_secret, settings.session_max_age)
    app.state.limiter = LoginLimiter(settings.login_attempts_per_minute)
    errors.install(app)
    openapi.install(app)
    routers = (
        *(health, auth, jobs, datasets, models, exports, trainings, graders, evaluations),
        *(chat, secrets, synthesis, quotas),
    )
    for module in routers:
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(openai.router)
    for prefix in (API_PREFIX, openai.router.prefix):
        unknown.install(app, prefix)

    app.add_middleware(
        BodyLimit,
        default=settings.max_request_bytes,
        upload=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
        upload_patterns=UI_UPLOAD_PATTERNS if ui else (),
        path_limits=dict.fromkeys(CHAT_PATHS, settings.max_chat_request_bytes),
    )
    if ui:
        from tuneforge.ui import mount

        mount(app)
    return app

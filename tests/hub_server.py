"""A Hugging Face Hub on loopback: a real HTTP server answering the calls that the installed
`huggingface_hub` makes to create a model repository, commit files to it and list them back,
and to read a dataset repository's file sizes and download its files.

Every request needs `Authorization: Bearer <token>` with the configured token (401 otherwise,
with the Hub's own "Invalid credentials" message). The token's user may create repositories in
their own namespace only (403 elsewhere). Preupload answers "regular" for every file, so file
contents arrive base64-encoded inside the commit (no LFS or Xet storage is faked). Only the
`main` revision exists. A dataset's file is sent with its length announced, or streamed without
it when `announce_length` is off (so that only counting the bytes can bound the download); its
size is always in `X-Linked-Size`, as for the Hub's LFS files. With `tell_sizes` off, a dataset's
info leaves out its files' sizes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.server import free_port

_INVALID_TOKEN = "Invalid credentials in Authorization header"
DATASET_SHA = "d" * 40  # every dataset's one commit


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    headers = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _git_oid(content: bytes) -> str:
    """A file's git blob id, which the Hub reports and the client compares to skip unchanged
    files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


@dataclass
class FakeHub:
    token: str = "hf_test"
    user: str = "tester"
    url: str = ""
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id → path → bytes
    private: dict[str, bool] = field(default_factory=dict)
    commits: dict[str, list[str]] = field(default_factory=dict)  # repo id → commit summaries
    card_metadata: list[dict[str, Any]] = field(default_factory=list)  # validated model cards
    datasets: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id → path → bytes
    announce_length: bool = True
    tell_sizes: bool = True  # whether a dataset's info gives its files' sizes
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> FakeHub:
        """Serve on a free loopback port; `url` is then the endpoint to give HfApi."""
        port = free_port()
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake Hub did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def authenticate(request: Request, call_next: Any) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return _error(401, _INVALID_TOKEN)
            response: Response = await call_next(request)
            return response

        @app.post("/api/repos/create")
        async def create(request: Request) -> JSONResponse:
            body = await request.json()
            if body.get("type", "model") != "model":
                return _error(400, "only model repositories here")
            namespace = body.get("organization") or self.user
            if namespace != self.user:
                return _error(403, f"You don't have the rights to create a repo under {namespace}")
            repo_id = f"{namespace}/{body['name']}"
            if repo_id in self.repos:  # the Hub's 409 carries the url, which the client reads
                message = "You already created this model repo"
                return JSONResponse(
                    {"error": message, "url": f"{self.url}/{repo_id}"},
                    status_code=409,
                    headers={"X-Error-Message": message},
                )
            self.repos[repo_id] = {}
            self.commits[repo_id] = []
            self.private[repo_id] = (
                body.get("visibility", "private" if body.get("private") else "public") == "private"
            )
            return JSONResponse(
                {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": uuid.uuid4().hex}
            )

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request) -> JSONResponse:
            """A model card's metadata block must be a YAML mapping (the client asks before
            committing a README.md)."""
            content = (await request.json())["content"]
            _, _, rest = content.partition("---\n")
            header = rest.partition("\n---")[0] if content.startswith("---\n") else ""
            try:
                data = yaml.safe_load(header) if header else {}
            except yaml.YAMLError as exc:
                return JSONResponse({"errors": [{"message": str(exc)}]}, status_code=400)
            if not isinstance(data, dict):
                errors = [{"message": "the metadata must be a mapping"}]
                return JSONResponse({"errors": errors}, status_code=400)
            self.card_metadata.append(data)
            return JSONResponse({"errors": [], "warnings": []})

        @app.get("/api/models/{namespace}/{name}")
        @app.get("/api/models/{namespace}/{name}/revision/{revision}")
        async def info(namespace: str, name: str, revision: str = "main") -> JSONResponse:
            repo_id = f"{namespace}/{name}"
            if problem := self._missing(repo_id, revision):
                return problem
            return JSONResponse(
                {
                    "id": repo_id,
                    "private": self.private[repo_id],
                    "sha": self._sha(repo_id),
                    "siblings": [{"rfilename": path} for path in sorted(self.repos[repo_id])],
                }
            )

        @app.post("/api/models/{namespace}/{name}/preupload/{revision}")
        async def preupload(
            namespace: str, name: str, revision: str, request: Request
        ) -> JSONResponse:
            repo_id = f"{namespace}/{name}"
            if problem := self._missing(repo_id, revision):
                return problem
            files = self.repos[repo_id]
            answers = [
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": _git_oid(files[item["path"]]) if item["path"] in files else None,
                }
                for item in (await request.json())["files"]
            ]
            return JSONResponse({"files": answers})

        @app.post("/api/models/{namespace}/{name}/commit/{revision}")
        async def commit(
            namespace: str, name: str, revision: str, request: Request
        ) -> JSONResponse:
            repo_id = f"{namespace}/{name}"
            if problem := self._missing(repo_id, revision):
                return problem
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line]
            header, operations = lines[0], lines[1:]
            if header["key"] != "header":
                return _error(400, "the first line must be the commit header")
            files = dict(self.repos[repo_id])
            for op in operations:
                value = op["value"]
                if op["key"] == "file" and value.get("encoding") == "base64":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif op["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif op["key"] == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: c for p, c in files.items() if not p.startswith(folder)}
                else:  # lfsFile: preupload never asks for LFS, so no LFS object exists
                    return _error(400, f"unexpected commit operation {op['key']}")
            self.repos[repo_id] = files
            self.commits[repo_id].append(header["value"]["summary"])
            oid = self._sha(repo_id)
            return JSONResponse(
                {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}
            )

        @app.get("/api/models/{namespace}/{name}/tree/{revision}")
        @app.get("/api/models/{namespace}/{name}/tree/{revision}/{path:path}")
        async def tree(
            namespace: str, name: str, revision: str, request: Request, path: str = ""
        ) -> JSONResponse:
            repo_id = f"{namespace}/{name}"
            if problem := self._missing(repo_id, revision):
                return problem
            recursive = request.query_params.get("recursive", "false").lower() == "true"
            return JSONResponse(self._tree(self.repos[repo_id], path.strip("/"), recursive))

        @app.get("/api/datasets/{namespace}/{name}")
        @app.get("/api/datasets/{namespace}/{name}/revision/{revision}")
        async def dataset_info(
            namespace: str, name: str, request: Request, revision: str = "main"
        ) -> JSONResponse:
            """The files' sizes come only when asked for (`blobs=true`), as on the Hub."""
            repo_id = f"{namespace}/{name}"
            if problem := self._missing_dataset(repo_id, revision):
                return problem
            blobs = request.query_params.get("blobs", "false").lower() == "true" and self.tell_sizes
            files = self.datasets[repo_id]
            siblings = [
                {"rfilename": path} | ({"size": len(files[path])} if blobs else {})
                for path in sorted(files)
            ]
            info = {"id": repo_id, "sha": DATASET_SHA, "private": False, "siblings": siblings}
            return JSONResponse(info)

        @app.get("/api/datasets/{namespace}/{name}/tree/{revision}")
        @app.get("/api/datasets/{namespace}/{name}/tree/{revision}/{path:path}")
        async def dataset_tree(
            namespace: str, name: str, revision: str, request: Request, path: str = ""
        ) -> JSONResponse:
            repo_id = f"{namespace}/{name}"
            if problem := self._missing_dataset(repo_id, revision):
                return problem
            recursive = request.query_params.get("recursive", "false").lower() == "true"
            entries = self._tree(self.datasets[repo_id], path.strip("/"), recursive)
            if path.strip("/") and not entries:
                return _error(404, "Entry not found", "EntryNotFound")
            return JSONResponse(entries)

        @app.api_route(
            "/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"]
        )
        async def resolve(
            namespace: str, name: str, revision: str, path: str, request: Request
        ) -> Response:
            repo_id = f"{namespace}/{name}"
            if problem := self._missing_dataset(repo_id, revision):
                return problem
            content = self.datasets[repo_id].get(path)
            if content is None:
                return _error(404, "Entry not found", "EntryNotFound")
            headers = {
                "X-Repo-Commit": DATASET_SHA,
                "ETag": f'"{_git_oid(content)}"',
                "X-Linked-Size": str(len(content)),  # as the Hub tells an LFS file's size
            }
            head = request.method == "HEAD"
            if self.announce_length:
                headers["Content-Length"] = str(len(content))
                return Response(b"" if head else content, headers=headers)
            chunks = [] if head else [content[i : i + 8192] for i in range(0, len(content), 8192)]
            return StreamingResponse(iter(chunks), headers=headers)

        return app

    def _missing_dataset(self, repo_id: str, revision: str) -> JSONResponse | None:
        if repo_id not in self.datasets:
            return _error(404, "Repository not found", "RepoNotFound")
        if revision not in ("main", DATASET_SHA):
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return None

    def _missing(self, repo_id: str, revision: str) -> JSONResponse | None:
        if repo_id not in self.repos:
            return _error(404, "Repository not found", "RepoNotFound")
        if revision != "main":
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return None

    def _sha(self, repo_id: str) -> str:
        digest = hashlib.sha1(usedforsecurity=False)
        for path, content in sorted(self.repos[repo_id].items()):
            digest.update(f"{path}\0{_git_oid(content)}\n".encode())
        return digest.hexdigest()

    def _tree(self, files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, Any]]:
        """The files and folders under `folder`: all of them, or its direct children only."""
        prefix = f"{folder}/" if folder else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            parts = path.split("/")
            for depth in range(prefix.count("/") + 1, len(parts)):  # the folders on the way
                sub = "/".join(parts[:depth])
                entries.setdefault(sub, {"type": "directory", "path": sub, "oid": _git_oid(b"")})
            entries[path] = {
                "type": "file",
                "path": path,
                "size": len(content),
                "oid": _git_oid(content),
            }
        depth = prefix.count("/")
        return [e for p, e in entries.items() if recursive or p.count("/") == depth]

"""Every knob of TuneForge, read from `TUNEFORGE_*` environment variables (or a `.env` file).

Each field carries a description: `docs/configuration.md` is generated from them
(`tuneforge config-docs > docs/configuration.md`) and a test keeps it current.
"""

from __future__ import annotations

import ipaddress
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AuthMode = Literal["auto", "none", "local", "header"]


class UnsafeConfiguration(RuntimeError):
    """The configuration would expose the studio; the server refuses to start."""


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("~/.tuneforge"),
        description="Where TuneForge keeps its embedded database, artifacts and caches.",
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where models and tokenizers are cached once converted (the bundled Gemma 3 "
        "270M, hub downloads). Default: `{data_dir}/models`.",
    )
    catalog_file: Path | None = Field(
        default=None,
        description="A YAML file of extra models, listed after the built-in Gemma ones: a "
        "`models:` list shaped like the built-in `catalog.yaml`, each entry either `source: "
        "local` with a `path` (a transformers directory on the server; relative paths start at "
        "the file's folder) or `source: hub` with a `hub_id`. Ids must differ from every other "
        "entry's. Edits are picked up without a restart.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database. Default: SQLite at `{data_dir}/tuneforge.db`. "
        "PostgreSQL: `postgresql+psycopg://user:password@host:5432/tuneforge`.",
    )
    storage_url: str | None = Field(
        default=None,
        description="Where artifacts live (fsspec URL). Default: `file://{data_dir}/artifacts`. "
        "Also `s3://bucket/prefix` or `gs://bucket/prefix` with the `cloud` extra.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Options passed to the storage filesystem, as JSON, e.g. `{"client_kwargs": '
        '{"endpoint_url": "http://127.0.0.1:9000"}}` for an S3-compatible server.',
    )
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="How jobs run: `local` runs each job in its own OS process on this machine; "
        "`ray` runs each job on the Ray cluster at `ray_address` (the `ray` extra), with the "
        "resources it asks for. Ray needs an artifact store every node reaches (`storage_url` "
        "on S3 or GCS).",
    )
    ray_address: str | None = Field(
        default=None,
        description="With `executor=ray`: the Ray cluster to join, as `ray.init` takes it "
        "(`auto` for the cluster this machine's `ray start` joined, `host:6379`, or "
        "`ray://host:10001` for Ray Client).",
    )
    ray_namespace: str = Field(
        default="tuneforge",
        description="With `executor=ray`: the Ray namespace this server's job actors live in "
        "(servers sharing one cluster use one namespace each).",
    )
    run_jobs: bool = Field(
        default=True,
        description="Whether `tuneforge serve` also runs queued jobs. Turn off when dedicated "
        "`tuneforge worker` processes do it.",
    )
    max_concurrent_jobs: int = Field(
        default=2, ge=1, le=256, description="How many jobs one runner executes at once."
    )
    heartbeat_interval: float = Field(
        default=2.0, gt=0, description="Seconds between a worker's heartbeats."
    )
    heartbeat_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds without a heartbeat after which a running job is marked failed "
        "with reason `worker lost`.",
    )
    cancel_timeout: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a worker has to stop after a cancel (it may save a checkpoint) "
        "before it is killed.",
    )
    poll_interval: float = Field(
        default=0.5, gt=0, description="Seconds between the runner's looks at the job queue."
    )
    inference_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="Memory the inference server may fill with loaded models (GB); past it, the "
        "least recently used model is dropped. Default: 40% of the machine's RAM.",
    )
    warm_models: list[str] = Field(
        default_factory=lambda: ["gemma-3-270m"],
        description="Catalog ids the inference server loads in the background when the studio "
        "starts, so the first chat answers at once (those available offline here; empty: none).",
    )
    hub_endpoint: str = Field(
        default="https://huggingface.co",
        description="The Hugging Face Hub that exports to the Hub go to (a mirror or a private "
        "Hub deployment can stand in).",
    )
    trusted_endpoint_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (names or addresses) on this server's own network that every user's "
        "judge, S3 and MLflow endpoints may reach, such as a local vLLM, MinIO or MLflow. Other "
        "private, loopback and link-local addresses are for administrators' endpoints only.",
    )
    tracking_server_credentials: bool = Field(
        default=False,
        description="Whether training runs of users who stored no `WANDB_API_KEY` / "
        "`MLFLOW_TRACKING_URI` secret of their own report to Weights & Biases or MLflow with "
        "this server's (the `WANDB_*` / `MLFLOW_*` variables of its environment, which job "
        "workers receive only then). Off: such runs are refused at launch.",
    )
    export_directories: list[Path] = Field(
        default_factory=list,
        description="Server directories administrators may export models into (and below); "
        "empty: exports to a server directory are off.",
    )
    auth: AuthMode = Field(
        default="auto",
        description="`none`: one implicit local user (only on a loopback address). `local`: user "
        "accounts with passwords and API tokens. `header`: trust a user id header set by a "
        "fronting gateway. `auto`: `none` on a loopback address, `local` elsewhere.",
    )
    auth_header: str = Field(
        default="X-Forwarded-User",
        description="In `header` mode, the request header that carries the user name.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="In `header` mode, the addresses (CIDR) allowed to set the user header.",
    )
    proxy_secret: str | None = Field(
        default=None,
        description="In `header` mode, a shared secret the gateway sends in `X-TuneForge-Proxy-"
        "Secret`; when set, requests from any address are trusted if they carry it.",
    )
    auth_trust_loopback: bool | None = Field(
        default=None,
        description="In `header` mode, whether requests from this machine (loopback addresses "
        "in `trusted_proxies`) may set the user header without the proxy secret. Default "
        "(unset): yes when no `proxy_secret` is set (a gateway on this machine), no when one is "
        "(then every request, the local gateway's too, must carry the secret).",
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port the server listens on.")
    secret_key: str | None = Field(
        default=None,
        description="Signs session cookies and encrypts the users' secrets (changing it makes "
        "them unreadable: they must be set again). When unset on a loopback address, a random "
        "key is generated once and kept in `{data_dir}/secret_key`; elsewhere it must be set.",
    )
    session_max_age: int = Field(
        default=7 * 24 * 3600, gt=0, description="Seconds a login session stays valid."
    )
    login_attempts_per_minute: int = Field(
        default=5,
        ge=1,
        description="Failed logins allowed per minute for one user name from one address.",
    )
    max_request_bytes: int = Field(
        default=1 << 20, gt=0, description="Largest request body accepted, except for uploads."
    )
    max_upload_bytes: int = Field(
        default=2 << 30, gt=0, description="Largest upload accepted (datasets, documents)."
    )
    max_chat_request_bytes: int = Field(
        default=64 << 20,
        gt=0,
        description="Largest body of a chat request (`POST /api/v1/chat`, "
        "`POST /v1/chat/completions`): images arrive inside it as base64, a third larger than "
        "their files.",
    )
    chat_image_max_bytes: int = Field(
        default=20 << 20,
        gt=0,
        description="Largest image file in a chat message, checked before it is decoded (the "
        "same default as an image in a dataset).",
    )
    chat_image_max_pixels: int = Field(
        default=50_000_000,
        gt=0,
        description="Largest image in a chat message, in pixels (width x height, read from the "
        "file's header before decoding; the same default as an image in a dataset).",
    )
    image_url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose images users may link in a chat (an `image_url` part with an "
        "http(s) URL instead of a `data:` URL); the server fetches them within "
        "`chat_image_max_bytes` and 10 seconds, without following redirects. Empty: only `data:` "
        "URLs. A host on this server's own network must also be in `trusted_endpoint_hosts`.",
    )
    quota_storage_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Each user's storage quota by default, in bytes: what their datasets, "
        "models and exports take, and what a Hugging Face import may download. Unset: no "
        "limit. An administrator sets a user's own quota with `tuneforge admin quota` or "
        "`PUT /api/v1/admin/users/{username}/quota`; administrators have none by default.",
    )
    quota_concurrent_jobs: int | None = Field(
        default=None,
        ge=0,
        description="How many jobs each user may have queued or running at once, by default. "
        "Unset: no limit.",
    )
    quota_jobs_per_day: int | None = Field(
        default=None,
        ge=0,
        description="How many jobs each user may start in 24 hours, by default. Unset: no limit.",
    )
    hub_import_max_bytes: int = Field(
        default=20 << 30,
        gt=0,
        description="The most a user's Hugging Face dataset import may download (checked "
        "against the Hub's file sizes before downloading and counted while downloading); a "
        "storage quota lowers it to the space the user has left. Administrators' imports are "
        "bounded only by their own quota, if they have one.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="How much the server logs."
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def auth_mode(self) -> Literal["none", "local", "header"]:
        """The effective auth mode (`auto` resolved by the bind address)."""
        if self.auth == "auto":
            return "none" if is_loopback(self.host) else "local"
        return self.auth

    @property
    def trusts_loopback(self) -> bool:
        """In `header` mode, whether loopback addresses may set the user header without the
        proxy secret (`auth_trust_loopback`, by default only when no secret is set)."""
        if self.auth_trust_loopback is not None:
            return self.auth_trust_loopback
        return not self.proxy_secret

    @property
    def inference_budget_bytes(self) -> int:
        if self.inference_memory_gb is not None:
            return int(self.inference_memory_gb * 2**30)
        import psutil

        return int(psutil.virtual_memory().total * 0.4)

    @property
    def inference_socket(self) -> Path:
        """The inference server's Unix socket, in a private folder of the temporary directory
        (a socket path must stay under 108 bytes; `data_dir` may be longer)."""
        import hashlib
        import os
        import tempfile

        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"tuneforge-{os.getuid()}-{digest}" / "inference.sock"

    @property
    def models_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").expanduser()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'tuneforge.db'}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{self.data_dir / 'artifacts'}"

    @cached_property
    def session_secret(self) -> str:
        """The cookie-signing key: configured, or generated once per data dir on loopback."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def check_safe(self) -> None:
        """Fail closed on configurations that would expose the studio to the network."""
        if is_loopback(self.host):
            return
        if self.auth_mode == "none":
            raise UnsafeConfiguration(
                f"Refusing to serve without authentication on {self.host}: set "
                "TUNEFORGE_AUTH=local (or header), or bind to 127.0.0.1."
            )
        if not self.secret_key:
            raise UnsafeConfiguration(
                f"Refusing to serve on {self.host} with the default secret key: set "
                "TUNEFORGE_SECRET_KEY to a long random string (e.g. `openssl rand -hex 32`)."
            )
        if self.auth_mode == "header" and not self.proxy_secret and not self.trusted_proxies:
            raise UnsafeConfiguration(
                "Header auth needs TUNEFORGE_TRUSTED_PROXIES or TUNEFORGE_PROXY_SECRET."
            )


def reference_markdown() -> str:
    """The configuration reference, generated from the field descriptions."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `tuneforge config-docs`; do not edit by hand. Every setting is read from",
        "the environment variable shown (or a `.env` file in the working directory).",
        "",
        "| Variable | Default | Description |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default: object = field.default_factory()  # type: ignore[call-arg]
        else:
            default = field.default
        shown = "(unset)" if default is None else f"`{default}`"
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `TUNEFORGE_{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"

"""The service's settings: one pydantic-settings class, environment prefix ``ROBUSTGRID_``.

Every path default is absolute (resolved against the working directory when the settings are built), because
the values travel to Ray job drivers that run in another working directory.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd().resolve() / 'robustgrid.db'}"  # four slashes: sqlite:////abs/path


def _default_storage_path() -> str:
    return str(Path.cwd().resolve() / "ray_results")


def _default_published_dir() -> str | None:
    """<repo>/../shared/data/published (the studies' published results) when it exists; else nothing is loaded."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "published"
    return str(path) if path.is_dir() else None


class Settings(BaseSettings):
    """Service configuration; each field reads ``ROBUSTGRID_<FIELD>`` (e.g. ``ROBUSTGRID_RAY_ADDRESS``)."""

    model_config = SettingsConfigDict(env_prefix="ROBUSTGRID_", extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)  # SQLAlchemy URL
    data_root: str | None = None  # where datasets live or are downloaded to
    # where a request's `data_root` may point besides `data_root` itself: it must resolve (symlinks and `..`
    # followed) inside one of these (service.submission.data_root_of). Environment: paths separated by ':' or a
    # JSON list. Empty (the default): requests may name `data_root` or a directory below it, nothing else.
    data_roots: Annotated[list[str], NoDecode] = []
    # "" = start (or reuse) a local Ray head; else the dashboard URL (http://head:8265) or the GCS address
    # (head:6379, dashboard assumed at dashboard_port on the same host).
    ray_address: str = ""
    storage_path: str = Field(default_factory=_default_storage_path)  # Ray results and checkpoints (dir or URI)
    dashboard_host: str = "127.0.0.1"  # local head: interface the Ray dashboard binds to
    dashboard_port: int = 8265  # local head: Ray dashboard / job REST API port
    ray_port: int = 0  # local head: GCS port; 0 = a free port (6379 is often Redis's)
    ray_num_cpus: int | None = None  # local head: CPUs to advertise (None = all cores)
    ray_temp_dir: str | None = None  # local head: Ray's temp/session dir (None = Ray's default, /tmp/ray)
    # local head: `ray start --node-ip-address`, the interface it advertises to joining hosts. Ray 2.60 replaces a
    # loopback value by the host's reachable IP and binds GCS and raylet to all interfaces (the README section "Running on a Ray cluster")
    ray_node_ip: str = "127.0.0.1"
    # local head: Python modules its worker processes import when they start (Ray's RAY_preload_python_modules,
    # comma-separated; "" = none), so a sweep's trial actors start with torch and the trainable loaded. Off by
    # default: on a 2-core host it delayed the first trial (B5, docs/benchmarks.md); "workers.trainable" turns it on
    ray_preload_modules: str = ""
    max_trials: int = Field(2000, ge=1)  # largest sweep (trials) the API accepts; checked before expansion
    max_body_bytes: int = Field(1_048_576, ge=1)  # largest request body (bytes); larger: 413
    max_description_chars: int = Field(10_000, ge=0)  # longest sweep description (characters); longer: 422
    gpu_memory_gib: float | None = Field(None, gt=0)  # memory of one GPU, GiB; None: from Ray's accelerator type
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    web_session_hours: float = Field(12.0, gt=0, le=24 * 366)  # a results-page login lasts this long (absolute), h
    cookie_secure: bool = False  # the session cookie is `Secure` (sent over HTTPS only): set it when served by HTTPS
    # published results loaded once as reference sweeps by `serve` and `demo` (service.references); None: none
    published_dir: str | None = Field(default_factory=_default_published_dir)

    @field_validator("storage_path")
    @classmethod
    def _absolute_storage(cls, value: str) -> str:
        if "://" in value:  # s3://, gs://, ... are passed through
            return value
        return str(Path(value).expanduser().resolve())

    @field_validator("data_root")
    @classmethod
    def _absolute_data_root(cls, value: str | None) -> str | None:  # trials run in other working directories
        return None if not value else str(Path(value).expanduser().resolve())

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_data_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [p for p in text.split(os.pathsep) if p.strip()]
        if isinstance(value, list):
            return [str(Path(str(p)).expanduser().resolve()) for p in value]
        return value

    @field_validator("ray_temp_dir")
    @classmethod
    def _absolute_temp_dir(cls, value: str | None) -> str | None:
        return None if not value else str(Path(value).expanduser().resolve())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build ``Settings(...)`` directly or call ``get_settings.cache_clear()``."""
    return Settings()

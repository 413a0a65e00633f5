"""The run context: the settings a sweep's driver and its trials need, passed to them explicitly.

The service builds it from its Settings (service.launcher), writes it as JSON (mode 0600: the database URL may
hold a password) under the storage path, and starts the driver with `python -m workers.driver SWEEP_ID --context
PATH`; the driver hands its fields to each trial (data root), to the DB writer and the searcher (database URL) and
to Tune (storage path). Nothing in workers/ or search_spaces/ reads the service's environment variables. No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTEXT_DIR = "run-contexts"  # under a local storage path


class RunContext(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(min_length=1)  # SQLAlchemy URL of the results store
    storage_path: str = Field(min_length=1)  # Ray results and checkpoints: an absolute directory or a URI (s3://...)
    data_root: str | None = None  # where the sweep's dataset lives; None: datasets that need none (synthetic)
    gpu_memory_gib: float | None = Field(None, gt=0)  # memory of one GPU, GiB; None: from Ray's accelerator type

    @field_validator("storage_path")
    @classmethod
    def _absolute_storage(cls, v: str) -> str:
        if "://" not in v and not Path(v).is_absolute():
            raise ValueError(f"must be absolute (the driver runs in another working directory), got {v!r}")
        return v

    @field_validator("data_root")
    @classmethod
    def _absolute_data_root(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_absolute():
            raise ValueError(f"must be absolute (the driver runs in another working directory), got {v!r}")
        return v

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON, readable by its owner only (created 0600; the directory 0700 when created here)."""
        p = Path(path)
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.model_dump_json(indent=1))
        os.chmod(p, 0o600)  # an existing file keeps its mode through O_CREAT
        return p

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunContext:
        """Load a context file. Raises FileNotFoundError naming the path, pydantic's ValidationError for bad JSON."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"context: no run context file at {str(p)!r}")
        return cls.model_validate_json(p.read_text())

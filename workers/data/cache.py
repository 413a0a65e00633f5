"""The on-disk cache of decoded datasets: decode once per (dataset, resolved root), then `torch.load`.

Files are `<cache_dir>/<dataset>-<key>.pt`, where the key hashes the resolved root (and, for image folders, a
fingerprint of the tree), so one cache directory serves many roots. Writes are atomic (a temporary file in the same
directory, then `os.replace`): a concurrent trial sees either no file or a whole one. Two trials that miss at the
same time both decode and the last replace wins; the contents are identical.

Default cache_dir: `<root>/.robustgrid-cache/`, or `$XDG_CACHE_HOME/robustgrid` (`~/.cache/robustgrid`) when the
root is not writable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from workers.data.registry import DatasetSpec, RawData

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the stored layout or decoding changes
CACHE_SUBDIR = ".robustgrid-cache"


@dataclass
class Decoded:
    """A decoded dataset plus its per-channel train statistics."""

    raw: RawData
    mean: tuple[float, ...]  # per channel, [0, 1] units, of the full train split
    std: tuple[float, ...]
    cache_file: Path | None = field(default=None)  # where it was loaded from / written to; None: not cached


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in [0, 1] units, exact: from each
    channel's 256-bin histogram (no float copy of the data)."""
    levels = torch.arange(256, dtype=torch.float64) / 255  # [0, 1] value of each uint8 level
    hist = torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])])  # (C, 256)
    p = hist.to(torch.float64) / hist.sum(1, keepdim=True)
    mean = p @ levels
    std = (p @ levels.square() - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def default_cache_dir(root: Path) -> Path:
    """`<root>/.robustgrid-cache` when it can be created and written, else the user cache directory."""
    local = root / CACHE_SUBDIR
    if os.access(local if local.exists() else root, os.W_OK):  # created on the first write, not here
        return local
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robustgrid"


def cache_file(
    spec: DatasetSpec, root: Path, cache_dir: str | os.PathLike[str] | None, options: dict[str, Any] | None = None
) -> Path:
    ident = f"v{CACHE_VERSION}|{spec.name}|{root}|{sorted((options or {}).items())}"
    if spec.fingerprint:
        ident += "|" + spec.fingerprint(root)
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(root)
    return base / f"{spec.name}-{key}.pt"


def _payload(d: Decoded, spec: DatasetSpec, root: Path) -> dict[str, Any]:
    r = d.raw
    return {
        "version": CACHE_VERSION,
        "dataset": spec.name,
        "root": str(root),
        "train_x": r.train_x,
        "train_y": r.train_y,
        "test_x": r.test_x,
        "test_y": r.test_y,
        "classes": list(r.classes),
        "mean": list(d.mean),
        "std": list(d.std),
    }


def _from_payload(p: dict[str, Any], path: Path) -> Decoded:
    raw = RawData(p["train_x"], p["train_y"], p["test_x"], p["test_y"], classes=tuple(p["classes"]))
    return Decoded(raw, tuple(p["mean"]), tuple(p["std"]), cache_file=path)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file next to `path`, then rename over it (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; trials may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decode(spec: DatasetSpec, root: Path | None, options: dict[str, Any] | None = None) -> Decoded:
    raw = spec.loader(root, **(options or {}))
    mean, std = channel_stats(raw.train_x)
    return Decoded(raw, mean, std)


def load_decoded(
    spec: DatasetSpec,
    root: Path | None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Decoded:
    """The decoded dataset: from the cache when present, else decoded and written to the cache."""
    if not spec.cached or root is None:
        return decode(spec, root, options)
    path = cache_file(spec, root, cache_dir, options)
    if path.exists():
        t0 = time.perf_counter()
        try:
            p = torch.load(path, weights_only=True, mmap=True)  # pages are read when a split is taken
            if p.get("version") == CACHE_VERSION:
                log.info("%s: loaded %s in %.2fs", spec.name, path, time.perf_counter() - t0)
                return _from_payload(p, path)
            log.warning("%s: cache %s has version %s, rebuilding", spec.name, path, p.get("version"))
        except Exception as exc:  # unreadable (e.g. written by another torch): rebuild it
            log.warning("%s: cannot read cache %s (%r), rebuilding", spec.name, path, exc)
    t0 = time.perf_counter()
    d = decode(spec, root, options)
    t1 = time.perf_counter()
    try:
        save_atomic(_payload(d, spec, root), path)
    except OSError as exc:  # a read-only or full cache directory costs speed, not the trial
        log.warning("%s: decoded in %.1fs but cannot write the cache %s (%r)", spec.name, t1 - t0, path, exc)
        return d
    log.info("%s: decoded in %.1fs, cached to %s in %.1fs", spec.name, t1 - t0, path, time.perf_counter() - t1)
    d.cache_file = path
    return d

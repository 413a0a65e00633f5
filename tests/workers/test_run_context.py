"""Settings reach the workers explicitly: the run context file the launcher writes and the driver reads, and no
module of workers/ or search_spaces/ reading the service's ROBUSTGRID_* environment variables."""

from __future__ import annotations

import ast
import json
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from search_spaces.run_context import RunContext

ROOT = Path(__file__).resolve().parents[2]


def _environ_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, key) of os.environ[...] / os.environ.get(...) / os.getenv(...) reads; key '?' when not a literal."""
    out = []
    for node in ast.walk(tree):
        key_node = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
            key_node = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "os.environ.get", "environ.get", "os.getenv", "getenv", "os.environ.setdefault", "os.environ.pop"):
            key_node = node.args[0] if node.args else None
        if key_node is not None or (isinstance(node, ast.Call) and ast.unparse(node.func) == "os.getenv"):
            key = key_node.value if isinstance(key_node, ast.Constant) else "?"
            out.append((node.lineno, str(key)))
    return out


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


@pytest.mark.parametrize("pkg", ["workers", "search_spaces"])
def test_no_worker_or_spec_module_reads_the_service_environment(pkg: str) -> None:
    bad = []
    for f in sorted((ROOT / pkg).rglob("*.py")):
        tree = ast.parse(f.read_text())
        rel = f.relative_to(ROOT)
        bad += [f"{rel}:{line} reads ${key}" for line, key in _environ_reads(tree)
                if key == "?" or key.startswith("ROBUSTGRID_")]
        bad += [f"{rel}:{line} names {text!r}" for line, text in _strings(tree) if "ROBUSTGRID_" in text]
    assert not bad, "\n".join(bad)


def test_the_scanner_sees_environment_reads() -> None:
    tree = ast.parse("import os\na = os.environ['ROBUSTGRID_X']\nb = os.environ.get('ROBUSTGRID_Y')\n"
                     "c = os.getenv(name)\nd = 'ROBUSTGRID_Z'\n")
    assert _environ_reads(tree) == [(2, "ROBUSTGRID_X"), (3, "ROBUSTGRID_Y"), (4, "?")]
    assert sorted(s for _, s in _strings(tree) if s.startswith("ROBUSTGRID_")) == ["ROBUSTGRID_X", "ROBUSTGRID_Y",
                                                                              "ROBUSTGRID_Z"]


def _context(tmp_path: Path, **kw: Any) -> RunContext:
    return RunContext(**{"database_url": "postgresql+psycopg://rg:s3cret@db/rg",
                         "storage_path": str(tmp_path / "ray_results"), "data_root": str(tmp_path / "data"), **kw})


def test_context_file_round_trips_owner_only(tmp_path: Path) -> None:
    ctx = _context(tmp_path, gpu_memory_gib=80.0)
    path = ctx.write(tmp_path / "ctx" / "c.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert RunContext.read(path) == ctx and json.loads(path.read_text())["gpu_memory_gib"] == 80.0


@pytest.mark.parametrize(("change", "field"), [
    ({"storage_path": "ray_results"}, "storage_path"),  # relative: the driver runs elsewhere
    ({"data_root": "data"}, "data_root"),
    ({"database_url": ""}, "database_url"),
    ({"gpu_memory_gib": 0}, "gpu_memory_gib"),
    ({"ray_address": "auto"}, "ray_address"),  # unknown fields are refused
])
def test_bad_context_names_the_field(tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        _context(tmp_path, **change)
    assert field in str(e.value)


def test_the_driver_loads_its_context_and_names_what_is_wrong(tmp_path: Path) -> None:
    from workers.driver import load_context, main

    ctx = _context(tmp_path)
    assert load_context(ctx.write(tmp_path / "c.json")) == ctx
    with pytest.raises(SystemExit, match="no run context file"):
        load_context(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"database_url": "sqlite:///x.db", "storage_path": "rel"}))
    with pytest.raises(SystemExit, match="storage_path"):
        load_context(tmp_path / "bad.json")
    with pytest.raises(SystemExit) as e:  # argparse: --context is required
        main(["7"])
    assert e.value.code == 2


def test_gpu_memory_comes_from_the_context_else_ray() -> None:
    from workers.driver import DEFAULT_GPU_MEMORY_GIB, gpu_memory_gib

    cluster = {"GPU": 2.0, "accelerator_type:H100": 2.0}
    assert (gpu_memory_gib(cluster, 40.0), gpu_memory_gib(cluster), gpu_memory_gib({})) == (40.0, 80.0,
                                                                                              DEFAULT_GPU_MEMORY_GIB)


def test_trial_refs_resolve_against_the_context_storage_path(tmp_path: Path) -> None:
    from workers.driver import _with_init_from

    state = tmp_path / "ray_results" / "sweep-1-clean" / "trial-7" / "checkpoint_000002" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"")
    cfg = {"seed": 0, "init_from": "trial:7"}
    assert _with_init_from(cfg, str(tmp_path / "ray_results")) == {"seed": 0, "init_from": str(state)}
    assert _with_init_from(cfg, str(tmp_path / "elsewhere")) == cfg  # unresolvable: the trial fails on its own
    assert _with_init_from({"seed": 0, "init_from": None}, str(tmp_path)) == {"seed": 0, "init_from": None}


def test_a_finished_grid_launch_needs_no_ray_and_reads_both_stored_layouts(tmp_path: Path) -> None:
    """build_tuner reads the sweep through the context's database URL; a launch whose trials all finished is left
    alone (None) before Ray is touched, whichever layout the stored spec has."""
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import create_sweep, mark_trial
    from search_spaces.plan import make_plan
    from search_spaces.spec import SweepSpec
    from search_spaces.stored import StoredSweep
    from workers.driver import build_tuner

    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(url)
    spec = SweepSpec(name="done", depths=[[1], [1], [1]], widths=[[1], [1], [1]], dataset="synthetic")
    rows = [t.stored_row() | {"idx": i} for i, t in enumerate(make_plan(spec).trials)]
    ctx = RunContext(database_url=url, storage_path=str(tmp_path / "ray_results"))
    for name, stored in (("nested", StoredSweep(spec=spec).to_json()), ("flat", spec.model_dump(mode="json"))):
        with session_factory(make_engine(url)).begin() as s:
            sweep = create_sweep(s, name=name, spec=stored, trials=rows, code_version="t")
            sweep_id = sweep.id
            for t in sweep.trials:
                for status in ("running", "completed"):  # as the DB writer reports them
                    mark_trial(s, trial_id=t.id, status=status, actor="writer")
        assert build_tuner(sweep_id, ctx) is None


def test_the_launcher_writes_the_context_and_keeps_settings_out_of_the_job_env(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from service import launcher
    from service.settings import Settings

    submitted: dict[str, Any] = {}

    class FakeClient:
        def submit_job(self, **kw: Any) -> str:
            submitted.update(kw)
            return str(kw["submission_id"])

    monkeypatch.setattr(launcher, "job_client", lambda cluster: FakeClient())
    settings = Settings(database_url="postgresql+psycopg://rg:s3cret@db/rg", storage_path=str(tmp_path / "rr"),
                        gpu_memory_gib=24.0)
    cluster = launcher.RayCluster(address="http://h:8265", gcs_address="", dashboard_url="", started_by_us=False)
    job = launcher.submit_sweep_job(settings, cluster, sweep_id=3, data_root=str(tmp_path))
    argv = shlex.split(submitted["entrypoint"])
    assert argv[1:4] == ["-m", "workers.driver", "3"] and argv[4] == "--context" and job.startswith("robustgrid-sweep-3-")
    path = Path(argv[5])
    assert path.parent == tmp_path / "rr" / "run-contexts" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert RunContext.read(path) == RunContext(database_url=settings.database_url, storage_path=str(tmp_path / "rr"),
                                               data_root=str(tmp_path), gpu_memory_gib=24.0)
    assert "s3cret" not in json.dumps(submitted["runtime_env"]) and "s3cret" not in submitted["entrypoint"]

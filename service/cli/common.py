"""The `robustgrid` typer app and what every command group shares: the common options, `fail` (one line
`error: FIELD: reason`, exit code 2, nothing written), settings from options, `--set` parsing and the sweep request.

The command groups (service.cli.sweeps, results, plan, science, lifecycle, bench, run) register their commands on
`app` by decorator; service/cli/__init__.py imports them. This module imports none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from search_spaces.spec import SweepSpec
from service.schemas import SweepRequest
from service.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The `robustgrid` command line: the same operations as the API, through the same code paths.\n\n"
                       "Bad input ends with one line `error: FIELD: reason` and exit code 2; nothing is written.")

PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help="a preset name (robustgrid plan --list)")]
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="a sweep spec as a JSON file")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override KEY=VALUE (JSON values), repeatable")]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", help="where datasets live (ROBUSTGRID_DATA_ROOT)")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (ROBUSTGRID_DATABASE_URL)")]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def settings_from(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def sweep_sessions(settings: Settings, ref: str) -> tuple[Any, int]:
    """(a session factory on the migrated store, the id of sweep `ref`: a name or an id); a one-line error and exit
    code 2 when no sweep has that name or id."""
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import get_sweep_by_name_or_id

    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as s:
        sweep = get_sweep_by_name_or_id(s, ref=ref)
        if sweep is None:
            fail(f"sweep: {ref!r} not found")
        return sessions, sweep.id


def parse_sets(sets: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("training."):
            out.setdefault("training", {})[key.removeprefix("training.")] = value
        else:
            out[key] = value
    return out


def build_request(preset: str | None, spec: Path | None, sets: list[str] | None, name: str | None = None,
                  data_root: str | None = None) -> SweepRequest:
    overrides = parse_sets(sets)
    try:
        if spec is not None:
            if not spec.exists():
                fail(f"spec: file {str(spec)!r} does not exist")
            data = json.loads(spec.read_text()) | overrides
            return SweepRequest(spec=SweepSpec(**data), name=name, data_root=data_root)
        return SweepRequest(preset=preset, overrides=overrides, name=name, data_root=data_root)
    except ValidationError as e:
        err = e.errors()[0]
        fail(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}")
    except json.JSONDecodeError as e:
        fail(f"spec: not valid JSON ({e})")
    raise AssertionError

"""A request's `data_root` is confined to the roots the operator allows (the service's `data_root` and
ROBUSTGRID_DATA_ROOTS): it must resolve (symlinks and `..` followed) inside one of them, else 422 on `data_root`
with one answer whatever the path, so a client cannot learn whether a server path exists (`/proc/self` named the
server's PID). The CLI's own `--data-root` is always allowed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from testkit.cli import run_cli

from search_spaces.spec import SpecError
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import data_root_of

CIFAR = {"preset": "demo", "overrides": {"dataset": "cifar10"}}  # planned without reading a tree
IMAGEFOLDER = {"spec": {"dataset": "imagefolder", "depths": [[1], [1], [1]], "widths": [[1], [1], [1]]}}


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    out = {"data": tmp_path / "data", "extra": tmp_path / "extra", "outside": tmp_path / "outside"}
    for d in out.values():
        (d / "train" / "cat").mkdir(parents=True)
    (out["data"] / "escape").symlink_to(out["outside"])  # a link inside an allowed root, pointing out of it
    return out


@pytest.fixture
def client(roots: dict[str, Path], tmp_path: Path) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"),
                        published_dir=None, data_root=str(roots["data"]), data_roots=[str(roots["extra"])])
    with api_client(settings, scope="write") as c:
        yield c


def _answer(client: TestClient, path: str, route: str = "plan", body: dict[str, Any] | None = None) -> Any:
    r = client.post(f"/api/v1/{route}", json={**(body or CIFAR), "data_root": path})
    return r.status_code, r.json()


def test_paths_outside_the_allowed_roots_get_one_answer(client: TestClient, roots: dict[str, Path]) -> None:
    outside = ["/proc/self", "/proc/self/cwd", "/etc", "/does/not/exist", str(roots["outside"]),
               f"{roots['data']}/../outside", f"{roots['data']}/../../../../etc", str(roots["data"] / "escape"),
               str(roots["data"] / "escape" / "train"), "~", "relative/path", str(roots["data"]) + "-sibling"]
    answers = {(route, p): _answer(client, p, route, IMAGEFOLDER if route == "plan" else None)
               for p in outside for route in ("plan", "sweeps")}
    codes = {code for code, _ in answers.values()}
    details = {str(body["detail"]) for _, body in answers.values()}
    assert codes == {422} and len(details) == 1, answers
    (err,) = next(iter(answers.values()))[1]["detail"]
    assert err["loc"] == ["body", "data_root"] and "not inside a data root this service allows" in err["msg"]
    assert str(os.getpid()) not in str(answers) and "outside" not in err["msg"]


def test_paths_inside_the_allowed_roots_are_used(client: TestClient, roots: dict[str, Path]) -> None:
    for path in (str(roots["data"]), str(roots["data"] / "train"), str(roots["extra"]),
                 f"{roots['extra']}/../extra/train"):
        code, body = _answer(client, path)
        assert code == 200 and body["totals"]["n_trials"] == 4, (path, body)
    code, body = _answer(client, str(roots["extra"] / "missing"), "sweeps")  # inside: existence may be told
    assert code == 422 and "does not exist" in body["detail"][0]["msg"]


def test_settings_read_data_roots_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBUSTGRID_DATA_ROOTS", f"{tmp_path}/a:{tmp_path}/b")
    assert Settings().data_roots == [str(tmp_path / "a"), str(tmp_path / "b")]
    monkeypatch.setenv("ROBUSTGRID_DATA_ROOTS", f'["{tmp_path}/c"]')
    assert Settings().data_roots == [str(tmp_path / "c")]
    monkeypatch.delenv("ROBUSTGRID_DATA_ROOTS")
    assert Settings().data_roots == []


def test_the_cli_uses_its_own_data_root(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(roots["data"].parent)
    settings = Settings(data_root="data")  # `robustgrid submit --data-root data`: the CLI's settings and request
    assert data_root_of(SweepRequest(preset="demo", data_root="data"), settings) == str(roots["data"].resolve())
    with pytest.raises(SpecError) as e:
        data_root_of(SweepRequest(preset="demo", data_root="outside"), settings)
    assert e.value.field == "data_root"
    out = run_cli("plan", "--preset", "demo", "--set", 'dataset="cifar10"', "--data-root", "data",
                  cwd=roots["data"].parent, env={"ROBUSTGRID_DATA_ROOTS": "", "ROBUSTGRID_DATA_ROOT": "/elsewhere"})
    assert out.returncode == 0 and '"n_trials": 4' in out.stdout, out.stdout + out.stderr

"""The submission path's error answers, without Ray: a duplicate name (409), a Ray dashboard that does not know the
job (not running) versus one that cannot be reached (503, nothing written), a failed launch (sweep `failed` with the
reason), and `submit --wait`'s polling (never starts a Ray head). A tiny `http.server` stands in for the dashboard:
Ray's job client and our launcher talk HTTP to it (the Ray Jobs REST API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from testkit.api_client import api_client
from testkit.api_server import free_port
from typer.testing import CliRunner

from db.engine import make_engine, session_factory, upgrade
from db.sweeps import get_sweep, list_sweeps, list_trials, mark_trial, set_sweep_job, set_sweep_status
from search_spaces.spec import SweepSpec
from service import launcher
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import RayUnavailable, job_state, store_sweep

TINY: dict[str, Any] = {
    "depths": [[1], [1], [1]],
    "widths": [[0.5], [0.5], [0.5, 1]],
    "dataset": "synthetic",
    "n_train": [256],
    "training": {"epochs": 1, "batch_size": 64, "val_size": 128, "n_test": 64,
                 "train_attack": {"steps": 1, "step_size": 0.01}, "eval_attack": {"steps": 1, "step_size": None}},
}


@contextmanager
def fake_dashboard(answers: dict[str, Any]) -> Iterator[str]:
    """An HTTP server answering `answers[path] = (status, body)` (a JSON body, or text for a str), or a list of
    them answered in turn (the last one repeats); 404 for any other path. Yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            known = {"/api/version": (200, {"version": "3", "ray_version": "2.60.0", "ray_commit": "x"})} | answers
            answer = known.get(self.path, (404, {"detail": f"Job {self.path} does not exist"}))
            if isinstance(answer, list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            status, body = answer
            text = isinstance(body, str)
            data = body.encode() if text else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _ray_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "test-token")  # never write ~/.ray/auth_token from a test


def _settings(tmp_path: Path, ray_address: str = "", **kw: Any) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray_results"),
                    ray_address=ray_address, **kw)


def _store(settings: Settings, name: str, *, job: str | None = None) -> tuple[int, list[int]]:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as s:
        sweep, _ = store_sweep(s, SweepRequest(spec=SweepSpec(**TINY), name=name), settings)
        sweep_id = sweep.id
    with sessions.begin() as s:
        set_sweep_job(s, sweep_id=sweep_id, ray_job_id=job, dashboard_url=None)
        return sweep_id, [t.id for t in list_trials(s, sweep_id=sweep_id)]


def _state(settings: Settings, sweep_id: int) -> tuple[str, list[str]]:
    with session_factory(make_engine(settings.database_url))() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        assert sweep is not None
        return sweep.status, [t.status for t in list_trials(s, sweep_id=sweep_id)]


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# -------------------------------------------------------------------------------------------- duplicate name: 409


def test_duplicate_sweep_name_is_409_naming_the_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ray_address=_closed_port_url())
    _store(settings, "x")
    with api_client(settings) as c:
        r = c.post("/api/v1/sweeps", json={"spec": TINY, "name": "x"})
        assert r.status_code == 409, r.text
        assert r.json() == {"detail": "sweep name 'x' is taken; choose another"}
        assert [s["name"] for s in c.get("/api/v1/sweeps").json()] == ["x"]


def test_a_name_another_owner_holds_is_409_revealing_nothing_of_that_sweep(tmp_path: Path) -> None:
    """Names are unique across owners; bob's clash with alice's sweep answers exactly as a clash with his own
    would: no id, owner, status or detail of alice's sweep, and he still cannot see it."""
    from testkit.api_client import new_token

    settings = _settings(tmp_path, ray_address=_closed_port_url())
    with api_client(settings, scope="write", owner="alice") as alice:
        bob = {"Authorization": f"Bearer {new_token(alice.app, scope='write', owner='bob')}"}  # type: ignore[arg-type]
        mine = alice.post("/api/v1/sweeps", json={"spec": TINY, "name": "secret-study"})
        assert mine.status_code == 503 and mine.json()["detail"]  # stored, failed to launch: Ray is not there
        (stored,) = alice.get("/api/v1/sweeps").json()
        answers = [alice.post("/api/v1/sweeps", json={"spec": TINY, "name": "secret-study"}),
                   alice.post("/api/v1/sweeps", json={"spec": TINY, "name": "secret-study"}, headers=bob),
                   alice.post("/api/v1/sweeps/import", headers=bob, json={
                       "name": "secret-study", "rows": [{"arch": "a", "method": "sat", "eps": 0.03, "norm": "linf",
                                                         "dataset": "cifar10", "checkpoint": "best",
                                                         "attack": "pgd20", "params": 10}]})]
        for r in answers:
            assert (r.status_code, r.json()) == (409, {"detail": "sweep name 'secret-study' is taken; choose another"})
            assert "alice" not in r.text and str(stored["id"]) not in r.text and "failed" not in r.text
        assert alice.get("/api/v1/sweeps", headers=bob).json() == []
        assert [s["name"] for s in alice.get("/api/v1/sweeps").json()] == ["secret-study"]


def test_duplicate_sweep_name_in_the_cli_is_a_one_line_error(tmp_path: Path) -> None:
    from service.cli import app as cli

    settings = _settings(tmp_path)
    _store(settings, "x")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TINY))
    result = CliRunner().invoke(cli, ["submit", "--spec", str(spec), "--name", "x",
                                      "--database-url", settings.database_url])
    assert result.exit_code == 2, result.output
    assert "error: name: sweep name 'x' is taken; choose another" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------- job not found vs Ray unreachable


def test_job_state_reads_the_status_and_treats_an_unknown_job_as_not_running(tmp_path: Path) -> None:
    answers = {"/api/jobs/known": (200, {"status": "RUNNING", "job_id": "01", "submission_id": "known",
                                        "type": "SUBMISSION", "entrypoint": "python -m workers.driver 1"})}
    with fake_dashboard(answers) as url:
        settings = _settings(tmp_path, ray_address=url)
        assert job_state(settings, "known") == "RUNNING"
        assert job_state(settings, "gone") is None  # 404: the head does not know it, so nothing runs it
        assert job_state(settings, None) is None


@pytest.mark.parametrize("answer", [(500, {"detail": "GCS down"}), (503, {"detail": "starting"}), None])
def test_job_state_raises_ray_unavailable_for_5xx_and_a_closed_port(tmp_path: Path, answer) -> None:
    if answer is None:
        settings = _settings(tmp_path, ray_address=_closed_port_url())
        with pytest.raises(RayUnavailable, match="127.0.0.1"):
            job_state(settings, "raysubmit_1")
        return
    with fake_dashboard({"/api/jobs/raysubmit_1": answer}) as url, pytest.raises(RayUnavailable, match=str(answer[0])):
        job_state(_settings(tmp_path, ray_address=url), "raysubmit_1")


@pytest.mark.parametrize("action", ["cancel", "resume"])
def test_lifecycle_with_ray_unreachable_is_503_and_changes_nothing(tmp_path: Path, action: str) -> None:
    settings = _settings(tmp_path, ray_address=_closed_port_url())
    sweep_id, tids = _store(settings, "busy", job="raysubmit_busy")
    sessions = session_factory(make_engine(settings.database_url))
    with sessions.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
        mark_trial(s, trial_id=tids[0], status="running", actor="writer")
    before = _state(settings, sweep_id)
    with api_client(settings) as c:
        r = c.post(f"/api/v1/sweeps/{sweep_id}/{action}")
    assert r.status_code == 503, r.text
    assert "Ray" in r.json()["detail"] and "raysubmit_busy" in r.json()["detail"]
    assert _state(settings, sweep_id) == before == ("running", ["running", "queued"])


def test_a_finished_sweep_is_409_without_asking_ray(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ray_address=_closed_port_url())
    sweep_id, tids = _store(settings, "done", job="raysubmit_done")
    sessions = session_factory(make_engine(settings.database_url))
    with sessions.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
        for tid in tids:
            mark_trial(s, trial_id=tid, status="running", actor="writer")
            mark_trial(s, trial_id=tid, status="completed", actor="writer")
        set_sweep_status(s, sweep_id=sweep_id, status="completed", actor="driver")
    with api_client(settings) as c:
        for action in ("cancel", "resume"):
            r = c.post(f"/api/v1/sweeps/{sweep_id}/{action}")
            assert r.status_code == 409 and "completed: nothing to " + action in r.json()["detail"], r.text
    assert _state(settings, sweep_id) == ("completed", ["completed", "completed"])


# ------------------------------------------------------------------------------------- idempotency: same body only


def test_an_idempotency_key_replays_its_own_request_and_rejects_another_body(tmp_path: Path) -> None:
    """A retry with the same key and body gets the stored sweep (no second sweep); the same key with another body
    is a 422 naming the header and the differing spec fields, and stores nothing."""
    settings = _settings(tmp_path, ray_address=_closed_port_url())
    key = {"Idempotency-Key": "retry-1"}
    with api_client(settings) as c:
        first = c.post("/api/v1/sweeps", json={"spec": TINY, "name": "once"}, headers=key)
        assert first.status_code == 503, first.text  # stored, launch failed (Ray at a closed port)
        again = c.post("/api/v1/sweeps", json={"spec": TINY, "name": "once"}, headers=key)
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["name"] == "once" and again.json()["status"] == "failed"
        other = TINY | {"n_train": [512]}
        changed = c.post("/api/v1/sweeps", json={"spec": other, "name": "once"}, headers=key)
        assert changed.status_code == 422, changed.text
        (err,) = changed.json()["detail"]
        assert err["loc"] == ["header", "idempotency-key"] and "differs in n_train" in err["msg"]
        renamed = c.post("/api/v1/sweeps", json={"spec": TINY, "name": "twice"}, headers=key)
        assert renamed.status_code == 422 and "differs in name" in renamed.json()["detail"][0]["msg"]
        assert [s["name"] for s in c.get("/api/v1/sweeps").json()] == ["once"]


# --------------------------------------------------------------------- a starting head: its job agent comes later

AGENT_DOWN = (500, "No available agent to submit job, please try again later.")  # Ray 2.60's answer, verbatim


def test_submission_waits_for_a_starting_heads_job_agent(tmp_path: Path) -> None:
    """Right after `ray start --head` the dashboard answers but refuses jobs until its agent is up: the launcher
    submits again (CI saw three lifecycle tests fail on this answer). Another error is raised at once."""
    settings = _settings(tmp_path)
    calls = [AGENT_DOWN, AGENT_DOWN, (200, {"submission_id": "rg-x", "job_id": None})]
    with fake_dashboard({"/api/jobs/": calls}) as url:
        cluster = launcher.RayCluster(address=url, gcs_address="", dashboard_url=url, started_by_us=False)
        assert launcher.submit_job(settings, cluster, entrypoint="true", submission_id="rg-x") == "rg-x"
        assert len(calls) == 1  # both refusals were answered, then the job was accepted
    with fake_dashboard({"/api/jobs/": [(500, "Traceback: something else")]}) as url:
        cluster = launcher.RayCluster(address=url, gcs_address="", dashboard_url=url, started_by_us=False)
        with pytest.raises(RuntimeError, match="something else"):
            launcher.submit_job(settings, cluster, entrypoint="true")


def test_submission_gives_up_when_the_agent_never_comes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "AGENT_WAIT_S", 0.5)
    with fake_dashboard({"/api/jobs/": [AGENT_DOWN]}) as url:
        cluster = launcher.RayCluster(address=url, gcs_address="", dashboard_url=url, started_by_us=False)
        with pytest.raises(RuntimeError, match="No available agent"):
            launcher.submit_job(_settings(tmp_path), cluster, entrypoint="true")


# ------------------------------------------------------------------------------------------ failed launch: reason


def test_failed_launch_marks_the_sweep_failed_with_the_reason(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ray_address=_closed_port_url())
    with api_client(settings) as c:
        r = c.post("/api/v1/sweeps", json={"spec": TINY, "name": "nolaunch"})
        assert r.status_code == 503, r.text
        assert "could not be launched" in r.json()["detail"]
    with session_factory(make_engine(settings.database_url))() as s:
        (sweep,) = list_sweeps(s)
        assert sweep.status == "failed"
        assert sweep.error is not None and "127.0.0.1" in sweep.error
        # no driver will run them: none is left queued, each says why
        assert [(t.status, t.error) for t in list_trials(s, sweep_id=sweep.id)] == [("cancelled", sweep.error)] * 2


# --------------------------------------------------------------------------------- polling never starts a Ray head


def test_waiting_never_starts_a_ray_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli.sweeps import wait_for

    def no_start(*args: Any, **kw: Any) -> None:
        raise AssertionError("polling must never start a Ray head")

    monkeypatch.setattr(launcher, "_start_local_head", no_start)
    settings = _settings(tmp_path, dashboard_port=free_port(), ray_temp_dir=str(tmp_path / "ray"))  # no head there
    sweep_id, _ = _store(settings, "waiting", job="raysubmit_waiting")
    with pytest.raises(typer.Exit) as exc:  # `error: ray: ...`: the dashboard does not answer
        wait_for(settings, sweep_id, poll_s=0.01)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("args", [["cancel", "nope"], ["resume", "nope"], ["evaluate", "--sweep", "nope", "--local"]])
def test_cli_commands_on_an_unknown_sweep_fail_in_one_line(tmp_path: Path, args: list[str]) -> None:
    """Every command that names a sweep looks it up the same way (service.cli.common.sweep_sessions)."""
    from service.cli import app as cli

    settings = _settings(tmp_path)
    _store(settings, "known")
    result = CliRunner().invoke(cli, [*args, "--database-url", settings.database_url])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == "error: sweep: 'nope' not found"

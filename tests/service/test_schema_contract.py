"""The API's contract holds: a schemathesis run over every operation of the OpenAPI schema (with an admin token, a
bounded number of examples each) finds no 5xx, no status code the schema does not declare and no response that
violates its schema. Ray is never reachable (ray_address is a closed port), so submit, resume, extend and cancel
answer their documented 503 rather than starting a head. Datetimes carry their time zone on SQLite too."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from testkit.api_client import api_client, new_token

from db.contract import FinalRow
from db.results import upsert_final
from db.sweeps import create_sweep, mark_trial
from service.app import create_app
from service.settings import Settings


def no_server_error_but_503(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool:
    """No 5xx but the documented 503 (Ray cannot be reached: what every launch answers here)."""
    assert response.status_code < 500 or response.status_code == 503, (
        f"server error {response.status_code}: {response.text[:500]}")
    return True


CHECKS = [no_server_error_but_503, status_code_conformance, response_schema_conformance, content_type_conformance]
EXAMPLES = 15  # per operation: the whole run stays well under a minute on two cores


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def unreachable_ray(tmp: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp / 'rg.db'}", storage_path=str(tmp / "ray"),
                    ray_address=closed_port_url(), max_trials=50)


def seed(app: FastAPI) -> None:
    """A finished sweep with a best-checkpoint pgd20 row per trial, so reads have something to answer."""
    trial = {"config": {"eps": 8 / 255}, "config_hash": "h0", "arch": "wrn-d1-1-1-w1-1-1", "depths": "1-1-1",
             "widths": "1-1-1", "params": 1000, "macs": 10_000, "method": "sat", "lam": 1.0, "eps": 8 / 255,
             "norm": "linf", "dataset": "synthetic", "n_train": 64, "seed": 0}
    with app.state.sessions.begin() as s:
        sweep = create_sweep(s, name="seeded", spec={}, trials=[trial], code_version="test", owner="tests")
        t = sweep.trials[0]
        mark_trial(s, trial_id=t.id, status="running", actor="writer")
        upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", epoch=1, clean_acc=0.5,
                                                    robust_acc=0.3, n_total=100, n_correct=50, n_robust=30))
        mark_trial(s, trial_id=t.id, status="completed", actor="writer")


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> schemathesis.BaseSchema:
    app = create_app(unreachable_ray(tmp_path_factory.mktemp("contract")))
    seed(app)
    token = new_token(app, scope="admin")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {token}"})
    schema.token = token  # type: ignore[attr-defined]
    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_keeps_the_contract(api_schema: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    """Each operation with EXAMPLES generated requests (valid ones, then ones that break the schema), one after
    another in this one test (schemathesis.pytest's fixture loader needs a pytest private that pytest 9 dropped)."""
    headers = {"Authorization": f"Bearer {api_schema.token}"}  # type: ignore[attr-defined]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not any(True for _ in operation.iter_parameters()) \
                and not list(operation.get_request_payload_content_types()):
            continue  # nothing to break (GET /health)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.validate_response(case.call(headers=headers), checks=CHECKS)

        try:
            call()
        except Exception as e:
            raise AssertionError(f"{operation.label}: {e}") from e


def test_the_schema_covers_every_route_and_declares_the_errors(api_schema: schemathesis.BaseSchema) -> None:
    paths = api_schema.raw_schema["paths"]
    submit = paths["/api/v1/sweeps"]["post"]["responses"]
    assert {"201", "401", "403", "409", "413", "422", "503"} <= set(submit)
    for action in ("cancel", "resume", "extend"):
        assert {"401", "403", "404", "409", "413", "422", "503"} <= set(paths[f"/api/v1/sweeps/{{sweep_id}}/{action}"]
                                                                       ["post"]["responses"])
    assert {"401", "404", "422"} <= set(paths["/api/v1/sweeps/{sweep_id}"]["get"]["responses"])
    assert paths["/api/v1/sweeps/{sweep_id}"]["get"]["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"}


def test_datetimes_carry_utc_on_sqlite(tmp_path: Path) -> None:
    with api_client(unreachable_ray(tmp_path)) as c:
        seed(c.app)  # type: ignore[arg-type]
        listed = c.get("/api/v1/sweeps").json()
        detail = c.get(f"/api/v1/sweeps/{listed[0]['id']}").json()
    for value in (listed[0]["created_at"], detail["created_at"]):
        assert value.endswith("+00:00"), value
        stamp = datetime.fromisoformat(value)
        assert stamp.utcoffset() == timedelta(0)
        assert abs(datetime.now(stamp.tzinfo) - stamp) < timedelta(minutes=5)  # it was UTC, not local time

"""Import of external results as a reference sweep (db.imports): `POST /sweeps/import` with JSON rows. Thin."""

from __future__ import annotations

from fastapi import APIRouter

from db.imports import ImportRejected, NotStorable
from db.sweeps import SweepExists
from service.deps import SessionDep, WriterDep
from service.errors import BODY_ERRORS, CONFLICT, FORBIDDEN, conflict, unprocessable
from service.references import import_rows_counted
from service.schemas import ImportOut, ImportRequest

router = APIRouter(tags=["sweeps"])


@router.post("/sweeps/import", status_code=201, response_model=ImportOut, responses=FORBIDDEN | BODY_ERRORS | CONFLICT)
def import_sweep(req: ImportRequest, session: SessionDep, principal: WriterDep) -> ImportOut:
    """Store `rows` (result fields: arch, method, lam, eps, norm, dataset, n_train, seed, params or macs,
    checkpoint, attack, epoch, the metrics, status; db.imports) as the completed reference sweep `name`, marked
    imported, with `source`. One bad row rejects the request (422, `loc` ["body", "rows", ROW, FIELD] with ROW
    1-based) and nothing is stored; a taken name is 409. Needs a write or admin token."""
    try:
        with session.begin():
            result = import_rows_counted(session, name=req.name, rows=req.rows, source=req.source)
    except ImportRejected as e:
        raise unprocessable(f"rows.{e.row}.{e.field}", e.reason) from None
    except NotStorable as e:
        raise unprocessable(e.field, e.reason) from None
    except SweepExists as e:
        raise conflict(str(e)) from None
    except ValueError as e:
        raise unprocessable("rows", str(e)) from None
    return ImportOut(sweep_id=result.sweep_id, name=result.name, n_trials=result.n_trials, n_final=result.n_final,
                     n_epoch=result.n_epoch)

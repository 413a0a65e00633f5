"""Dependencies declared once as Annotated aliases (full-stack-fastapi-template style)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from pydantic import Field
from sqlalchemy.orm import Session, sessionmaker

from db.contract import ATTACK_KEY_PATTERN
from db.fields import INT64_MAX
from service.auth import Principal, require_admin, require_page_user, require_reader, require_token, require_write
from service.query_grammar import NUMERIC_FIELD_PATTERN
from service.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
PrincipalDep = Annotated[Principal, Depends(require_token)]  # any scope (bearer)
WriterDep = Annotated[Principal, Depends(require_write)]  # write or admin (403 for read)
AdminDep = Annotated[Principal, Depends(require_admin)]
ReaderDep = Annotated[Principal, Depends(require_reader)]  # GET routes a page shows: bearer or a login (401)
PageUserDep = Annotated[Principal, Depends(require_page_user)]  # the pages: bearer or a login (else 303 to it)

DB_ID_MAX = INT64_MAX  # the largest id a database integer holds (larger ones overflow SQLite's driver: a 500)
SweepId = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="a sweep's id")]
TrialId = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="a trial's id")]
SweepIdQuery = Annotated[int, Query(ge=1, le=DB_ID_MAX, description="a sweep's id")]
DbId = Annotated[int, Field(ge=1, le=DB_ID_MAX)]  # an id in a body or a repeated query parameter


# Query parameters whose grammar the schema states (service.query_grammar): a bad value answers 422 with loc
# ["query", NAME] and the sentence query_grammar gives.
AttackQuery = Annotated[str, Query(pattern=ATTACK_KEY_PATTERN, max_length=40,
                                   description="attack key of the final rows: pgd<steps>, cw<steps>, gama<steps>, "
                                               "fgsm, autoattack, apgd-ce, apgd-t, fab, square, cw")]
NumericFieldQuery = Annotated[str, Query(pattern=NUMERIC_FIELD_PATTERN, description="a numeric result field")]

"""API tokens: making and hashing them, and the FastAPI dependencies that guard every route but the health check.

A token is `rg_` + 32 random bytes (URL-safe base64); only its SHA-256 hash is stored (db.tokens), so a token is
shown once, when it is made, and never logged or returned again. Scopes: `read` (every GET), `write` (also submit,
cancel, resume, extend, import), `admin` (everything, every owner's sweeps). A sweep records the owner of the token
that submitted it; a non-admin token sees and acts on its owner's sweeps and the imported reference sweeps.

API routes take the token as `Authorization: Bearer <token>`. A browser logs in once (service.web_sessions): the
`robustgrid_session` cookie holds a server-side session that acts as its token, and is accepted only on GET routes
a page shows (the pages, their plots, the OpenAPI schema the docs load), so a cookie can never cause a write. A
missing, unknown or revoked token answers 401 with `WWW-Authenticate: Bearer`; a page asked for without a live
session answers 303 to the login form; a read token on a write route answers 403.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from db.models import ApiToken
from db.tokens import create_token, find_token
from db.web_sessions import find_live_session

log = logging.getLogger(__name__)

TOKEN_PREFIX = "rg_"
PREFIX_CHARS = 11  # "rg_" + 8 characters: names a token in listings (about 48 bits: unique in practice)
SESSION_COOKIE = "robustgrid_session"  # a random session id (service.web_sessions), never the API token
WRITE_SCOPES = ("write", "admin")

bearer = HTTPBearer(auto_error=False, description="An API token: `robustgrid token create --scope read|write|admin`")
session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                              description="A login of the results pages (POST /login); GET routes the pages show")


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of the token: what the store keeps. A token has 256 random bits, so no salt or slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, *, scope: str, owner: str) -> tuple[ApiToken, str]:
    """Make a token, store its hash; returns the row and the token itself (show it once, then forget it)."""
    token = generate_token()
    row = create_token(session, token_hash=hash_token(token), prefix=token[:PREFIX_CHARS], scope=scope, owner=owner)
    return row, token


class OwnedSweep(Protocol):
    owner: str | None
    imported: bool


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's id, owner and scope."""

    token_id: int
    owner: str
    scope: str

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    @property
    def can_write(self) -> bool:
        return self.scope in WRITE_SCOPES

    @property
    def visible_owner(self) -> str | None:
        """The owner whose sweeps (besides imported ones) a query may return; None: all (admin)."""
        return None if self.is_admin else self.owner

    def sees(self, sweep: OwnedSweep) -> bool:
        return self.is_admin or sweep.imported or sweep.owner == self.owner


def unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


def forbidden(reason: str) -> HTTPException:
    return HTTPException(status_code=403, detail=reason)


def authenticate(request: Request, token: str | None) -> Principal:
    """The principal of `token`, or 401 (missing, unknown, revoked). The token itself is never logged."""
    if not token:
        raise unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
    with request.app.state.sessions() as session:  # its own session: the route's may open a transaction itself
        row = find_token(session, token_hash=hash_token(token))
    if row is None:
        raise unauthorized("unknown API token")
    if row.revoked_at is not None:
        log.info("a revoked token (%s, owner %s) was refused", row.prefix, row.owner)
        raise unauthorized(f"API token {row.prefix} was revoked")
    return Principal(token_id=row.id, owner=row.owner, scope=row.scope)


class LoginRequired(Exception):
    """A page was asked for without a live session: service.web_sessions answers 303 to /login?next=`next_url`."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def session_principal(request: Request, session_id: str | None) -> Principal | None:
    """The principal of a live web session (not expired, not logged out, its token not revoked); else None."""
    if not session_id:
        return None
    with request.app.state.sessions() as session:
        row = find_live_session(session, session_hash=hash_token(session_id))
    return None if row is None else Principal(token_id=row.id, owner=row.owner, scope=row.scope)


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
SessionCookie = Annotated[str | None, Security(session_cookie)]


def require_token(request: Request, credentials: BearerCredentials) -> Principal:
    """API routes: a bearer token of any scope."""
    return authenticate(request, credentials.credentials if credentials else None)


def require_reader(request: Request, credentials: BearerCredentials, session_id: SessionCookie) -> Principal:
    """GET routes a page shows (plots, curves, the OpenAPI schema): a bearer token, else a live web session; 401."""
    if credentials:
        return authenticate(request, credentials.credentials)
    principal = session_principal(request, session_id)
    if principal is None:
        raise unauthorized("an API token is required: send 'Authorization: Bearer <token>' (or log in at /login)")
    return principal


def require_page_user(request: Request, credentials: BearerCredentials, session_id: SessionCookie) -> Principal:
    """Results pages and /docs: a bearer token (401 when bad), else a live web session, else 303 to the login."""
    if credentials:
        return authenticate(request, credentials.credentials)
    principal = session_principal(request, session_id)
    if principal is None:
        query = request.url.query
        raise LoginRequired(request.url.path + (f"?{query}" if query else ""))
    return principal


def require_write(principal: Annotated[Principal, Depends(require_token)]) -> Principal:
    """Routes that start, stop or store something: a write or admin token (403 for read)."""
    if not principal.can_write:
        raise forbidden(f"token {principal.owner!r} has scope 'read'; this needs 'write' or 'admin'")
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_token)]) -> Principal:
    if not principal.is_admin:
        raise forbidden(f"token {principal.owner!r} has scope {principal.scope!r}; this needs 'admin'")
    return principal

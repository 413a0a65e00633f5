"""API tokens: keyword-only data access for `ApiToken` taking a `Session`.

Only a token's SHA-256 hash is stored (service.auth makes tokens and hashes them); `prefix`, the token's first
characters, names it in listings and on the command line. Transactions belong to the caller; these functions
only flush.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from db.fields import id_in_text
from db.models import TOKEN_SCOPES, ApiToken, utcnow


class TokenNotFound(LookupError):
    """No token, or more than one, matches the reference given."""


def create_token(session: Session, *, token_hash: str, prefix: str, scope: str, owner: str) -> ApiToken:
    """Store a token by its hash. ValueError (naming the field) for an unknown scope or an empty owner."""
    if scope not in TOKEN_SCOPES:
        raise ValueError(f"scope: must be one of {list(TOKEN_SCOPES)}, got {scope!r}")
    if not owner.strip():
        raise ValueError("owner: must not be empty")
    token = ApiToken(token_hash=token_hash, prefix=prefix, scope=scope, owner=owner.strip(), created_at=utcnow())
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, *, token_hash: str) -> ApiToken | None:
    """The token with this hash, revoked or not (the caller decides what a revoked token may do)."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


def revoke_token(session: Session, *, ref: str) -> ApiToken:
    """Revoke the token whose id or prefix is `ref` (revoking twice keeps the first time). TokenNotFound when none
    or several match."""
    ref = ref.strip()
    clause = ApiToken.prefix == ref
    if (token_id := id_in_text(ref)) is not None:
        clause = or_(clause, ApiToken.id == token_id)
    found = list(session.scalars(select(ApiToken).where(clause)))
    if len(found) != 1:
        what = "no token" if not found else f"{len(found)} tokens"
        raise TokenNotFound(f"{what} with id or prefix {ref!r}")
    token = found[0]
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return token


def list_tokens(session: Session, *, include_revoked: bool = True) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))

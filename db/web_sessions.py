"""Web sessions of the results pages: keyword-only data access for `WebSession` taking a `Session`.

A session is stored by the SHA-256 hash of its random id (service.web_sessions makes ids and hashes them) with the
API token it stands for and an absolute expiry. A lookup answers only a live session: not expired, not ended, and
its token not revoked. Transactions belong to the caller; these functions only flush.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import ApiToken, WebSession, utcnow


def create_web_session(session: Session, *, session_hash: str, token_id: int, expires_at: datetime) -> WebSession:
    row = WebSession(session_hash=session_hash, token_id=token_id, created_at=utcnow(), expires_at=expires_at)
    session.add(row)
    session.flush()
    return row


def find_live_session(session: Session, *, session_hash: str, now: datetime | None = None) -> ApiToken | None:
    """The token a live session stands for; None when there is no such session, it has expired, or its token has
    been revoked since the login."""
    return session.scalar(
        select(ApiToken).join(WebSession, WebSession.token_id == ApiToken.id)
        .where(WebSession.session_hash == session_hash, WebSession.expires_at > (now or utcnow()),
               ApiToken.revoked_at.is_(None)))  # fmt: skip


def end_web_session(session: Session, *, session_hash: str) -> bool:
    """Logout: delete the session; False when there was none (already ended or never made)."""
    ended = session.execute(delete(WebSession).where(WebSession.session_hash == session_hash))
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def purge_expired_sessions(session: Session, *, now: datetime | None = None) -> int:
    """Delete sessions past their expiry (a lookup already refuses them); returns how many."""
    purged = session.execute(delete(WebSession).where(WebSession.expires_at <= (now or utcnow())))
    return int(purged.rowcount)  # type: ignore[attr-defined]

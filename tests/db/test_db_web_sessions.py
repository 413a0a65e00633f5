"""Web sessions of the results pages (db.web_sessions) on SQLite and PostgreSQL: a lookup answers the token of a
live session only (not expired, not ended, its token not revoked); logout deletes the row; expired rows purge."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import WebSession, utcnow
from db.tokens import create_token, revoke_token
from db.web_sessions import create_web_session, end_web_session, find_live_session, purge_expired_sessions

HOUR = timedelta(hours=1)


def test_a_session_stands_for_its_token_until_it_expires_ends_or_the_token_is_revoked(
        factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with factory.begin() as s:
        lena = create_token(s, token_hash="t-lena", prefix="rg_lena", scope="read", owner="lena")
        omar = create_token(s, token_hash="t-omar", prefix="rg_omar", scope="write", owner="omar")
        for h, token, expires in (("live", lena, now + 12 * HOUR), ("old", lena, now - HOUR),
                                  ("omar", omar, now + HOUR), ("omar2", omar, now + HOUR)):
            create_web_session(s, session_hash=h, token_id=token.id, expires_at=expires)
    with factory() as s:
        live = find_live_session(s, session_hash="live", now=now)
        assert live is not None and (live.owner, live.scope) == ("lena", "read")
        assert find_live_session(s, session_hash="old", now=now) is None  # expired an hour ago
        assert find_live_session(s, session_hash="live", now=now + 12 * HOUR) is None  # at its expiry: over
        assert find_live_session(s, session_hash="t-lena", now=now) is None  # a token hash is not a session
        assert find_live_session(s, session_hash="nope", now=now) is None
    with factory.begin() as s:
        assert end_web_session(s, session_hash="live") is True
        assert end_web_session(s, session_hash="live") is False  # ended once
        assert find_live_session(s, session_hash="live", now=now) is None
        revoke_token(s, ref="rg_omar")
    with factory() as s:
        assert find_live_session(s, session_hash="omar", now=now) is None  # every session of a revoked token
        assert find_live_session(s, session_hash="omar2", now=now) is None
    with factory.begin() as s:
        assert purge_expired_sessions(s, now=now) == 1  # "old"
        assert s.scalar(select(func.count()).select_from(WebSession)) == 2  # omar's (refused by the lookup)

"""`robustgrid token create | revoke | list`: API tokens. A token is printed once, by `create`; the store keeps only
its SHA-256 hash, so a lost token is revoked and replaced, never shown again."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from db.engine import make_engine, session_factory, upgrade
from db.tokens import TokenNotFound, list_tokens, revoke_token
from service.auth import issue_token
from service.cli.common import DbOpt, app, fail, settings_from

token_app = typer.Typer(no_args_is_help=True, help="API tokens (scopes read, write, admin), stored hashed.")
app.add_typer(token_app, name="token")

Scope = Literal["read", "write", "admin"]


def _sessions(database_url: str | None):
    engine = make_engine(settings_from(database_url=database_url).database_url)
    upgrade(engine)
    return session_factory(engine)


@token_app.command("create")
def create(owner: Annotated[str, typer.Option(help="who the token acts as (sweeps record it)")],
           scope: Annotated[Scope, typer.Option(help="read: GETs; write: also submit, cancel, resume, extend, "
                                                      "import; admin: also every owner's sweeps")] = "read",
           database_url: DbOpt = None) -> None:
    """Make a token and print it once (stdout: the token alone, for scripts; stderr: how to use it)."""
    try:
        with _sessions(database_url).begin() as s:
            row, token = issue_token(s, scope=scope, owner=owner)
            prefix, token_id = row.prefix, row.id
    except ValueError as e:
        fail(str(e))
    typer.echo(f"token {token_id} ({prefix}..., scope {scope}, owner {owner}); shown once, keep it safe:", err=True)
    typer.echo(token)
    typer.echo('use: curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/v1/sweeps', err=True)


@token_app.command("revoke")
def revoke(ref: Annotated[str, typer.Argument(help="the token's id or prefix (robustgrid token list)")],
           database_url: DbOpt = None) -> None:
    """Revoke a token: every request with it answers 401 from now on."""
    try:
        with _sessions(database_url).begin() as s:
            row = revoke_token(s, ref=ref)
            line = f"revoked token {row.id} ({row.prefix}..., owner {row.owner}) at {row.revoked_at:%Y-%m-%d %H:%M:%S}"
    except TokenNotFound as e:
        fail(f"token: {e}")
    typer.echo(line)


@token_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="one JSON object per token")] = False,
          database_url: DbOpt = None) -> None:
    """Every token: id, prefix, scope, owner, created, revoked (never the token: it is not stored)."""
    with _sessions(database_url)() as s:
        rows = [{"id": t.id, "prefix": t.prefix, "scope": t.scope, "owner": t.owner,
                 "created_at": t.created_at.isoformat(timespec="seconds"),
                 "revoked_at": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None}
                for t in list_tokens(s)]
    for r in rows:
        typer.echo(json.dumps(r) if as_json else
                   f"{r['id']:>4}  {r['prefix']}...  {r['scope']:<5}  {r['owner']:<20}  {r['created_at']}"
                   f"{'  revoked ' + r['revoked_at'] if r['revoked_at'] else ''}")

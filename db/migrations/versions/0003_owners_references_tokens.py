"""owners, reference (imported) sweeps, idempotency keys, API tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 00:00:01

- sweeps.owner: who submitted it (the API token's owner); sweeps.imported / sweeps.source: a reference sweep loaded
  from a results file (e.g. the published studies) rather than run; sweeps.idempotency_key: a retried POST with the
  same `Idempotency-Key` returns the sweep it created.
- api_tokens: hashed API tokens with a scope (read, write, admin), an owner and a revocation time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKEN_SCOPE = "scope IN ('read', 'write', 'admin')"


def upgrade() -> None:
    op.add_column("sweeps", sa.Column("owner", sa.String(200), nullable=True))
    op.add_column("sweeps", sa.Column("imported", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("sweeps", sa.Column("source", sa.Text(), nullable=True))
    op.add_column("sweeps", sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.create_index(op.f("ix_sweeps_owner"), "sweeps", ["owner"])
    # a unique index (not a constraint): SQLite cannot add a constraint to an existing table without a copy
    op.create_index(op.f("uq_sweeps_idempotency_key"), "sweeps", ["idempotency_key"], unique=True)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sa.CheckConstraint(TOKEN_SCOPE, name=op.f("ck_api_tokens_scope")),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index(op.f("uq_sweeps_idempotency_key"), table_name="sweeps")
    op.drop_index(op.f("ix_sweeps_owner"), table_name="sweeps")
    for column in ("idempotency_key", "source", "imported", "owner"):
        op.drop_column("sweeps", column)

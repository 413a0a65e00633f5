"""sweeps.launch_claim and sweeps.launch_lease_until: the one request launching a sweep's Ray job right now

Concurrent replays of one `Idempotency-Key` each found the sweep queued without a job and each launched it (16
threads: three 503s and six 500s `ForbiddenTransition failed->failed`). A launch now claims the sweep first with a
conditional UPDATE (db.sweeps.claim_launch); the claim is a lease, renewed while the launch runs, so a request
that dies mid-launch leaves a claim that lapses and a retry launches instead.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:00:03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:  # ALTER on PostgreSQL; a table copy on SQLite
        batch.add_column(sa.Column("launch_claim", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("launch_lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("launch_lease_until")
        batch.drop_column("launch_claim")

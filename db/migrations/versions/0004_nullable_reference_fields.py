"""trials.params, trials.macs and trials.lam may be NULL (imported references)

A reference sweep imported from a paper holds what the paper states (a DenseNet's parameters without its MACs, a
table without a lambda); run sweeps always fill them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:00:02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("params", sa.BigInteger()), ("macs", sa.BigInteger()), ("lam", sa.Float()),
)


def _nullable(nullable: bool) -> None:
    with op.batch_alter_table("trials") as batch:  # ALTER on PostgreSQL; a table copy on SQLite
        for name, type_ in COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=nullable)


def upgrade() -> None:
    _nullable(True)


def downgrade() -> None:
    # 0003 cannot hold an unstated value: those imported trials go (their rows cascade), run sweeps stay whole
    op.execute("DELETE FROM epoch_metrics WHERE trial_id IN (SELECT id FROM trials WHERE params IS NULL OR "
               "macs IS NULL OR lam IS NULL)")
    op.execute("DELETE FROM final_results WHERE trial_id IN (SELECT id FROM trials WHERE params IS NULL OR "
               "macs IS NULL OR lam IS NULL)")
    op.execute("DELETE FROM trials WHERE params IS NULL OR macs IS NULL OR lam IS NULL")
    _nullable(False)

"""epoch_metrics.clean_loss_test and adv_loss_test: the per-epoch losses on the test set (select_on: test)

Under `select_on: test` (the studies' protocol) the per-epoch evaluation runs on the test set; its losses had no
column (the `_val` ones are the validation split's) and were dropped, so eps* had no epoch to select and no R0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 00:00:02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch:  # ALTER on PostgreSQL; a table copy on SQLite
        batch.add_column(sa.Column("clean_loss_test", sa.Float(), nullable=True))
        batch.add_column(sa.Column("adv_loss_test", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("adv_loss_test")
        batch.drop_column("clean_loss_test")

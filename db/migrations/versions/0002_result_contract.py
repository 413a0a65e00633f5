"""the result contract's vocabulary: macs, device_seconds, _val losses per epoch; trial device and node; sweep error

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:00:00

Renames move the existing data with their columns (ALTER TABLE ... RENAME COLUMN, SQLite >= 3.25 and PostgreSQL):
- trials.flops -> macs (it always held multiply-accumulates), trials.gpu_seconds -> device_seconds;
- epoch_metrics.clean_loss_test / adv_loss_test -> clean_loss_val / adv_loss_val (they were measured on the
  validation split), epoch_metrics.seconds -> device_seconds;
- final_results.gpu_seconds -> device_seconds.
New nullable columns: trials.device, trials.node (provenance), sweeps.error (why a sweep failed).
Sweep statuses gain `cancelling` (db.states: a cancel asked for, its Ray job being stopped); the CHECK constraint is
replaced (SQLite: the table is recreated in batch mode, foreign keys off meanwhile: db.engine.migration_connection).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES: tuple[tuple[str, str, str], ...] = (
    ("trials", "flops", "macs"),
    ("trials", "gpu_seconds", "device_seconds"),
    ("epoch_metrics", "clean_loss_test", "clean_loss_val"),
    ("epoch_metrics", "adv_loss_test", "adv_loss_val"),
    ("epoch_metrics", "seconds", "device_seconds"),
    ("final_results", "gpu_seconds", "device_seconds"),
)
ADDED: tuple[tuple[str, str, sa.types.TypeEngine], ...] = (
    ("trials", "device", sa.String(200)),
    ("trials", "node", sa.String(300)),
    ("sweeps", "error", sa.Text()),
)


SWEEP_STATUS_0001 = "status IN ('queued', 'running', 'completed', 'failed', 'cancelled')"
SWEEP_STATUS_0002 = "status IN ('queued', 'running', 'completed', 'failed', 'cancelling', 'cancelled')"


def _sweep_status_check(check: str) -> None:
    with op.batch_alter_table("sweeps") as batch:  # ALTER on PostgreSQL; a table copy on SQLite
        batch.drop_constraint(op.f("ck_sweeps_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sweeps_status"), check)


def _rename(table: str, old: str, new: str) -> None:
    op.execute(f'ALTER TABLE {table} RENAME COLUMN "{old}" TO "{new}"')


def upgrade() -> None:
    for table, old, new in RENAMES:
        _rename(table, old, new)
    for table, name, type_ in ADDED:
        op.add_column(table, sa.Column(name, type_, nullable=True))
    _sweep_status_check(SWEEP_STATUS_0002)


def downgrade() -> None:
    op.execute("UPDATE sweeps SET status = 'cancelled' WHERE status = 'cancelling'")  # 0001 has no such state
    _sweep_status_check(SWEEP_STATUS_0001)
    for table, name, _ in reversed(ADDED):
        op.drop_column(table, name)
    for table, old, new in reversed(RENAMES):
        _rename(table, new, old)

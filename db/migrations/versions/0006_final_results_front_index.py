"""final_results.sweep_id, params and macs (copies of the trial's) and the covering indexes of Pareto fronts

A Pareto front of (params, robust accuracy) over 100,000 final rows joined every row with its trial (250 ms on
SQLite); with the trial's sweep, params and macs on the row, the front's query reads one index range in order
(docs/benchmarks.md, "Pareto over 100,000 rows"). A trial's params and macs are fixed when it is stored, so the
copies never go stale; the upgrade fills them for every existing row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FRONT_Y = ("robust_acc", "clean_acc", "stability")  # one covering index per accuracy a front is drawn on


def _front_columns(y: str) -> list[str]:
    return ["sweep_id", "attack", "checkpoint", y, "params", "macs", "n_total", "trial_id"]


def upgrade() -> None:
    with op.batch_alter_table("final_results") as batch:  # ALTER on PostgreSQL; a table copy on SQLite
        batch.add_column(sa.Column("sweep_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("params", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("macs", sa.BigInteger(), nullable=True))
    for col in ("sweep_id", "params", "macs"):
        op.execute(
            f"UPDATE final_results SET {col} = (SELECT trials.{col} FROM trials "
            f"WHERE trials.id = final_results.trial_id)"
        )
    with op.batch_alter_table("final_results") as batch:
        batch.alter_column("sweep_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key("fk_final_results_sweep_id_sweeps", "sweeps", ["sweep_id"], ["id"], ondelete="CASCADE")
        for y in FRONT_Y:
            batch.create_index(f"ix_final_results_front_{y}", _front_columns(y))


def downgrade() -> None:
    with op.batch_alter_table("final_results") as batch:
        for y in FRONT_Y:
            batch.drop_index(f"ix_final_results_front_{y}")
        batch.drop_constraint("fk_final_results_sweep_id_sweeps", type_="foreignkey")
        batch.drop_column("macs")
        batch.drop_column("params")
        batch.drop_column("sweep_id")

"""initial schema: sweeps, trials, epoch_metrics, final_results

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEEP_STATUS = "status IN ('queued', 'running', 'completed', 'failed', 'cancelled')"
TRIAL_STATUS = "status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'stopped')"
CHECKPOINT = "checkpoint IN ('best', 'last')"


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.Column("ray_job_id", sa.String(200), nullable=True),
        sa.Column("dashboard_url", sa.String(500), nullable=True),
        sa.Column("code_version", sa.String(100), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
        sa.UniqueConstraint("name", name=op.f("uq_sweeps_name")),
        sa.CheckConstraint(SWEEP_STATUS, name=op.f("ck_sweeps_status")),
    )
    op.create_index(op.f("ix_sweeps_status"), "sweeps", ["status"])

    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("arch", sa.String(200), nullable=False),
        sa.Column("depths", sa.String(100), nullable=False),
        sa.Column("widths", sa.String(100), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("flops", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("lam", sa.Float(), nullable=False),
        sa.Column("eps", sa.Float(), nullable=False),
        sa.Column("norm", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("n_train", sa.Integer(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("started_at", True),
        _ts("ended_at", True),
        sa.Column("gpu_seconds", sa.Float(), nullable=True),
        sa.Column("code_version", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name=op.f("fk_trials_sweep_id_sweeps"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("sweep_id", "idx", name=op.f("uq_trials_sweep_id_idx")),
        sa.UniqueConstraint("sweep_id", "config_hash", name=op.f("uq_trials_sweep_id_config_hash")),
        sa.CheckConstraint(TRIAL_STATUS, name=op.f("ck_trials_status")),
    )
    for col in ("sweep_id", "arch", "method", "eps", "dataset", "status"):
        op.create_index(op.f(f"ix_trials_{col}"), "trials", [col])

    op.create_table(
        "epoch_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        *[
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "clean_acc", "robust_acc", "stability", "clean_loss_train", "adv_loss_train", "clean_loss_test",
                "adv_loss_test", "natural_risk", "robust_reg", "local_lipschitz", "lam_t", "lr", "seconds",
            )  # fmt: skip
        ],
        sa.Column("lam_trajectory", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_epoch_metrics")),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name=op.f("fk_epoch_metrics_trial_id_trials"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("trial_id", "epoch", name=op.f("uq_epoch_metrics_trial_id_epoch")),
    )
    op.create_index(op.f("ix_epoch_metrics_trial_id"), "epoch_metrics", ["trial_id"])

    op.create_table(
        "final_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.String(8), nullable=False),
        sa.Column("attack", sa.String(50), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("clean_acc", sa.Float(), nullable=True),
        sa.Column("robust_acc", sa.Float(), nullable=True),
        sa.Column("stability", sa.Float(), nullable=True),
        sa.Column("n_total", sa.Integer(), nullable=True),
        sa.Column("n_correct", sa.Integer(), nullable=True),
        sa.Column("n_stable", sa.Integer(), nullable=True),
        sa.Column("n_robust", sa.Integer(), nullable=True),
        sa.Column("emp_lipschitz", sa.Float(), nullable=True),
        sa.Column("emp_lipschitz_blocks", sa.JSON(), nullable=True),
        sa.Column("clean_loss_test", sa.Float(), nullable=True),
        sa.Column("adv_loss_test", sa.Float(), nullable=True),
        sa.Column("gpu_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_final_results")),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name=op.f("fk_final_results_trial_id_trials"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "trial_id", "checkpoint", "attack", name=op.f("uq_final_results_trial_id_checkpoint_attack")
        ),
        sa.CheckConstraint(CHECKPOINT, name=op.f("ck_final_results_checkpoint")),
    )
    op.create_index(op.f("ix_final_results_trial_id"), "final_results", ["trial_id"])
    op.create_index(op.f("ix_final_results_attack"), "final_results", ["attack"])


def downgrade() -> None:
    op.drop_table("final_results")
    op.drop_table("epoch_metrics")
    op.drop_table("trials")
    op.drop_table("sweeps")

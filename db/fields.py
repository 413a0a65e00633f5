"""The single result vocabulary (architecture.md, "Result fields") and the status/metric name sets.

Every layer (DB queries, API, CSV, CLI) names result columns with exactly these strings, in this order.
"""

from __future__ import annotations

RESULT_FIELDS: tuple[str, ...] = (
    "sweep", "trial", "arch", "depths", "widths", "params", "flops", "method", "lam", "eps", "norm", "dataset",
    "n_train", "seed", "checkpoint", "epoch", "clean_acc", "robust_acc", "stability", "emp_lipschitz",
    "clean_loss_train", "clean_loss_test", "adv_loss_train", "adv_loss_test", "natural_risk", "robust_reg",
    "local_lipschitz", "lam_t", "attack", "gpu_seconds", "status", "error",
)  # fmt: skip

# Per-epoch extras returned by `trial_curves` after the RESULT_FIELDS (not filterable result fields).
EPOCH_EXTRA_FIELDS: tuple[str, ...] = ("lr", "seconds", "lam_trajectory")

SWEEP_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled")
TRIAL_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled", "stopped")
TERMINAL_TRIAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "stopped"})
CHECKPOINTS: tuple[str, ...] = ("best", "last")

# Keys `upsert_epoch` accepts in `metrics` (columns of epoch_metrics besides the key (trial_id, epoch)).
EPOCH_METRIC_KEYS: tuple[str, ...] = (
    "clean_acc", "robust_acc", "stability", "clean_loss_train", "adv_loss_train", "clean_loss_test",
    "adv_loss_test", "natural_risk", "robust_reg", "local_lipschitz", "lam_t", "lr", "seconds", "lam_trajectory",
)  # fmt: skip

# Keys `upsert_final` accepts in `metrics` (columns of final_results besides the key (trial_id, checkpoint, attack)).
FINAL_METRIC_KEYS: tuple[str, ...] = (
    "epoch", "clean_acc", "robust_acc", "stability", "n_total", "n_correct", "n_stable", "n_robust",
    "emp_lipschitz", "emp_lipschitz_blocks", "clean_loss_test", "adv_loss_test", "gpu_seconds",
)  # fmt: skip

"""Metrics computed from a model and (clean, adversarial) batches."""

from workers.metrics.lipschitz import empirical_lipschitz, lipschitz_ratios

__all__ = ["empirical_lipschitz", "lipschitz_ratios"]

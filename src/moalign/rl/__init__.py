"""RL maths shared by trainers: advantage estimators and per-objective gradient statistics."""

from .advantages import ESTIMATORS, compute_advantages, is_linear

__all__ = ["ESTIMATORS", "compute_advantages", "is_linear"]

"""RL maths shared by trainers: advantage estimators, per-objective gradient statistics and the framework-free step
(:func:`weigh_step` before the policy update, :func:`finish_step` after it)."""

from .advantages import ESTIMATORS, compute_advantages, is_linear
from .step import AGGREGATIONS, StepRecord, finish_step, weigh_step

__all__ = ["AGGREGATIONS", "ESTIMATORS", "StepRecord", "compute_advantages", "finish_step", "is_linear", "weigh_step"]

"""RL maths shared by trainers: advantage estimators and per-objective gradient statistics.

The framework-free step is :class:`moalign.rl.engine.StepEngine` (one object per run: estimator, strategy, Gram slot,
interference monitor, step record, state), built on the functions of :mod:`moalign.rl.step`. Neither is imported here
because both depend on :mod:`moalign.weighting`, which itself uses :mod:`moalign.rl.covariance`.
"""

from .advantages import ESTIMATORS, compute_advantages, is_linear

__all__ = ["ESTIMATORS", "compute_advantages", "is_linear"]

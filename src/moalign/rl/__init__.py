"""RL maths shared by trainers: advantage estimators and per-objective gradient statistics.

The framework-free step (:func:`moalign.rl.step.weigh_step` before the policy update,
:func:`moalign.rl.step.finish_step` after it) is in :mod:`moalign.rl.step`; it is not imported here because it
depends on :mod:`moalign.weighting`, which itself uses :mod:`moalign.rl.covariance`.
"""

from .advantages import ESTIMATORS, compute_advantages, is_linear

__all__ = ["ESTIMATORS", "compute_advantages", "is_linear"]

"""Weighting strategies behind one interface (see :mod:`moalign.weighting.base`).

>>> from moalign import weighting
>>> weighting.build("fixed", num_objectives=3, preset="balanced").weights().tolist()
[0.334, 0.333, 0.333]
"""

from . import fixed  # noqa: F401  (registers the strategy)
from .base import STRATEGIES, StepStats, WeightingStrategy, available, build, register

__all__ = ["STRATEGIES", "StepStats", "WeightingStrategy", "available", "build", "register"]

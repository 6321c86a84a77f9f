"""Weighting strategies behind one interface (see :mod:`moalign.weighting.base`).

>>> from moalign import weighting
>>> weighting.build("fixed", num_objectives=3, preset="balanced").weights().tolist()
[0.334, 0.333, 0.333]
"""

# Importing a strategy module registers it.
from . import (  # noqa: F401
    ctwa,
    famo,
    fixed,
    gradient,
    gradnorm,
    hypervolume,
    lagrangian,
    mgda,
    nash_mtl,
    pama,
    saw,
    tchebycheff,
)
from .base import (
    STRATEGIES,
    StepStats,
    WeightingStrategy,
    available,
    build,
    check_parameter_names,
    needs_for,
    register,
)

__all__ = [
    "STRATEGIES", "StepStats", "WeightingStrategy", "available", "build", "check_parameter_names", "needs_for", "register",
]

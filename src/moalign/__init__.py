"""moalign: multi-objective online RL alignment of language models with dynamic reward weighting.

``from moalign import MOGRPOTrainer, MOGRPOConfig`` works as TRL's ``from trl import GRPOTrainer, GRPOConfig``.
Names are imported on first use (PEP 562 ``__getattr__``), so ``import moalign`` loads neither torch nor TRL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "MOGRPOTrainer": "moalign.trainer",
    "MOGRPOConfig": "moalign.mo_config",
    "StepEngine": "moalign.rl.engine",
    "RewardModelObjective": "moalign.objectives",
    "build_objectives": "moalign.objectives",
    "pareto": "moalign.pareto",
    "weighting": "moalign.weighting",
    "objectives": "moalign.objectives",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from . import objectives, pareto, weighting
    from .mo_config import MOGRPOConfig
    from .objectives import RewardModelObjective, build_objectives
    from .rl.engine import StepEngine
    from .trainer import MOGRPOTrainer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'moalign' has no attribute {name!r}")
    target = importlib.import_module(module)
    value = target if module == f"moalign.{name}" else getattr(target, name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

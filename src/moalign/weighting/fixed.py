"""Fixed weights: linear scalarization ``r = Σ_k w_k r_k`` (the static baseline of both papers).

Presets are the three baseline configurations of *Learning to Optimize Multi-Objective Alignment Through Dynamic
Reward Weighting* (arXiv 2509.11452, §6.1), in the objective order [accuracy, conciseness, clarity].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import WeightingStrategy, check_weight_vector, register

PRESETS: dict[str, list[float]] = {
    "accuracy_focused": [0.5, 0.25, 0.25],
    "balanced": [0.334, 0.333, 0.333],
    "efficiency_focused": [0.25, 0.375, 0.375],
}


def resolve_weights(
    weights: Sequence[float] | None, preset: str | None, num_objectives: int, strategy: str
) -> np.ndarray | None:
    """Validated weights from ``weights`` or a ``preset`` name (exclusive); None when neither is given."""
    if weights is not None and preset is not None:
        raise ValueError(f"strategy_params: give either `weights` or `preset` for strategy {strategy!r}, not both")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r} for strategy {strategy!r}; valid presets: {', '.join(PRESETS)}")
        if num_objectives != 3:
            raise ValueError(
                f"preset {preset!r} is defined for 3 objectives [accuracy, conciseness, clarity], but there are "
                f"{num_objectives}; give `weights` explicitly instead"
            )
        weights = PRESETS[preset]
    return None if weights is None else check_weight_vector(weights, num_objectives, "strategy_params.weights")


@register("fixed")
class Fixed(WeightingStrategy):
    """Static weights, given explicitly or by preset name.

    Args:
        weights: one non-negative weight per objective, used as given (not renormalised, so a run matches TRL's
            ``reward_weights`` exactly). Default: uniform ``1/K``.
        preset: one of ``accuracy_focused``, ``balanced``, ``efficiency_focused`` (3 objectives, order
            [accuracy, conciseness, clarity]). Mutually exclusive with ``weights``.

    >>> Fixed(3, preset="accuracy_focused").weights().tolist()
    [0.5, 0.25, 0.25]
    """

    on_simplex = False  # user weights are applied as given

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        preset: str | None = None,
    ):
        super().__init__(num_objectives, objective_names)
        resolved = resolve_weights(weights, preset, self.num_objectives, "fixed")
        if resolved is not None:
            self._w = resolved
        self.preset = preset

    def hyperparameters(self) -> dict[str, Any]:
        return {"weights": self._w.tolist()} if self.preset is None else {"preset": self.preset}

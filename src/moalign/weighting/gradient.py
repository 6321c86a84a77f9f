"""Gradient-based weight optimization: mirror descent on the simplex driven by gradient influence.

*Learning to Optimize Multi-Objective Alignment Through Dynamic Reward Weighting* (Lu et al., 2025,
arXiv 2509.11452), §5, Eq. 3 and Algorithm 2. At every RL step, after the per-objective policy gradients
``∇J_k`` of the batch are known and before the policy update:

    I_i = <∇J_i, Σ_k ∇J_k> = (G·1)_i                                     (gradient influence)
    w ← normalize(w ⊙ exp(η_t·I/μ)) = softmax(log w + η_t·I/μ)         (Eq. 3, computed in log space)

``G`` is the ``(K, K)`` Gram matrix of the per-objective gradients (``G_ij = <∇J_i, ∇J_j>``); an objective whose
gradient is aligned with the sum of all of them (large influence ``I_i``) gains weight. The new weights scalarize
this same batch (Algorithm 2, lines 9-14: the trainer calls :meth:`before_update` and then :meth:`weights`).

=================  ===============================  ============================================================
symbol             parameter                        paper value
=================  ===============================  ============================================================
``w_0``            ``initial_weights``              uniform ``1/K``
``μ``              ``mu``                           ``1e-5`` (Qwen3-8B, Math500); ``1e-4`` for other models and
                                                    datasets
``η_t``            ``stats.lr`` × ``eta_scale``     the policy learning rate at step ``t`` (polynomial decay,
                                                    power 1.03, done by the trainer's scheduler); scale 1.0
``G``              ``stats.gram``                   gradients restricted to middle decoder layers (Qwen3-8B:
                                                    10-25) -- a trainer setting
=================  ===============================  ============================================================

Trainer settings of the paper (not parameters of this class): PPO clipping disabled (ε = dual-clip = 100) so that
the objective stays linear in the weights, polynomial LR decay with power 1.03, target layers for ``G``.

Theorem 5.2 of the paper bounds ``max(w) / min(w)`` when ``Σ_t η_t / μ`` converges; :meth:`metrics` reports
``log_weight_ratio`` and ``sum_eta_over_mu`` so the bound can be watched. ``max_weight_ratio`` (an extension, off
by default) enforces such a bound directly by raising every weight to at least ``max(w) / ratio`` and renormalising
(clipping the log-weights from below; the largest weight keeps its rank, the ratio becomes exactly ``ratio``).

Numerical guard: a non-finite ``G``, influence, learning rate or update -- or an update that would underflow a
weight to exactly 0, from which a multiplicative update never recovers -- keeps the previous weights and reports
``skipped = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..rl.advantages import is_linear
from .base import StepStats, WeightingStrategy, _load_vector, check_weight_vector, register, softmax, require_gram

__all__ = ["Gradient", "linearity_holds"]

_ESTIMATORS = ("grpo", "rloo", "reinforce")
_SCALES = ("group", "batch", "none")


def linearity_holds(advantage_estimator: str, scale_rewards: str) -> bool:
    """Whether the advantage of ``Σ_k w_k r_k`` equals ``Σ_k w_k A_k`` for this estimator and reward scaling.

    The gradient method assumes the gradient of the scalarized objective is ``Σ_k w_k ∇J_k`` (§5). This holds for
    ``rloo`` (``scale_rewards`` does not apply to it), ``grpo`` with ``scale_rewards="none"`` and ``reinforce`` with
    ``scale_rewards="none"`` (batch-mean baseline); dividing by a standard deviation (``grpo`` with ``"group"`` or
    ``"batch"``, REINFORCE++ batch whitening) breaks it.

    >>> linearity_holds("rloo", "group"), linearity_holds("grpo", "none"), linearity_holds("grpo", "group")
    (True, True, False)
    """
    if advantage_estimator not in _ESTIMATORS:
        raise ValueError(
            f"unknown advantage_estimator {advantage_estimator!r}; valid names: {', '.join(_ESTIMATORS)}"
        )
    if scale_rewards not in _SCALES:
        raise ValueError(f"scale_rewards must be one of {', '.join(_SCALES)}, but got {scale_rewards!r}")
    return is_linear(advantage_estimator, scale_rewards)


@register("gradient")
class Gradient(WeightingStrategy):
    """Mirror-descent weights ``w ← softmax(log w + η_t·(G·1)/μ)`` (arXiv 2509.11452, §5, Eq. 3, Algorithm 2).

    Args:
        mu: temperature ``μ > 0`` of the update. Paper: ``1e-5`` (Qwen3-8B on Math500), ``1e-4`` for other models
            and datasets.
        initial_weights: K positive weights, normalised to the simplex. Default: uniform. A zero weight would stay
            zero forever under a multiplicative update, so zeros are rejected.
        max_weight_ratio: optional bound ``> 1`` on ``max(w) / min(w)``, enforced after every update by clipping the
            log-weights from below at ``log max(w) − log ratio`` (an extension; the paper bounds the ratio only
            through Theorem 5.2). Default: no bound.
        eta_scale: multiplier on the trainer's learning rate, ``η_t = eta_scale · stats.lr``. Default 1.0 (paper).

    >>> g = Gradient(3, mu=1.0)
    >>> g.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), lr=1.0,
    ...                           gram=np.diag([2.0, 1.0, 1.0])))
    >>> bool(g.weights()[0] > g.weights()[1])
    True
    """

    needs = frozenset({"gram"})

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        mu: float = 1e-5,
        initial_weights: Sequence[float] | None = None,
        max_weight_ratio: float | None = None,
        eta_scale: float = 1.0,
    ):
        super().__init__(num_objectives, objective_names)
        if not _is_real(mu) or not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"strategy_params.mu must be a positive number, but got {mu!r} (paper: 1e-5)")
        if not _is_real(eta_scale) or not (math.isfinite(eta_scale) and eta_scale >= 0):
            raise ValueError(f"strategy_params.eta_scale must be a non-negative number, but got {eta_scale!r}")
        if max_weight_ratio is not None and (
            not _is_real(max_weight_ratio) or not (math.isfinite(max_weight_ratio) and max_weight_ratio > 1)
        ):
            raise ValueError(
                f"strategy_params.max_weight_ratio must be a number > 1 (or null for no bound), "
                f"but got {max_weight_ratio!r}"
            )
        self.mu, self.eta_scale = float(mu), float(eta_scale)
        self.max_weight_ratio = None if max_weight_ratio is None else float(max_weight_ratio)
        self._initial = None if initial_weights is None else list(map(float, initial_weights))
        if initial_weights is not None:
            w = check_weight_vector(initial_weights, self.num_objectives, "strategy_params.initial_weights")
            if np.any(w <= 0):
                raise ValueError(
                    f"strategy_params.initial_weights must be positive, but got {w.tolist()}; a zero weight stays "
                    "zero under the multiplicative update -- drop the objective instead"
                )
            self._w = w / w.sum()
        if self.max_weight_ratio is not None and self._w.max() / self._w.min() > self.max_weight_ratio * (1 + 1e-12):
            raise ValueError(
                f"strategy_params.initial_weights {self._w.tolist()} have max/min ratio "
                f"{self._w.max() / self._w.min():.4g} > max_weight_ratio={self.max_weight_ratio}; "
                "raise max_weight_ratio or give more even initial weights"
            )
        self._sum_eta_over_mu = 0.0
        self._influence: list[float] | None = None
        self._skipped = False

    def before_update(self, stats: StepStats) -> None:
        G = require_gram(stats, "gradient", self.num_objectives)  # (K, K)
        K = self.num_objectives
        eta = self.eta_scale * float(stats.lr)
        self._skipped = True
        if not (np.all(np.isfinite(G)) and math.isfinite(eta)):
            return
        I = G @ np.ones(K)  # (K,) I_i = <∇J_i, Σ_k ∇J_k>
        with np.errstate(all="ignore"):
            logits = np.log(self._w) + eta * I / self.mu
            w = softmax(logits)  # normalize(w ⊙ exp(η I / μ)), stable
        if not (np.all(np.isfinite(I)) and np.all(np.isfinite(w))):
            return
        if self.max_weight_ratio is not None:
            w = np.maximum(w, w.max() / self.max_weight_ratio)  # clip log w from below, then renormalise
            w = w / w.sum()
        if not np.all(w > 0):  # an underflowed weight would stay 0 forever and make the ratio infinite
            return
        self._set_weights(w)
        self._influence = I.tolist()
        self._sum_eta_over_mu += eta / self.mu
        self._skipped = False

    def metrics(self) -> dict[str, float]:
        out = {
            "log_weight_ratio": float(np.log(self._w.max()) - np.log(self._w.min())),
            "sum_eta_over_mu": self._sum_eta_over_mu,
            "skipped": float(self._skipped),
        }
        if self._influence is not None:
            out.update({f"influence/{n}": v for n, v in zip(self.objective_names, self._influence, strict=True)})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self._w.tolist(),
            "sum_eta_over_mu": self._sum_eta_over_mu,
            "influence": self._influence,
            "skipped": self._skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._w = _load_vector(state, "weights", self.num_objectives, self.name)
        self._sum_eta_over_mu = float(state.get("sum_eta_over_mu", 0.0))
        influence = state.get("influence")
        self._influence = None if influence is None else [float(v) for v in influence]
        self._skipped = bool(state.get("skipped", False))

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "mu": self.mu,
            "initial_weights": self._initial,
            "max_weight_ratio": self.max_weight_ratio,
            "eta_scale": self.eta_scale,
        }


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

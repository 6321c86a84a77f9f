"""GradNorm: balance gradient norms so that objectives train at similar rates.

*GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks* (Chen et al., ICML 2018,
arXiv 1711.02257), §3 and Algorithm 1, adapted to rewards. Each step, before the policy update and with
``G`` the Gram matrix of the per-objective policy gradients:

    ‖g_k‖  = sqrt(G_kk)                                  (gradient norm of objective k)
    L_k    = max(1 − mean_batch r_k, 0) + ε              (a positive "loss" from the reward; 0/1 rewards: error rate)
    r̃_k    = (L_k / L_k(0)) / mean_j (L_j / L_j(0))        (relative inverse training rate; L(0): first step)
    T_k    = mean_j(W_j ‖g_j‖) · r̃_k^a                     (target norm, held constant)
    W_k   ← W_k − β · sign(W_k ‖g_k‖ − T_k) · ‖g_k‖ / s    (gradient step on Σ_k |W_k ‖g_k‖ − T_k|)
    W     ← K · max(W, 1e-3) / Σ max(W, 1e-3)            (renormalise to Σ W = K, as in the paper)

``s`` is ``mean_j ‖g_j‖`` when ``scale_invariant`` (default), making the step independent of the gradients'
scale (policy-gradient norms vary by orders of magnitude across models); ``s = 1`` is the reference code's step.
The updated weights scalarize this same batch; :meth:`weights` returns ``W / K`` (on the simplex).

=======  ===================  ======================================================
symbol   parameter            default
=======  ===================  ======================================================
``a``    ``alpha``            ``1.5`` (the paper's asymmetry hyperparameter)
``β``    ``lr``               ``0.025``
``ε``    ``eps``              ``1e-3``
=======  ===================  ======================================================

Deviations from the reference code, which uses the policy-gradient surrogate losses: those cross zero, so
``L/L(0)`` changes sign or divides by ~0 and ``r̃^a`` becomes NaN. Rewards give a positive loss instead; a zero
gradient norm only freezes that objective's own weight; the weights are floored at 1e-3 so they stay positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StateField, StepStats, WeightingStrategy, check_number, register, require_gram

__all__ = ["GradNorm"]


@register("gradnorm")
class GradNorm(WeightingStrategy):
    """GradNorm weights from the Gram diagonal and reward-based losses; see the module docstring."""

    needs = frozenset({"gram"})
    state_fields = {
        "weights": StateField("_w"), "gradnorm_weights": StateField("_W"),  # W sums to K; weights() is W / K
        "initial_losses": StateField("_L0", nullable=True),  # L(0); None before the first step
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        alpha: float = 1.5,
        lr: float = 0.025,
        eps: float = 1e-3,
        scale_invariant: bool = True,
    ):
        super().__init__(num_objectives, objective_names)
        alpha = check_number(alpha, "strategy_params.alpha", low=0, hint=" (paper: 1.5)")
        if not isinstance(scale_invariant, bool):
            raise ValueError(f"strategy_params.scale_invariant must be true or false, but got {scale_invariant!r}")
        self.alpha = alpha
        self.lr = check_number(lr, "strategy_params.lr", low=0, low_open=True, hint=" (default 0.025)")
        self.eps = check_number(eps, "strategy_params.eps", low=0, low_open=True, hint=" (default 0.001)")
        self.scale_invariant = scale_invariant
        self._W = np.ones(self.num_objectives)  # Σ W = K
        self._L0: np.ndarray | None = None
        self._last: dict[str, float] = {"skipped": 0.0}

    def before_update(self, stats: StepStats) -> None:
        G = require_gram(stats, "gradnorm", self.num_objectives)  # (K, K)
        k = self.num_objectives
        self._last = {"skipped": 1.0}
        means = stats.objective_means
        if not (np.all(np.isfinite(G)) and np.all(np.isfinite(means))):
            return
        norms = np.sqrt(np.clip(np.diag(G), 0.0, None))  # (K,) ‖g_k‖
        if not norms.max() > 0:
            return
        L = np.maximum(1.0 - means, 0.0) + self.eps  # (K,) > 0
        L0 = L if self._L0 is None else self._L0
        ratio = L / L0
        rel = ratio / ratio.mean()  # r̃_k > 0
        gw = self._W * norms
        target = gw.mean() * rel**self.alpha
        scale = norms.mean() if self.scale_invariant else 1.0
        W = self._W - self.lr * np.sign(gw - target) * norms / scale
        W = np.maximum(W, 1e-3)
        W = k * W / W.sum()
        if not np.all(np.isfinite(W)):
            return
        self._W, self._L0 = W, L0
        self._set_weights(W / k)
        self._last = {"skipped": 0.0, "gradnorm_loss": float(np.abs(gw - target).sum())}
        self._last.update({f"inverse_rate/{n}": float(v) for n, v in zip(self.objective_names, rel)})

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "lr": self.lr, "eps": self.eps, "scale_invariant": self.scale_invariant}

"""FAMO: fast adaptive multitask optimization, from per-objective losses only (no per-objective gradients).

*FAMO: Fast Adaptive Multitask Optimization* (Liu et al., NeurIPS 2023, arXiv 2306.03792), §3 and Algorithm 1,
adapted to rewards. FAMO minimises ``c · Σ_k z_k log L_k`` with ``z = softmax(ξ)`` and ``c = (Σ_k z_k / L_k)⁻¹``
held constant, so the model moves along ``Σ_k (c z_k / L_k) ∇L_k``: a convex combination of the loss gradients.
It learns the logits ``ξ`` from how much each log-loss actually fell across a step,

    δ_k = log L_k(t−1) − log L_k(t)                    (improvement of objective k)
    ξ  ← ξ − β · (∇_ξ z(ξ))ᵀ δ    with weight decay γ   (upweights the objectives that improved least)

Adaptation to rewards (documented): the loss of objective ``k`` is ``L_k = max(1 − mean_batch r_k, 0) + ε`` (for
0/1 rewards, the error rate), so ``∇L_k = −∇J_k`` and the gradient above is the policy gradient of the linear
scalarization with weights

    w_k = (z_k / L_k) / Σ_j (z_j / L_j)                (on the simplex; this is what :meth:`weights` returns)

Timing (documented deviation): FAMO recomputes the losses on the same batch after the update; an RL step does not
re-score its batch, so ``L(t)`` of the next batch stands in for the "after" losses. In :meth:`before_update` of
step ``t`` the logits take one step with ``δ = log L(t−1) − log L(t)`` and then ``w`` is formed with ``L(t)`` to
scalarize batch ``t``. This matches ``torchjd.scalarization.FAMO`` called as ``forward(L(t−1))``,
``update(L(t))``, ``forward(L(t))``.

=======  ==================  ===================================================================
symbol   parameter           default
=======  ==================  ===================================================================
``β``    ``lr``              ``0.025`` (paper)
``γ``    ``weight_decay``    ``1e-3`` (paper, Algorithm 1; the official code uses 1e-5)
—        ``optimizer``       ``"adam"`` (official code, torchjd, LibMTL); ``"sgd"``: ``ξ ← ξ − β(Jᵀδ + γξ)``
``ε``    ``eps``             ``1e-3``
=======  ==================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StateField, StepStats, WeightingStrategy, check_number, register, softmax

__all__ = ["FAMO"]

_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam defaults, as in the official code


@register("famo")
class FAMO(WeightingStrategy):
    """FAMO logits learned from the change in reward-based log-losses; see the module docstring."""

    state_fields = {
        "weights": StateField("_w"), "logits": StateField("_xi"), "adam_m": StateField("_m"),
        "adam_v": StateField("_v"), "adam_step": StateField("_t", "integer"),
        "previous_losses": StateField("_prev", nullable=True),  # L(t−1); None before the first step
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        optimizer: str = "adam",
        eps: float = 1e-3,
    ):
        super().__init__(num_objectives, objective_names)
        lr = check_number(lr, "strategy_params.lr", low=0, hint=" (default 0.025)")
        weight_decay = check_number(weight_decay, "strategy_params.weight_decay", low=0, hint=" (default 0.001)")
        eps = check_number(eps, "strategy_params.eps", low=0, low_open=True, hint=" (default 0.001)")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"strategy_params.optimizer must be 'adam' or 'sgd', but got {optimizer!r}")
        self.lr, self.weight_decay, self.optimizer, self.eps = float(lr), float(weight_decay), optimizer, float(eps)
        k = self.num_objectives
        self._xi, self._m, self._v, self._t = np.zeros(k), np.zeros(k), np.zeros(k), 0
        self._prev: np.ndarray | None = None  # L(t−1)
        self._last: dict[str, float] = {"skipped": 0.0}

    def before_update(self, stats: StepStats) -> None:
        means = stats.objective_means
        self._last = {"skipped": 1.0}
        if not np.all(np.isfinite(means)):
            return
        L = np.maximum(1.0 - means, 0.0) + self.eps  # (K,) > 0
        xi, m, v, t = self._xi, self._m, self._v, self._t
        if self._prev is not None:
            delta = np.log(self._prev) - np.log(L)  # (K,) improvement of each log-loss
            z = softmax(xi)
            grad = z * (delta - z @ delta) + self.weight_decay * xi  # (∇_ξ z)ᵀ δ + γ ξ (softmax Jacobian is symmetric)
            if self.optimizer == "sgd":
                xi = xi - self.lr * grad
            else:  # torch.optim.Adam with L2 weight decay
                t = t + 1
                m = _BETAS[0] * m + (1 - _BETAS[0]) * grad
                v = _BETAS[1] * v + (1 - _BETAS[1]) * grad**2
                m_hat, v_hat = m / (1 - _BETAS[0] ** t), v / (1 - _BETAS[1] ** t)
                xi = xi - self.lr * m_hat / (np.sqrt(v_hat) + _ADAM_EPS)
        z = softmax(xi)
        w = (z / L) / np.sum(z / L)
        if not (np.all(np.isfinite(xi)) and np.all(np.isfinite(w))):
            return
        self._xi, self._m, self._v, self._t, self._prev = xi, m, v, t, L
        self._set_weights(w)
        self._last = {"skipped": 0.0}
        self._last.update({f"task_weight/{n}": float(x) for n, x in zip(self.objective_names, z)})
        self._last.update({f"loss/{n}": float(x) for n, x in zip(self.objective_names, L)})

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "optimizer": self.optimizer, "eps": self.eps}

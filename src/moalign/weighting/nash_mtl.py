"""Nash-MTL: the Nash bargaining solution of the per-objective gradients, from the Gram matrix.

*Multi-Task Learning as a Bargaining Game* (Navon et al., ICML 2022, arXiv 2202.01017), §3, Eq. 2: the bargaining
direction ``Σ_k α_k ∇J_k`` solves

    Gα = 1/α   (elementwise, α > 0)      ⇔   α = argmin_{α>0} ½ αᵀGα − Σ_k log α_k

(``G`` the Gram matrix of the gradients; the right-hand problem is strictly convex, so the solution is unique when it
exists). Each objective's share ``α_k (Gα)_k = 1`` of the joint progress is equal: for orthogonal gradients
``α_k = 1/‖∇J_k‖``. We solve it by damped Newton steps in float64 on ``G/‖G‖_F`` (the official normalisation) and
return ``w = α / Σα`` on the simplex: the weights scalarize this same batch and the trainer's learning rate sets the
step length. The paper's ``max_norm`` clipping and ``update_weights_every`` are therefore not used.

Deviations (numerical guards): ``ridge`` adds ``ridge·mean(diag G)·I`` to ``G`` so the problem stays bounded when a
non-negative combination of gradients cancels exactly (e.g. ``∇J_1 = −∇J_2``; without it α → ∞); an objective with
a zero gradient this batch (``G_kk ≤ 1e-12·max G``; the paper would give it infinite weight) gets weight 0 and the
game is solved over the others. torchjd's ``NashMTL`` needs cvxpy and ECOS, which moalign does not depend on; the
official code's sequential convex program reaches the same stationary point (its stopping test is ``‖Gα − 1/α‖``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StepStats, WeightingStrategy, check_number, live_gram, register, require_gram

__all__ = ["NashMTL", "nash_bargaining_weights"]


def nash_bargaining_weights(G: np.ndarray, tol: float = 1e-12, max_iters: int = 100) -> tuple[np.ndarray, bool]:
    """Unnormalised ``α > 0`` with ``Gα = 1/α`` (damped Newton); returns ``(α, converged)``.

    Solved for ``u = α·sqrt(diag G)``, which satisfies the same condition with the unit-diagonal ``D G D``: gradient
    norms of different magnitudes then do not degrade the conditioning.

    >>> a, ok = nash_bargaining_weights(np.diag([4.0, 1.0]))
    >>> a.round(6).tolist(), ok
    ([0.5, 1.0], True)
    """
    d = 1.0 / np.sqrt(np.maximum(np.diag(np.asarray(G, dtype=np.float64)), 1e-300))
    S = G * np.outer(d, d)  # unit diagonal; u_i (S u)_i = α_i (G α)_i
    u = np.ones(len(S))  # exact for orthogonal gradients

    def f(v):
        return 0.5 * v @ S @ v - np.log(v).sum()

    def residual(v):
        return float(np.max(np.abs(v * (S @ v) - 1.0)))

    for _ in range(max_iters):
        res = residual(u)
        if res < tol:
            return u * d, True
        grad = S @ u - 1.0 / u
        try:
            step = -np.linalg.solve(S + np.diag(1.0 / u**2), grad)
        except np.linalg.LinAlgError:
            return u * d, False
        t, f0, slope = 1.0, f(u), grad @ step
        while np.any(u + t * step <= 0) or (f(u + t * step) > f0 + 1e-4 * t * slope and residual(u + t * step) >= res):
            t *= 0.5
            if t < 1e-20:
                return u * d, False
        u = u + t * step
    return u * d, residual(u) < 1e-9


@register("nash_mtl")
class NashMTL(WeightingStrategy):
    """Nash bargaining weights ``w ∝ α``, ``Gα = 1/α``, on the simplex; see the module docstring.

    Args:
        ridge: relative Tikhonov term added to ``G`` (``ridge·mean(diag G)``). Default ``1e-8``; 0 disables it.
    """

    needs = frozenset({"gram"})

    def __init__(self, num_objectives: int, objective_names: Sequence[str] | None = None, ridge: float = 1e-8):
        super().__init__(num_objectives, objective_names)
        self.ridge = check_number(ridge, "strategy_params.ridge", low=0, high=1, high_open=True, hint=" (default 1e-8)")
        self._last: dict[str, float] = {"skipped": 0.0}

    def before_update(self, stats: StepStats) -> None:
        G = require_gram(stats, "nash_mtl", self.num_objectives)  # (K, K)
        k = self.num_objectives
        self._last = {"skipped": 1.0}
        checked = live_gram(G)
        if checked is None:
            return
        G, d, live = checked  # live: objectives with a non-zero gradient this batch
        Gl = G[np.ix_(live, live)]
        Gl = Gl + self.ridge * d[live].mean() * np.eye(int(live.sum()))
        Gl = Gl / np.linalg.norm(Gl)  # official normalisation by the Frobenius norm; w is scale invariant
        alpha, converged = nash_bargaining_weights(Gl)
        if not (converged and np.all(np.isfinite(alpha)) and np.all(alpha > 0)):
            return
        w = np.zeros(k)
        w[live] = alpha / alpha.sum()
        self._set_weights(w)
        self._last = {"skipped": 0.0, "residual": float(np.max(np.abs(alpha * (Gl @ alpha) - 1.0))),
                      "zero_gradient_objectives": float(k - live.sum())}

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        return {"ridge": self.ridge}

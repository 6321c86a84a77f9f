"""MGDA: the min-norm point of the convex hull of the per-objective policy gradients.

*Multiple-gradient descent algorithm (MGDA) for multiobjective optimization* (Désidéri, 2012) in the form of
*Multi-Task Learning as Multi-Objective Optimization* (Sener & Koltun, NeurIPS 2018, arXiv 1810.04650):

    α* = argmin_{α ∈ Δ} ‖Σ_k α_k ∇J_k‖² = argmin_{α ∈ Δ} αᵀ G α            (G: Gram matrix of the gradients)

``Σ_k α*_k ∇J_k`` is a common ascent direction of every objective (or 0 at a Pareto-stationary point). The weights
scalarize this same batch. KKT conditions of the solution: ``(Gα)_i ≥ αᵀGα`` for all ``i``, with equality where
``α_i > 0``.

Solvers: ``"exact"`` (default) enumerates the active sets and solves each KKT system -- exact, ``2^K`` small solves
(K ≤ 12); ``"frank_wolfe"`` is Algorithm 2 of Sener & Koltun as implemented by torchjd's ``MGDAWeighting``
(``epsilon``, ``max_iters``), approximate.

Options (deviations from plain MGDA, both documented on the docs page):
``normalize_gradients=True`` solves on unit-norm gradients (the reference code's ``norm_grad_norm``; MGDA-UB's
"l2" normalisation) and returns the equivalent weights on the raw gradients, ``w_k ∝ α_k / ‖∇J_k‖``.
An objective with a zero gradient this batch (``G_kk ≤ 1e-12·max G``: every advantage of it is 0) would make the
min-norm point 0 with all weight on it; it gets weight 0 and the problem is solved over the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StepStats, WeightingStrategy, check_number, live_gram, register, require_gram

__all__ = ["MGDA", "min_norm_weights"]


def min_norm_weights(G: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Exact ``argmin_{α ∈ Δ} αᵀGα`` for a PSD ``G`` by active-set enumeration (smallest support first).

    >>> min_norm_weights(np.diag([1.0, 4.0])).round(6).tolist()
    [0.8, 0.2]
    """
    G = np.asarray(G, dtype=np.float64)
    k = len(G)
    G = G / max(float(np.trace(G)) / k, 1e-300)  # scale-free tolerances; the argmin is scale invariant
    best, best_val = np.full(k, 1.0 / k), np.inf
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            s = list(support)
            kkt = np.zeros((size + 1, size + 1))  # [G_SS 1; 1ᵀ 0] [α_S; -λ] = [0; 1]
            kkt[:size, :size], kkt[:size, size], kkt[size, :size] = G[np.ix_(s, s)], 1.0, 1.0
            rhs = np.zeros(size + 1)
            rhs[size] = 1.0
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
            alpha = np.zeros(k)
            alpha[s] = sol[:size]
            if alpha.min() < -tol or abs(alpha.sum() - 1) > 1e-8:
                continue
            alpha = np.maximum(alpha, 0.0) / np.maximum(alpha, 0.0).sum()
            val = float(alpha @ G @ alpha)
            if np.all(G @ alpha >= val - 1e-9) and val < best_val - 1e-12:
                best, best_val = alpha, val
        if np.isfinite(best_val):
            return best
    return best


@register("mgda")
class MGDA(WeightingStrategy):
    """Min-norm weights of the per-objective gradients from the Gram matrix; see the module docstring.

    Args:
        solver: ``"exact"`` (default) or ``"frank_wolfe"`` (torchjd's ``MGDAWeighting``).
        normalize_gradients: solve on unit-norm gradients. Default false.
        epsilon, max_iters: Frank-Wolfe stopping rule (torchjd's defaults 1e-3 and 100); unused by ``"exact"``.
    """

    needs = frozenset({"gram"})

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        solver: str = "exact",
        normalize_gradients: bool = False,
        epsilon: float = 1e-3,
        max_iters: int = 100,
    ):
        super().__init__(num_objectives, objective_names)
        if solver not in ("exact", "frank_wolfe"):
            raise ValueError(f"strategy_params.solver must be 'exact' or 'frank_wolfe', but got {solver!r}")
        if solver == "exact" and self.num_objectives > 12:
            raise ValueError(f"solver 'exact' enumerates 2^K active sets; with {self.num_objectives} objectives "
                             "use strategy_params.solver: frank_wolfe")
        if not isinstance(normalize_gradients, bool):
            raise ValueError(f"strategy_params.normalize_gradients must be true or false, got {normalize_gradients!r}")
        self.solver, self.normalize_gradients = solver, normalize_gradients
        self.epsilon = check_number(epsilon, "strategy_params.epsilon", low=0, low_open=True, hint=" (default 0.001)")
        self.max_iters = check_number(max_iters, "strategy_params.max_iters", low=1, integer=True, hint=" (default 100)")
        self._last: dict[str, float] = {"skipped": 0.0}

    def _solve(self, G: np.ndarray) -> np.ndarray:
        if self.solver == "exact":
            return min_norm_weights(G)
        import torch
        from torchjd.aggregation import MGDAWeighting

        G = G / (np.trace(G) / len(G))
        solver = MGDAWeighting(epsilon=self.epsilon, max_iters=self.max_iters)
        return solver(torch.as_tensor(G, dtype=torch.float64)).numpy().astype(np.float64)

    def before_update(self, stats: StepStats) -> None:
        G = require_gram(stats, "mgda", self.num_objectives)  # (K, K)
        k = self.num_objectives
        self._last = {"skipped": 1.0}
        checked = live_gram(G)
        if checked is None:
            return
        G, d, live = checked  # live: objectives with a non-zero gradient this batch
        Gl = G[np.ix_(live, live)]
        norms = np.sqrt(d[live])
        if self.normalize_gradients:
            Gl = Gl / np.outer(norms, norms)
        alpha = self._solve(Gl)
        w = np.zeros(k)
        w[live] = alpha / norms if self.normalize_gradients else alpha
        if not (np.all(np.isfinite(w)) and w.sum() > 0):
            return
        w = w / w.sum()
        self._set_weights(w)
        self._last = {"skipped": 0.0, "norm_sq": float(w @ G @ w), "zero_gradient_objectives": float(k - live.sum())}

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        return {"solver": self.solver, "normalize_gradients": self.normalize_gradients,
                "epsilon": self.epsilon, "max_iters": self.max_iters}

"""PAMA: Pareto multi-objective alignment via the closed-form min-norm combination of advantages.

*Pareto Multi-Objective Alignment for Language Models* (He & Maghsudi, ECML PKDD 2025, arXiv 2508.07768). PAMA
replaces MGDA's min-norm problem over per-objective gradients by the same problem over per-objective (Noon PPO)
advantages, which has a closed form (Theorem 1): for scalars ``A^(1..K)``,

    min_{c ∈ Δ} (Σ_i c_i A^(i))²   has optimal value   s* = Proj_[min_i A^(i), max_i A^(i)](0)

so ``c*`` puts all mass on ``argmin A`` when every ``A^(i) > 0``, on ``argmax A`` when every ``A^(i) < 0``, and
mixes one negative and one positive objective to reach ``s* = 0`` otherwise. Noon PPO ("no negative") clips the
advantages first, ``A = max(A', 0)`` (``noon=True``), so ``c*`` is the *bottleneck* objective: the one on which the
completion improves least.

Interpretation (documented deviation; the paper does not say how to batch the per-token solution into weights for a
linearly scalarized reward): Theorem 1 is solved per completion ``n`` on the trainer's per-objective advantages
``A_n,:`` (ties split evenly), and the weights of the batch are the mean of the per-completion minimisers,

    w = mean_{n informative} c*_n

so ``w_k`` is the share of completions for which objective ``k`` is the bottleneck. Objectives whose advantage is 0
for every completion of a prompt carry no signal there and are left out of that prompt's rows; rows with no
informative objective (or, with Noon clipping, all-zero advantages, where every ``c`` is optimal) are skipped.
The weights scalarize this same batch (set in :meth:`before_update`). The final advantages are not clipped at 0
(Noon PPO would): the trainer's estimator is kept. The reference code instead applies one batch-level scalar ``s*``
as the advantage of every token; group-normalised, a constant advantage vanishes, so that is not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StepStats, WeightingStrategy, register

__all__ = ["PAMA", "min_norm_scalar_combination"]


def min_norm_scalar_combination(a: np.ndarray) -> tuple[np.ndarray, float]:
    """Theorem 1 of arXiv 2508.07768: a minimiser ``c ∈ Δ`` of ``(c·a)²`` and ``s* = c·a`` (ties split evenly).

    >>> c, s = min_norm_scalar_combination(np.array([0.5, 0.2, 0.2]))
    >>> c.tolist(), round(s, 3)
    ([0.0, 0.5, 0.5], 0.2)
    >>> c, s = min_norm_scalar_combination(np.array([-1.0, 3.0]))
    >>> c.tolist(), s
    ([0.75, 0.25], 0.0)
    """
    a = np.asarray(a, dtype=np.float64)
    lo, hi = a.min(), a.max()
    c = np.zeros_like(a)
    if lo >= 0 or hi <= 0:  # one sign (zeros included): all mass on the entries closest to 0
        target = lo if lo >= 0 else hi
        ties = a == target
        c[ties] = 1.0 / ties.sum()
        return c, float(target)
    low, high = a == lo, a == hi  # mixed signs: c_lo·lo + c_hi·hi = 0
    c[low] = hi / (hi - lo) / low.sum()
    c[high] = -lo / (hi - lo) / high.sum()
    return c, 0.0


@register("pama")
class PAMA(WeightingStrategy):
    """Mean of PAMA's per-completion closed-form minimisers (arXiv 2508.07768, Theorem 1); see the module docstring.

    Args:
        noon: clip advantages at 0 before solving (Noon PPO, as in the paper). Default true.
    """

    def __init__(self, num_objectives: int, objective_names: Sequence[str] | None = None, noon: bool = True):
        super().__init__(num_objectives, objective_names)
        if not isinstance(noon, bool):
            raise ValueError(f"strategy_params.noon must be true or false, but got {noon!r}")
        self.noon = noon
        self._last: dict[str, float] = {"skipped": 0.0}

    def before_update(self, stats: StepStats) -> None:
        adv = np.asarray(stats.advantages, dtype=np.float64)  # (N, K), 0 where unscored
        groups = np.asarray(stats.group_ids)
        self._last = {"skipped": 1.0}
        if adv.size == 0 or not np.all(np.isfinite(adv)):
            return
        signal = np.zeros(adv.shape, dtype=bool)  # objective k informative for row n: some A != 0 in n's prompt
        for g in np.unique(groups):
            rows = groups == g
            signal[rows] = np.any(adv[rows] != 0, axis=0)
        a = np.maximum(adv, 0.0) if self.noon else adv
        cs, s_stars = [], []
        for n in range(len(a)):
            keep = signal[n]
            if not keep.any() or (self.noon and not np.any(a[n, keep] > 0)):
                continue  # every c is optimal: no information
            c = np.zeros(self.num_objectives)
            c[keep], s = min_norm_scalar_combination(a[n, keep])
            cs.append(c)
            s_stars.append(s)
        if not cs:
            return
        self._set_weights(np.mean(cs, axis=0))
        self._last = {"skipped": 0.0, "informative_fraction": len(cs) / len(a), "s_star_mean": float(np.mean(s_stars)),
                      "improving_fraction": float(np.mean(np.asarray(s_stars) > 0))}

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        return {"noon": self.noon}

"""The baseline a user can afford: a random preset sweep, chosen on validation and scored on test.

A sweep trains ``N`` fixed-weight runs whose weight vectors are drawn from Dirichlet(1) (uniform on the simplex; or
Dirichlet(alpha), alpha > 1, concentrated around uniform weights) and keeps the one with the best **validation** front
hypervolume; its **test** hypervolume is the sweep's result. The test split never chooses.

With a pool of ``M`` trained presets per seed, the expected result of a sweep of ``N <= M`` presets drawn from the pool
without replacement is exact: order the pool by validation HV (best first; ties by index); the preset at rank ``r``
(0-based) is the one kept in a random ``N``-subset exactly when it is in the subset and no better-ranked one is, with
probability ``C(M - 1 - r, N - 1) / C(M, N)``.

A dynamic method's **sweep-equivalent N** is the smallest ``N`` whose expected best-of-``N`` test HV, averaged over
seeds, reaches the method's mean test HV; none when even ``N = M`` does not (reported as "> M"). Its uncertainty is
bootstrapped over seeds and over the preset draws (:func:`sweep_equivalent_n`).

>>> val, test = [0.3, 0.1, 0.2], [0.5, 0.9, 0.6]
>>> [round(expected_best_of_n(val, test, n), 4) for n in (1, 2, 3)]  # N=2: {0,1}->0.5, {0,2}->0.5, {1,2}->0.6
[0.6667, 0.5333, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["best_of_n_curve", "dirichlet_presets", "expected_best_of_n", "smallest_n_reaching",
           "sweep_equivalent_n"]


def dirichlet_presets(num_objectives: int, n: int, seed: int, alpha: float = 1.0) -> np.ndarray:
    """``(n, K)`` weight vectors drawn from Dirichlet(alpha, ..., alpha), from their own seeded stream: the same draws
    for every method they are compared with. Rounded to 4 decimals (each row still sums to 1), so they read well in
    logs. ``alpha`` 1 is uniform on the simplex; a larger ``alpha`` keeps the presets nearer uniform weights (a sweep
    "around the centre").

    >>> dirichlet_presets(3, 2, seed=0).sum(axis=1).round(6).tolist()
    [1.0, 1.0]
    """
    if num_objectives < 2 or n < 1:
        raise ValueError(f"need num_objectives >= 2 and n >= 1, but got {num_objectives} and {n}")
    if not alpha > 0:
        raise ValueError(f"the Dirichlet concentration alpha must be > 0 (1: uniform on the simplex), but got {alpha}")
    concentration = np.full(num_objectives, float(alpha))
    w = np.maximum(np.random.default_rng(seed).dirichlet(concentration, size=n).round(4), 1e-4)
    # a weight rounded to 0 would switch an objective off, which a Dirichlet draw never does; the rounding residual
    # goes to each row's largest weight, so every row sums to 1 in 4 decimals
    rows = np.arange(n)
    w[rows, w.argmax(axis=1)] += 1.0 - w.sum(axis=1)
    return w.round(4)


def _ranks_by_validation(val: np.ndarray) -> np.ndarray:
    """Indices of the pool, best validation HV first; ties broken by index (stable)."""
    return np.lexsort((np.arange(len(val)), -val))


def expected_best_of_n(val: Sequence[float], test: Sequence[float], n: int) -> float:
    """Expected test HV of the val-best preset of a random ``n``-subset (without replacement) of the pool."""
    v, t = np.asarray(val, dtype=np.float64), np.asarray(test, dtype=np.float64)
    m = len(v)
    if len(t) != m or m == 0:
        raise ValueError(f"val and test must have the same positive length, but got {len(v)} and {len(t)}")
    if not 1 <= n <= m:
        raise ValueError(f"n must be in 1..{m} (the pool size), but got {n}")
    order = _ranks_by_validation(v)
    total = math.comb(m, n)
    return float(sum(math.comb(m - 1 - r, n - 1) / total * t[i] for r, i in enumerate(order)))


def best_of_n_curve(val: np.ndarray, test: np.ndarray) -> np.ndarray:
    """``(M,)`` mean over seeds of the expected best-of-N test HV, for N = 1..M; ``val``/``test`` are ``(S, M)``."""
    val, test = np.atleast_2d(val), np.atleast_2d(test)
    m = val.shape[1]
    return np.array([np.mean([expected_best_of_n(v, t, n) for v, t in zip(val, test)]) for n in range(1, m + 1)])


def smallest_n_reaching(curve: np.ndarray, target: float) -> int | None:
    """Smallest N (1-based) with ``curve[N-1] >= target``; None when no N does.

    >>> smallest_n_reaching(np.array([0.4, 0.5, 0.55]), 0.5), smallest_n_reaching(np.array([0.4, 0.5]), 0.6)
    (2, None)
    """
    hits = np.flatnonzero(np.asarray(curve) >= target)
    return int(hits[0]) + 1 if hits.size else None


def sweep_equivalent_n(val: Any, test: Any, dynamic: Any, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Sweep-equivalent N of a dynamic method, with a bootstrap over seeds and preset draws.

    Args:
        val, test: ``(S, M)`` validation and test front HV of the M sweep presets, one row per seed (the same M
            preset vectors on every seed).
        dynamic: ``(S,)`` the dynamic method's test front HV, same seeds in the same order.
        n_boot: bootstrap replicates; each resamples the seeds and, independently, the M presets (with
            replacement, the same preset indices on every seed).

    Returns:
        ``{"n": N or None, "curve": best-of-N curve, "target": mean dynamic HV, "ci": [lo, hi], "beyond_share":
        share of replicates where no N <= M reaches the target}``. ``ci`` are the 2.5 and 97.5 percentiles of the
        replicates' N, a replicate with no N counting as M + 1 (shown as "> M").
    """
    v, t, d = np.atleast_2d(np.asarray(val, float)), np.atleast_2d(np.asarray(test, float)), np.asarray(dynamic, float)
    if v.shape != t.shape or v.shape[0] != d.shape[0]:
        raise ValueError(f"val {v.shape} and test {t.shape} must be (seeds, presets), dynamic ({d.shape}) one per seed")
    s, m = v.shape
    curve = best_of_n_curve(v, t)
    point = smallest_n_reaching(curve, float(d.mean()))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        rows, cols = rng.integers(0, s, s), rng.integers(0, m, m)
        found = smallest_n_reaching(best_of_n_curve(v[rows][:, cols], t[rows][:, cols]), float(d[rows].mean()))
        reps[b] = m + 1 if found is None else found
    return {"n": point, "curve": curve.tolist(), "target": float(d.mean()),
            "ci": [float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))],
            "beyond_share": float(np.mean(reps > m)), "pool": m, "seeds": s}

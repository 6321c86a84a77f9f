"""Within-prompt covariance between per-objective rewards and a per-completion signal.

The cross-objective interference diagnostic of *Uncovering Cross-Objective Interference in Multi-Objective
Alignment*: for each prompt, the covariance between objective k's reward and the scalarized advantage (or CTWA's
clipped advantage weight) over that prompt's completions, averaged over prompts with at least two scored
completions. A negative value means completions that score better on objective k get pushed down: k is being
traded away.
"""

from __future__ import annotations

import numpy as np

__all__ = ["within_group_covariance"]


def within_group_covariance(rewards: np.ndarray, signal: np.ndarray, group_ids: np.ndarray) -> np.ndarray:
    """``(K,)`` mean over groups of the population covariance ``cov_g(r_k, s)``; NaN rewards are skipped.

    Shapes: ``rewards (N, K)``, ``signal (N,)``, ``group_ids (N,)``. An objective with no group of ≥ 2 scored
    completions gets NaN.

    >>> r = np.array([[1.0], [0.0], [1.0], [1.0]])
    >>> within_group_covariance(r, np.array([1.0, -1.0, 0.5, 0.5]), np.array([0, 0, 1, 1])).tolist()
    [0.25]
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    signal = np.asarray(signal, dtype=np.float64)
    group_ids = np.asarray(group_ids)
    k = rewards.shape[1]
    sums, counts = np.zeros(k), np.zeros(k)
    for g in np.unique(group_ids):
        rows = group_ids == g
        r, s = rewards[rows], signal[rows]
        for j in range(k):
            ok = ~np.isnan(r[:, j]) & np.isfinite(s)
            if ok.sum() < 2:
                continue
            rj, sj = r[ok, j], s[ok]
            sums[j] += np.mean((rj - rj.mean()) * (sj - sj.mean()))
            counts[j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

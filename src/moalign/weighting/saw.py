"""SAW: stage-aware dynamic weighting by each objective's coefficient of variation over the batch.

*SAW: Stage-Aware Dynamic Weighting for Multi-Objective Reinforcement Learning in Large Language Models* (He, Bi,
Liu et al., 2026, arXiv 2606.07705). Objectives are learned at different speeds; once one is learned its rewards
are nearly constant and their residual noise crowds out the objectives still being learned. SAW weights each
objective by how informative its rewards still are on this batch, measured by the coefficient of variation (CV, a
scale-free spread), and the weights scalarize this same batch:

    CV_k = std_batch(r_k + o_k) / (|mean_batch(r_k + o_k)| + ε)       (over the whole batch; std with N − 1)
    w_k  = CV_k / (Σ_j CV_j + ε)

``o_k`` shifts each reward so its lowest value is 0 (the CV of a reward that can be negative has no meaning). For a
0/1 reward with batch success rate p, ``CV ≈ sqrt((1 − p)/p)``: it falls to 0 as the objective saturates (p → 1),
so a learned objective hands its weight to the ones still being learned. (At p = 0 the CV is 0 as well: a reward
no completion earns varies within no prompt and carries no advantage either.)

The paper has a GRPO and a GDPO variant; both are this strategy under the trainer's
``multi_objective_aggregation``:

* ``sum_then_normalize`` (SAW-GRPO): ``A = group_norm(Σ_k w_k r_k)``;
* ``normalize_then_sum`` (SAW-GDPO): ``A = batch_whiten(Σ_k w_k group_norm(r_k))``.

=============  ===================  ======================================================================
symbol         parameter            reference code
=============  ===================  ======================================================================
``o_k``        ``reward_offsets``   ``3.0`` for its [−3, 3] correctness reward, ``0`` for its [0, 1] format
                                    reward; default 0 (moalign's objectives are 0/1)
``ε``          --                   ``1e-8``
=============  ===================  ======================================================================

Smoothing (a moalign option, not in the paper). With 16-32 completions per step the batch CV is noisy, and the weights
follow it from step to step. ``ema_rate=τ`` keeps an exponential moving average of each objective's batch mean and
batch variance, ``m_k ← (1 − τ)·m_k + τ·mean_batch``, ``v_k ← (1 − τ)·v_k + τ·var_batch`` (each started at its first
observation, as CTWA's EMA), and computes ``CV_k = sqrt(v_k) / (|m_k| + ε)`` from them. ``τ = 1`` is the published
update; the default ``None`` is the published update with the published state (no EMA fields in checkpoints).

Deviations (docs/strategies/saw.md lists them all): the weights are on the simplex, where the reference multiplies
them by K (the factor cancels under both of its variants' std normalisations); the group normalisation and the
GDPO whitening are moalign's (TRL's ``1e-4``, sequence-level whitening) rather than verl's; unscored rewards are left
out of an objective's statistics; when no objective varies over the batch the weights are kept (``skipped = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StateField, StepStats, WeightingStrategy, check_number, check_vector, register

__all__ = ["SAW", "coefficient_of_variation"]

EPS = 1e-8  # the reference code's epsilon, in the CV's denominator and in the sum of CVs


def coefficient_of_variation(rewards: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """``(K,)`` ``std / (|mean| + 1e-8)`` of each column of ``rewards + offsets`` over the scored (non-NaN) rows,
    with the ``N − 1`` std; 0 for a column with fewer than two scored rows.

    >>> coefficient_of_variation(np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])).round(4).tolist()
    [0.6667, 2.0]
    """
    r = np.asarray(rewards, dtype=np.float64)
    if offsets is not None:
        r = r + np.asarray(offsets, dtype=np.float64)
    cv = np.zeros(r.shape[1])
    for k in range(r.shape[1]):
        col = r[~np.isnan(r[:, k]), k]
        if col.size >= 2:
            cv[k] = np.std(col, ddof=1) / (abs(col.mean()) + EPS)
    return cv


@register("saw")
class SAW(WeightingStrategy):
    """Weights proportional to each objective's batch coefficient of variation (arXiv 2606.07705); see the module
    docstring.

    Args:
        reward_offsets: K numbers added to the rewards before the CV, so each objective's lowest reward is 0.
            Default 0 for every objective (0/1 rewards).
        ema_rate: smoothing of the batch statistics, in (0, 1] (module docstring); None (default): as published.

    >>> saw = SAW(2, ["format", "accuracy"])
    >>> r = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # format learned (3/4), accuracy not (1/4)
    >>> saw.before_update(StepStats(0, r, np.zeros(4), np.zeros((4, 2))))
    >>> saw.weights().round(4).tolist()  # CV = [2/3, 2]
    [0.25, 0.75]
    """

    state_fields = {
        "weights": StateField("_w"),
        "cv": StateField("_cv"),  # last computed coefficients of variation (for metrics)
        "skipped": StateField("_skipped", "flag"),
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        reward_offsets: Sequence[float] | None = None,
        ema_rate: float | None = None,
    ):
        super().__init__(num_objectives, objective_names)
        self.reward_offsets = (np.zeros(self.num_objectives) if reward_offsets is None else
                               check_vector(reward_offsets, self.num_objectives, "strategy_params.reward_offsets",
                                            names=self.objective_names))
        self._offsets_arg = None if reward_offsets is None else self.reward_offsets.tolist()
        self._cv = np.zeros(self.num_objectives)
        self._skipped = False
        self.ema_rate = None if ema_rate is None else check_number(
            ema_rate, "strategy_params.ema_rate", low=0, low_open=True, high=1, hint=" (1: as published; None: off)")
        if self.ema_rate is not None:  # the published strategy keeps its published checkpoint format
            self.state_fields = {**SAW.state_fields, "ema_mean": StateField("_ema_mean"),
                                 "ema_var": StateField("_ema_var"), "ema_started": StateField("_ema_started", "flags")}
            self._ema_mean = np.zeros(self.num_objectives)
            self._ema_var = np.zeros(self.num_objectives)
            self._ema_started = np.zeros(self.num_objectives, dtype=bool)

    def before_update(self, stats: StepStats) -> None:
        with np.errstate(all="ignore"):
            if self.ema_rate is None:
                cv = coefficient_of_variation(stats.rewards, self.reward_offsets)  # (K,)
            else:
                cv = self._smoothed_cv(np.asarray(stats.rewards, dtype=np.float64) + self.reward_offsets)
            total = float(cv.sum())
            w = cv / (total + EPS)
        # Nothing varies over the batch (every advantage is 0 anyway), or non-finite rewards: keep the weights.
        self._skipped = not (np.all(np.isfinite(cv)) and np.isfinite(total) and total > 0 and np.all(np.isfinite(w)))
        if self._skipped:
            return
        self._cv = cv
        self._set_weights(w / w.sum())  # exactly on the simplex (the reference's ε leaves a 1e-8 shortfall)

    def _smoothed_cv(self, r: np.ndarray) -> np.ndarray:
        """``(K,)`` CV from the EMAs of each column's mean and variance, updated with this batch's scored rows; an
        objective with fewer than two scored rows keeps its EMA (CV 0 until it has one)."""
        for k in range(r.shape[1]):
            col = r[~np.isnan(r[:, k]), k]
            if col.size < 2 or not np.all(np.isfinite(col)):
                continue
            mean, var = col.mean(), col.var(ddof=1)
            if self._ema_started[k]:
                tau = self.ema_rate
                mean, var = (1 - tau) * self._ema_mean[k] + tau * mean, (1 - tau) * self._ema_var[k] + tau * var
            self._ema_mean[k], self._ema_var[k], self._ema_started[k] = mean, var, True
        return np.where(self._ema_started, np.sqrt(self._ema_var) / (np.abs(self._ema_mean) + EPS), 0.0)

    def metrics(self) -> dict[str, float]:
        out = {"skipped": float(self._skipped)}
        out.update({f"cv/{n}": float(v) for n, v in zip(self.objective_names, self._cv, strict=True)})
        return out

    def hyperparameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reward_offsets": self._offsets_arg}
        if self.ema_rate is not None:
            out["ema_rate"] = self.ema_rate
        return out

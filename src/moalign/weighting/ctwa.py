"""CTWA: covariance-targeted weight adaptation.

*Uncovering Cross-Objective Interference in Multi-Objective Alignment* (Lu & Jiang, 2026, arXiv 2602.06869).
The local covariance law of the paper says objective ``k`` improves at first order when its reward covaries
positively, within a prompt, with the training signal. CTWA keeps that covariance above a target by raising the
log-weight of every objective whose (smoothed) covariance falls short. After each policy update:

    c_i      = mean_t Â_i ρ_it 1[clip inactive at t]               (clipped advantage weight, from the trainer)
    Cov_k    = mean_{prompts p with ≥ 2 scored} cov_p(r_k, c)     (population covariance within the prompt)
    m_k     ← (1 − τ)·m_k + τ·Cov_k                                (EMA; m_k = Cov_k at k's first observation)
    d_k      = relu(target_k − m_k), and d_k = 0 if mean_batch(r_k) ≥ ceiling_k
    log w   += η·d ;  w = softmax(log w)                           (used from the next step)

=============  ===================  ===================================================
symbol         parameter            reference value
=============  ===================  ===================================================
``target``     ``cov_targets``      ``[0.15, 0.08, 0.08]`` (accuracy, conciseness, clarity)
``η``          ``step_size``        ``0.05``
``τ``          ``ema_rate``         ``0.1``
``w_0``        ``initial_weights``  ``[0.333, 0.333, 0.334]``
``ceiling``    ``ceilings``         ``[1.0, 0.95, 0.95]``
``|c| cap``    ``outlier_factor``   ``100`` (drop ``|c_i| > 100·median|c|``)
=============  ===================  ===================================================

Reference values are for the three objectives of the papers; with K ≠ 3 objectives ``cov_targets`` must be given
(ceilings then default to none, initial weights to uniform). The EMA of each objective starts at that objective's
first observed covariance, as in the reference code (an EMA started at 0 would give every objective a deficit of
about its target for the first ~1/τ steps and push the objective with the largest target, whatever its covariance).

Normalised weights (a deviation). The reference code scalarises with the unnormalised ``λ = exp(log λ)``, whose sum
starts at 1 and only grows; here ``w = softmax(log w) = λ/Σλ`` (the log-weight increments are the same). Under an
estimator that divides by a standard deviation (``grpo`` with ``scale_rewards`` ``group``/``batch``, ``reinforce``
with ``batch``, the papers' REINFORCE++) or under ``normalize_then_sum``, the advantages depend only on the ratios of
the weights, so ``w`` equals the reference's ``λ/Σλ`` step for step. Under ``rloo`` or ``scale_rewards="none"`` the
advantages are linear in the weights: the reference's advantages, clipped advantage weights and covariances are
``Σλ`` times the ones here, so its deficit ``relu(target − Σλ·Cov)`` closes as ``Σλ`` grows (in effect its targets
shrink to ``target/Σλ``) and its policy steps grow by ``Σλ`` (which Adam largely absorbs when ``Σλ`` drifts slowly).
Here the covariances are measured at total weight 1 against fixed targets, so the weight trajectories differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..rl.covariance import within_group_covariance
from .base import StateField, StepStats, WeightingStrategy, check_number, check_vector, check_weight_vector, register, softmax

__all__ = ["CTWA"]

_TARGETS, _INITIAL, _CEILINGS = [0.15, 0.08, 0.08], [0.333, 0.333, 0.334], [1.0, 0.95, 0.95]


@register("ctwa")
class CTWA(WeightingStrategy):
    """Covariance-targeted weight adaptation (arXiv 2602.06869); see the module docstring for the update."""

    needs = frozenset({"post_update"})
    state_fields = {
        "weights": StateField("_w"),
        "log_weights": StateField("_log_w"),
        "ema_cov": StateField("_ema"),
        "ema_started": StateField("_ema_started", "flags"),  # objectives whose EMA has its first observation
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        cov_targets: Sequence[float] | None = None,
        step_size: float = 0.05,
        ema_rate: float = 0.1,
        initial_weights: Sequence[float] | None = None,
        ceilings: Sequence[float] | None = None,
        outlier_factor: float | None = 100.0,
    ):
        super().__init__(num_objectives, objective_names)
        k, names = self.num_objectives, self.objective_names
        if cov_targets is None and k != 3:
            raise ValueError(
                f"strategy_params.cov_targets is required with {k} objectives ({', '.join(names)}): the default "
                f"{_TARGETS} is for [accuracy, conciseness, clarity]; give one target covariance per objective"
            )
        self.cov_targets = check_vector(_TARGETS if cov_targets is None else cov_targets, k,
                                        "strategy_params.cov_targets", names=names)
        self.step_size = check_number(step_size, "strategy_params.step_size", low=0, low_open=True, hint=" (paper: 0.05)")
        self.ema_rate = check_number(ema_rate, "strategy_params.ema_rate", low=0, low_open=True, high=1,
                                     hint=" (paper: 0.1)")
        self.outlier_factor = None if outlier_factor is None else check_number(
            outlier_factor, "strategy_params.outlier_factor", low=0, low_open=True, hint=" (reference: 100)")
        if ceilings is None:  # K != 3: no ceiling
            self.ceilings = np.asarray(_CEILINGS if k == 3 else [math.inf] * k, dtype=np.float64)
        else:
            self.ceilings = check_vector(ceilings, k, "strategy_params.ceilings", names=names)
        if initial_weights is None:
            initial_weights = _INITIAL if k == 3 else [1.0 / k] * k
        w0 = check_weight_vector(initial_weights, k, "strategy_params.initial_weights")
        if np.any(w0 <= 0):
            raise ValueError(f"strategy_params.initial_weights must be positive (log-weights), but got {w0.tolist()}")
        self._w0 = [float(x) for x in initial_weights]
        self._log_w = np.log(w0 / w0.sum())
        self._w = w0 / w0.sum()  # not softmax(log w0): exp∘log can come back an ulp off, differently on another CPU
        self._ema = np.zeros(k)
        self._ema_started = np.zeros(k, dtype=bool)  # an objective's EMA starts at its first observed covariance
        self._last: dict[str, float] = {"skipped": 0.0}

    def after_update(self, stats: StepStats) -> None:
        c = stats.clipped_advantage_weights
        if c is None:
            raise ValueError("strategy 'ctwa' needs stats.clipped_advantage_weights ('post_update' in needs)")
        c = np.asarray(c, dtype=np.float64).reshape(-1)  # (N,)
        rewards = np.asarray(stats.rewards, dtype=np.float64)  # (N, K)
        keep = np.isfinite(c)
        if self.outlier_factor is not None and keep.any():  # reference: drop |c| > 100·median|c|
            med = float(np.median(np.abs(c[keep])))
            if med > 0:
                keep &= np.abs(c) <= self.outlier_factor * med
        cov = within_group_covariance(np.where(np.isfinite(rewards), rewards, np.nan)[keep], c[keep],
                                      np.asarray(stats.group_ids)[keep])  # (K,), NaN: no prompt with ≥ 2 scored
        seen = np.isfinite(cov)
        self._last = {"skipped": 1.0}
        if not seen.any():
            return
        cov0 = np.nan_to_num(cov)
        updated = np.where(self._ema_started, (1 - self.ema_rate) * self._ema + self.ema_rate * cov0, cov0)
        ema = np.where(seen, updated, self._ema)
        deficit = np.maximum(self.cov_targets - ema, 0.0)
        with np.errstate(invalid="ignore"):
            at_ceiling = stats.objective_means >= self.ceilings  # NaN mean -> False
        deficit[at_ceiling] = 0.0
        log_w = self._log_w + self.step_size * deficit
        w = softmax(log_w)
        if not (np.all(np.isfinite(log_w)) and np.all(np.isfinite(w))):
            return
        self._ema, self._log_w = ema, log_w - log_w.max()  # the shift keeps the log-weights bounded
        self._ema_started |= seen
        self._set_weights(w)
        self._last = {"skipped": 0.0}
        for name, cv, m, d in zip(self.objective_names, cov, ema, deficit, strict=True):
            self._last.update({f"ema_cov/{name}": float(m), f"deficit/{name}": float(d)})
            if math.isfinite(cv):
                self._last[f"cov/{name}"] = float(cv)

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        ceilings = None if np.all(np.isinf(self.ceilings)) else self.ceilings.tolist()
        return {"cov_targets": self.cov_targets.tolist(), "initial_weights": self._w0, "ceilings": ceilings,
                "step_size": self.step_size, "ema_rate": self.ema_rate, "outlier_factor": self.outlier_factor}

"""(Smooth) Tchebycheff scalarization per sequence, with an optional online-mirror-descent preference.

*Smooth Tchebycheff Scalarization for Multi-Objective Optimization* (Lin et al., ICML 2024, arXiv 2402.19078),
written for rewards (maximised): with ``w`` the preference, ``z*`` the ideal point and ``μ`` the smoothing, each
completion ``n`` gets the scalar reward

    s_n = −μ · log Σ_i exp(w_i (z*_i − r_ni) / μ)         (smooth=True;  → −max_i w_i (z*_i − r_ni) as μ → 0)
    s_n = −max_i w_i (z*_i − r_ni)                        (smooth=False: classic Tchebycheff)

i.e. minus the (smoothed) weighted distance to the ideal point. NaN rewards drop that objective from the row; a row
with every reward NaN gives NaN. ``z*`` is the running maximum of every reward observed so far in
:meth:`before_update` (an objective's best attainable value; 1 for 0/1 rewards once any completion scores), unless
``ideal`` is given; :meth:`scalarize` reads it without changing it, so rows are scalarized independently.

``preference_lr = η > 0`` switches to OMD-TCH, *Online Mirror Descent for Tchebycheff Scalarization in
Multi-Objective Optimization* (Liu et al., 2024, arXiv 2410.21764; later versions: "Adaptive Online Mirror Descent
..."): the max over objectives is replaced by adaptive dual weights ``λ`` on the simplex, updated each step before
scalarizing the batch,

    λ ← normalize(λ ⊙ exp(η · w ⊙ (z* − r̄)))            (r̄: batch mean; upweights the objective furthest from z*)
    s_n = Σ_i v_i r_ni,   v = normalize(λ ⊙ w)             (linear; ``weights()`` returns ``v``)

=======  ====================  ==========================================================
symbol   parameter             default
=======  ====================  ==========================================================
``w``    ``weights``           uniform (normalised to the simplex)
``μ``    ``mu``                ``0.1`` (the STCH paper evaluates 0.01, 0.1, 0.5 and 1)
``z*``   ``ideal``             running max of observed rewards
``η``    ``preference_lr``     ``0`` (off: plain/smooth Tchebycheff)
=======  ====================  ==========================================================

Deviation: the reference code scalarizes per token, which mixes the max over objectives with positions of
different sequences; here the scalarization is per sequence (docs/design.md, Reference facts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StateField, StepStats, WeightingStrategy, check_number, check_vector, check_weight_vector, register

__all__ = ["Tchebycheff"]


@register("tchebycheff")
class Tchebycheff(WeightingStrategy):
    """Per-sequence (smooth) Tchebycheff scalarization; see the module docstring.

    >>> t = Tchebycheff(2, weights=[0.5, 0.5], smooth=False, ideal=[1.0, 1.0])
    >>> t.scalarize(np.array([[1.0, 0.0], [0.5, 0.5]])).tolist()
    [-0.5, -0.25]
    """

    state_fields = {
        "weights": StateField("_w"),
        "ideal": StateField("_ideal", nan_as_null=True),  # running max of the rewards; null: not seen yet
        "lambda": StateField("_lam"),  # OMD-TCH dual weights
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        mu: float = 0.1,
        smooth: bool = True,
        ideal: Sequence[float] | None = None,
        preference_lr: float = 0.0,
    ):
        super().__init__(num_objectives, objective_names)
        k = self.num_objectives
        mu = check_number(mu, "strategy_params.mu", low=0, low_open=True, hint=" (default 0.1)")
        preference_lr = check_number(preference_lr, "strategy_params.preference_lr", low=0, hint=" (default 0: off)")
        if not isinstance(smooth, bool):
            raise ValueError(f"strategy_params.smooth must be true or false, but got {smooth!r}")
        pref = np.full(k, 1.0 / k) if weights is None else check_weight_vector(weights, k, "strategy_params.weights")
        self._pref = pref / pref.sum()
        self.mu, self.smooth, self.preference_lr = float(mu), smooth, float(preference_lr)
        self._fixed_ideal = None
        if ideal is not None:
            try:
                self._fixed_ideal = check_vector(ideal, k, "strategy_params.ideal", names=self.objective_names)
            except ValueError as exc:
                raise ValueError(
                    f"strategy_params.ideal must be {k} finite numbers (one per objective: "
                    f"{', '.join(self.objective_names)}), but got {ideal!r}: {exc}"
                ) from None
        self._args = {"weights": None if weights is None else [float(x) for x in weights],
                      "ideal": None if ideal is None else [float(x) for x in ideal]}
        self._ideal = np.full(k, np.nan) if ideal is None else self._fixed_ideal.copy()  # (K,) NaN: not seen yet
        self._lam = np.full(k, 1.0 / k)  # OMD-TCH dual weights
        self._w = self._compose()
        self._last: dict[str, float] = {"skipped": 0.0}

    def _compose(self) -> np.ndarray:
        if self.preference_lr == 0:
            return self._pref.copy()
        v = self._lam * self._pref
        return v / v.sum()

    def _batch_max(self, rewards: np.ndarray) -> np.ndarray:
        finite = np.where(np.isfinite(rewards), rewards, -np.inf)
        top = finite.max(axis=0) if len(finite) else np.full(self.num_objectives, -np.inf)
        return np.where(np.isfinite(top), top, np.nan)  # (K,) NaN: nothing scored

    def before_update(self, stats: StepStats) -> None:
        rewards = np.asarray(stats.rewards, dtype=np.float64)  # (N, K)
        self._last = {"skipped": 1.0}
        if not np.isfinite(rewards).any():
            return
        if self._fixed_ideal is None:
            self._ideal = np.fmax(self._ideal, self._batch_max(rewards))  # running max; fmax skips NaN
        self._last.update({f"ideal/{n}": float(z) for n, z in zip(self.objective_names, self._ideal) if np.isfinite(z)})
        with np.errstate(invalid="ignore"):
            gap = self._pref * (self._ideal - stats.objective_means)  # (K,) weighted distance of the mean to z*
        if self.preference_lr == 0 or not np.isfinite(gap).any():
            self._last["skipped"] = float(self.preference_lr > 0)
            return
        logits = np.log(self._lam) + self.preference_lr * np.where(np.isfinite(gap), gap, 0.0)
        lam = np.exp(logits - logits.max())
        lam /= lam.sum()
        if not (np.all(np.isfinite(lam)) and np.all(lam > 0)):
            return
        self._last["skipped"] = 0.0
        self._lam = lam
        self._set_weights(self._compose())
        self._last.update({f"lambda/{n}": float(v) for n, v in zip(self.objective_names, lam)})

    def scalarize(self, rewards: np.ndarray) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        r = np.where(np.isfinite(rewards), rewards, np.nan)  # ±inf count as unscored
        if self.preference_lr > 0:
            out = np.nan_to_num(r, nan=0.0) @ self._w
            out[np.isnan(r).all(axis=1)] = np.nan
            return out
        ideal = np.where(np.isnan(self._ideal), self._batch_max(r), self._ideal)  # unseen: this batch's best
        y = self._pref * (ideal - r)  # (N, K) weighted distance to the ideal point
        y = np.where(np.isnan(y), -np.inf, y)  # an unscored objective drops out of the max / log-sum-exp
        top = y.max(axis=1)  # (N,)
        out = np.full(len(r), np.nan)
        rows = np.isfinite(top)
        if self.smooth:  # μ·logsumexp(y/μ), centred at the max (STCH Appendix B.1) so /μ never overflows
            out[rows] = -(top[rows] + self.mu * np.log(np.exp((y[rows] - top[rows, None]) / self.mu).sum(axis=1)))
        else:
            out[rows] = -top[rows]
        return out

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def _state_loaded(self) -> None:
        if self._fixed_ideal is not None:
            self._ideal = self._fixed_ideal.copy()

    def hyperparameters(self) -> dict[str, Any]:
        return {"weights": self._args["weights"], "mu": self.mu, "smooth": self.smooth,
                "ideal": self._args["ideal"], "preference_lr": self.preference_lr}

"""Lagrangian primal-dual weighting: maximise a primary objective subject to the others staying above targets.

The constrained-RLHF baseline of *Uncovering Cross-Objective Interference in Multi-Objective Alignment* (Lu & Jiang,
2026, arXiv 2602.06869), in the style of Safe RLHF (Dai et al., 2023, arXiv 2310.12773):

    max_θ J_p(θ)   s.t.   J_j(θ) ≥ b_j  for every j ≠ p
    L(θ, λ) = J_p + Σ_{j≠p} λ_j (J_j − b_j)                        (Lagrangian; the b_j terms are constant in θ)
    r       = r_p + Σ_{j≠p} λ_j r_j                                  (primal step: scalarized reward)
    λ_j    ← clip(λ_j + α·(b_j − mean_batch r_j), 0, λ_max)          (dual step, after the policy update)

=============  ================  ==========================================
symbol         parameter         reference value
=============  ================  ==========================================
``p``          ``primary``       ``0`` (accuracy)
``b_j``        ``targets``       ``0.9`` for every constraint objective
``α``          ``dual_lr``       ``0.01``
``λ_0``        ``lambda_init``   ``0``
``λ_max``      ``lambda_max``    none (unbounded)
=============  ================  ==========================================

Weights are ``w_p = 1`` and ``w_j = λ_j``, **not normalised** (``on_simplex = False``): this is the reference's
``A_p + Σ λ_j A_j`` (there combined in advantage space; identical for estimators linear in the rewards) and keeps
the meaning of a growing multiplier. Under GRPO with per-group std scaling the overall
scale cancels, so ``(1, λ)/(1 + Σλ)`` would give the same update there. The dual step uses this batch's means in
:meth:`after_update`; the new multipliers scalarize the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import StateField, StepStats, WeightingStrategy, check_number, check_vector, register

__all__ = ["Lagrangian"]


@register("lagrangian")
class Lagrangian(WeightingStrategy):
    """Primal-dual constrained weighting ``w = (1, λ)`` (see the module docstring).

    Args:
        primary: index or name of the objective to maximise. Default 0 (accuracy).
        targets: lower bound for each other objective: one number for all, or one per non-primary objective in
            objective order. Default 0.9.
        dual_lr: dual ascent step ``α ≥ 0``. Default 0.01.
        lambda_init: initial multiplier ``λ_0 ≥ 0`` for every constraint. Default 0.
        lambda_max: optional upper bound on the multipliers. Default none.

    >>> lag = Lagrangian(3, ["accuracy", "conciseness", "clarity"])
    >>> lag.weights().tolist()
    [1.0, 0.0, 0.0]
    """

    on_simplex = False
    state_fields = {"weights": StateField("_w"), "lambdas": StateField("_lam", length="num_constraints")}

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        primary: int | str = 0,
        targets: float | Sequence[float] = 0.9,
        dual_lr: float = 0.01,
        lambda_init: float = 0.0,
        lambda_max: float | None = None,
    ):
        super().__init__(num_objectives, objective_names)
        k, names = self.num_objectives, self.objective_names
        if isinstance(primary, str):
            if primary not in names:
                raise ValueError(f"strategy_params.primary {primary!r} is not an objective; use one of {names}")
            primary = names.index(primary)
        if isinstance(primary, bool) or not isinstance(primary, (int, np.integer)) or not 0 <= primary < k:
            raise ValueError(
                f"strategy_params.primary must be an objective name or an index in [0, {k}), but got {primary!r}"
            )
        self.primary = int(primary)
        self._others = [j for j in range(k) if j != self.primary]
        self.num_constraints = len(self._others)
        if isinstance(targets, (int, float, np.integer, np.floating)) and not isinstance(targets, bool):
            t = np.full(self.num_constraints, check_number(targets, "strategy_params.targets"))
        else:
            others = ", ".join(names[j] for j in self._others)
            t = check_vector(targets, self.num_constraints, "strategy_params.targets",
                             count=f"{self.num_constraints} constraint objectives ({others}) (or a single number "
                                   "for all)")
        self.targets = t
        self.dual_lr = check_number(dual_lr, "strategy_params.dual_lr", low=0)
        self.lambda_init = check_number(lambda_init, "strategy_params.lambda_init", low=0)
        self.lambda_max = None if lambda_max is None else check_number(
            lambda_max, "strategy_params.lambda_max", low=0, low_open=True)
        if self.lambda_max is not None and self.lambda_init > self.lambda_max:
            raise ValueError(f"strategy_params.lambda_init ({lambda_init}) exceeds lambda_max ({lambda_max})")
        self._targets_arg = float(targets) if np.isscalar(targets) else t.tolist()
        self._lam = np.full(len(self._others), self.lambda_init)
        self._w = self._compose()
        self._last: dict[str, float] = {"skipped": 0.0}

    def _compose(self) -> np.ndarray:
        w = np.zeros(self.num_objectives)
        w[self.primary] = 1.0
        w[self._others] = self._lam
        return w

    def after_update(self, stats: StepStats) -> None:
        means = stats.objective_means[self._others]  # (K-1,), NaN where unscored
        ok = np.isfinite(means)
        self._last = {"skipped": float(not ok.any())}
        if not ok.any():
            return
        violation = np.where(ok, self.targets - means, 0.0)  # > 0: constraint violated
        lam = np.maximum(self._lam + self.dual_lr * violation, 0.0)
        if self.lambda_max is not None:
            lam = np.minimum(lam, self.lambda_max)
        self._lam = lam
        self._set_weights(self._compose())
        for j, v, l in zip(self._others, violation, lam, strict=True):
            self._last.update({f"lambda/{self.objective_names[j]}": float(l),
                               f"violation/{self.objective_names[j]}": float(v)})

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def hyperparameters(self) -> dict[str, Any]:
        return {"primary": self.objective_names[self.primary], "targets": self._targets_arg, "dual_lr": self.dual_lr,
                "lambda_init": self.lambda_init, "lambda_max": self.lambda_max}

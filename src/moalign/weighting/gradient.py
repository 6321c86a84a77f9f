"""Gradient-based weight optimization: mirror descent on the simplex driven by gradient influence.

*Learning to Optimize Multi-Objective Alignment Through Dynamic Reward Weighting* (Lu et al., 2025,
arXiv 2509.11452), §5, Eq. 3 and Algorithm 2. At every RL step, after the per-objective policy gradients
``∇J_k`` of the batch are known and before the policy update:

    ĝ_k = c_k·∇J_k                                                       (per-objective normalisation, below)
    I_i = <ĝ_i, Σ_k ĝ_k> = (Ĝ·1)_i,  Ĝ_ij = c_i c_j G_ij                 (gradient influence)
    w ← normalize(w ⊙ exp(η_t·I/μ)) = softmax(log w + η_t·I/μ)         (Eq. 3, computed in log space)

``G`` is the ``(K, K)`` Gram matrix of the per-objective gradients (``G_ij = <∇J_i, ∇J_j>``); an objective whose
gradient is aligned with the sum of all of them (large influence ``I_i``) gains weight. The new weights scalarize
this same batch (Algorithm 2, lines 9-14: the trainer calls :meth:`before_update` and then :meth:`weights`).

Scale (``normalize``). The paper's μ was tuned on normalised gradients: the authors' code sums the micro-batch
losses and clips each objective's gradient to norm 1 (FSDP ``clip_grad_norm_``, max 1.0) before forming ``G``, so
``|I_i| ≲ K`` and ``η/μ = 0.1`` moves log-weights by up to ≈ 0.3 a step. The raw Gram of a mean loss is 10-100×
smaller on small models and depends on batch size, rank count and loss normalisation, so μ would need retuning
for each. The normalisation is computed from ``G`` alone (no extra gradient pass):

* ``unit`` (default, ours): ``c_k = 1/‖∇J_k‖`` over the probed parameters: ``Ĝ`` is the cosine matrix,
  ``I_i = 1 + Σ_{k≠i} cos(∇J_i, ∇J_k)``. The self-term is equal for all objectives, so only the *alignment* with
  the others moves the weights, and the step size no longer depends on the batch, the loss scale or the model.
* ``clip`` (the reference code): ``c_k = min(1, max_grad_norm/‖∇J_k‖)``, clipping each objective's gradient at
  norm ``max_grad_norm`` (1.0). The reference clips over the whole model, then restricts to the probed layers;
  here the norm is the probed subset's (the Gram sees no other parameters). That norm is never larger, so each
  ``c_k`` is ≥ the reference's, and when no two gradients conflict (every ``G_ij ≥ 0``) so is every ``I_i``.
  With conflicts either can be larger: objective 1's gradient 0.6 on the probed subset and nothing
  else, objective 2's −0.5 there and 4.0 elsewhere give ``I = [0.06, −0.05]`` here but ``[0.286, −0.059]`` in the
  reference, which shrinks objective 2 by its whole-model norm (≈ 4.03) and so damps the conflict.
* ``none``: ``c_k = 1``, the first version of this project (raw Gram; includes the self-term ``‖∇J_i‖²``, so the
  objective with the largest raw gradient gains weight).

An objective with a zero gradient (no advantage signal on this batch) has ``ĝ_k = 0`` under every option.

=================  ===============================  ============================================================
symbol             parameter                        paper value
=================  ===============================  ============================================================
``w_0``            ``initial_weights``              uniform ``1/K``
``μ``              ``mu``                           ``1e-5`` (Qwen3-8B, Math500, lr 1e-6); ``1e-4`` for other
                                                    models and datasets
``η_t``            ``stats.lr`` × ``eta_scale``     the policy learning rate at step ``t`` (polynomial decay,
                                                    power 1.03, done by the trainer's scheduler); scale 1.0
``c_k``            ``normalize``, ``max_grad_norm`` reference code: clip to norm 1.0 (``clip``); default ``unit``
``G``              ``stats.gram``                   gradients restricted to middle decoder layers (Qwen3-8B:
                                                    10-25) -- a trainer setting
=================  ===============================  ============================================================

Trainer settings of the paper (not parameters of this class): PPO clipping disabled (ε = dual-clip = 100) so that
the objective stays linear in the weights, polynomial LR decay with power 1.03, target layers for ``G``.

Theorem 5.2 of the paper bounds ``max(w) / min(w)`` when ``Σ_t η_t / μ`` converges; :meth:`metrics` reports
``log_weight_ratio`` and ``sum_eta_over_mu`` so the bound can be watched, and ``log_weight_change/<objective>``,
the step's ``Δ log w``. ``max_weight_ratio`` (an extension, off by default) enforces such a bound directly by raising
every weight to at least ``max(w) / ratio`` and renormalising (clipping the log-weights from below; the largest weight
keeps its rank, the ratio becomes exactly ``ratio``).

Numerical guard: a non-finite ``G``, influence, learning rate or update -- or an update that would underflow a
weight to exactly 0, from which a multiplicative update never recovers -- keeps the previous weights and reports
``skipped = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import (
    StateField,
    StepStats,
    WeightingStrategy,
    check_number,
    check_weight_vector,
    register,
    require_gram,
    softmax,
)

__all__ = ["Gradient", "NORMALIZATIONS", "normalized_gram"]

NORMALIZATIONS = ("unit", "clip", "none")


@register("gradient")
class Gradient(WeightingStrategy):
    """Mirror-descent weights ``w ← softmax(log w + η_t·(G·1)/μ)`` (arXiv 2509.11452, §5, Eq. 3, Algorithm 2).

    Args:
        mu: temperature ``μ > 0`` of the update. Paper: ``1e-5`` (Qwen3-8B on Math500), ``1e-4`` for other models
            and datasets.
        initial_weights: K positive weights, normalised to the simplex. Default: uniform. A zero weight would stay
            zero forever under a multiplicative update, so zeros are rejected.
        max_weight_ratio: optional bound ``> 1`` on ``max(w) / min(w)``, enforced after every update by clipping the
            log-weights from below at ``log max(w) − log ratio`` (an extension; the paper bounds the ratio only
            through Theorem 5.2). Default: no bound.
        eta_scale: multiplier on the trainer's learning rate, ``η_t = eta_scale · stats.lr``. Default 1.0 (paper).
        normalize: per-objective gradient normalisation before the influence: ``unit`` (default; cosine Gram),
            ``clip`` (the reference code: clip each gradient at norm ``max_grad_norm``) or ``none`` (raw Gram).
        max_grad_norm: the clip norm of ``normalize="clip"``. Reference: 1.0.

    >>> g = Gradient(3, mu=1.0, normalize="none")
    >>> g.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), lr=1.0,
    ...                           gram=np.diag([2.0, 1.0, 1.0])))
    >>> bool(g.weights()[0] > g.weights()[1])
    True
    """

    needs = frozenset({"gram"})
    state_fields = {
        "weights": StateField("_w"),
        "sum_eta_over_mu": StateField("_sum_eta_over_mu", "number"),  # Σ_t η_t/μ (Theorem 5.2)
        "influence": StateField("_influence", nullable=True),  # last step's I (for metrics)
        "log_weight_change": StateField("_log_weight_change", nullable=True),  # last step's Δ log w
        "skipped": StateField("_skipped", "flag"),
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        mu: float = 1e-5,
        initial_weights: Sequence[float] | None = None,
        max_weight_ratio: float | None = None,
        eta_scale: float = 1.0,
        normalize: str = "unit",
        max_grad_norm: float = 1.0,
    ):
        super().__init__(num_objectives, objective_names)
        mu = check_number(mu, "strategy_params.mu", low=0, low_open=True, hint=" (paper: 1e-5)")
        eta_scale = check_number(eta_scale, "strategy_params.eta_scale", low=0, hint=" (paper: 1.0)")
        if max_weight_ratio is not None:
            max_weight_ratio = check_number(max_weight_ratio, "strategy_params.max_weight_ratio", low=1,
                                            low_open=True, hint=" (or null for no bound)")
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"strategy_params.normalize must be one of {', '.join(NORMALIZATIONS)}, but got {normalize!r}"
            )
        max_grad_norm = check_number(max_grad_norm, "strategy_params.max_grad_norm", low=0, low_open=True,
                                     hint=" (reference: 1.0)")
        self.normalize, self.max_grad_norm = normalize, float(max_grad_norm)
        self.mu, self.eta_scale = float(mu), float(eta_scale)
        self.max_weight_ratio = None if max_weight_ratio is None else float(max_weight_ratio)
        self._initial = None if initial_weights is None else list(map(float, initial_weights))
        if initial_weights is not None:
            w = check_weight_vector(initial_weights, self.num_objectives, "strategy_params.initial_weights")
            if np.any(w <= 0):
                raise ValueError(
                    f"strategy_params.initial_weights must be positive, but got {w.tolist()}; a zero weight stays "
                    "zero under the multiplicative update -- drop the objective instead"
                )
            self._w = w / w.sum()
        if self.max_weight_ratio is not None and self._w.max() / self._w.min() > self.max_weight_ratio * (1 + 1e-12):
            raise ValueError(
                f"strategy_params.initial_weights {self._w.tolist()} have max/min ratio "
                f"{self._w.max() / self._w.min():.4g} > max_weight_ratio={self.max_weight_ratio}; "
                "raise max_weight_ratio or give more even initial weights"
            )
        self._sum_eta_over_mu = 0.0
        self._influence: list[float] | None = None
        self._log_weight_change: list[float] | None = None
        self._skipped = False

    def before_update(self, stats: StepStats) -> None:
        G = require_gram(stats, "gradient", self.num_objectives)  # (K, K)
        K = self.num_objectives
        eta = self.eta_scale * float(stats.lr)
        self._skipped = True
        if not (np.all(np.isfinite(G)) and math.isfinite(eta)):
            return
        I = normalized_gram(G, self.normalize, self.max_grad_norm) @ np.ones(K)  # (K,) I_i = <ĝ_i, Σ_k ĝ_k>
        with np.errstate(all="ignore"):
            logits = np.log(self._w) + eta * I / self.mu
            w = softmax(logits)  # normalize(w ⊙ exp(η I / μ)), stable
        if not (np.all(np.isfinite(I)) and np.all(np.isfinite(w))):
            return
        if self.max_weight_ratio is not None:
            w = np.maximum(w, w.max() / self.max_weight_ratio)  # clip log w from below, then renormalise
            w = w / w.sum()
        if not np.all(w > 0):  # an underflowed weight would stay 0 forever and make the ratio infinite
            return
        self._log_weight_change = (np.log(w) - np.log(self._w)).tolist()
        self._set_weights(w)
        self._influence = I.tolist()
        self._sum_eta_over_mu += eta / self.mu
        self._skipped = False

    def metrics(self) -> dict[str, float]:
        out = {
            "log_weight_ratio": float(np.log(self._w.max()) - np.log(self._w.min())),
            "sum_eta_over_mu": self._sum_eta_over_mu,
            "skipped": float(self._skipped),
        }
        if self._influence is not None:
            out.update({f"influence/{n}": v for n, v in zip(self.objective_names, self._influence, strict=True)})
        if self._log_weight_change is not None:
            out.update({f"log_weight_change/{n}": v
                        for n, v in zip(self.objective_names, self._log_weight_change, strict=True)})
        return out

    def _state_loaded(self) -> None:
        for attr in ("_influence", "_log_weight_change"):
            value = getattr(self, attr)
            setattr(self, attr, None if value is None else [float(v) for v in value])

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "mu": self.mu,
            "initial_weights": self._initial,
            "max_weight_ratio": self.max_weight_ratio,
            "eta_scale": self.eta_scale,
            "normalize": self.normalize,
            "max_grad_norm": self.max_grad_norm,
        }


def normalized_gram(gram: np.ndarray, normalize: str = "unit", max_grad_norm: float = 1.0) -> np.ndarray:
    """``Ĝ_ij = c_i c_j G_ij``: the Gram of the per-objective gradients after scaling each by ``c_k``.

    ``unit``: ``c_k = 1/‖g_k‖`` (cosine matrix); ``clip``: ``c_k = min(1, max_grad_norm/‖g_k‖)``; ``none``: ``c_k = 1``.
    ``‖g_k‖ = sqrt(G_kk)``; a zero gradient keeps ``c_k = 0`` contribution (its row and column stay 0).

    >>> normalized_gram(np.array([[4.0, 2.0], [2.0, 9.0]])).round(4).tolist()
    [[1.0, 0.3333], [0.3333, 1.0]]
    >>> normalized_gram(np.array([[4.0, 2.0], [2.0, 0.25]]), "clip").tolist()  # norm 2 -> c = 0.5; norm 0.5 stays
    [[1.0, 1.0], [1.0, 0.25]]
    """
    gram = (np.asarray(gram, dtype=np.float64) + np.asarray(gram, dtype=np.float64).T) / 2
    if normalize == "none":
        return gram
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))  # (K,)
    live = norms > 1e-12 * max(float(norms.max()), 1e-300)
    safe = np.where(live, norms, 1.0)
    if normalize == "unit":
        c = np.where(live, 1.0 / safe, 0.0)
    elif normalize == "clip":
        c = np.where(live, np.minimum(1.0, max_grad_norm / safe), 0.0)
    else:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, but got {normalize!r}")
    return gram * np.outer(c, c)

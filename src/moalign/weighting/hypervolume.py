"""Hypervolume-guided weight adaptation: fixed weights, learning scaled by a Pareto meta-reward.

*Learning to Optimize Multi-Objective Alignment Through Dynamic Reward Weighting* (Lu et al., 2025,
arXiv 2509.11452), §4 and Algorithm 1. The user's weights stay fixed; a meta-reward ``r_pareto`` rewards policies
that enlarge the Pareto front found so far:

    ΔHV = HV(B ∪ {p}) − HV(B)                 contribution of the current policy's point p to the buffer B
    r_pareto = f(ΔHV),  f = 0.5 + 1.5·tanh(ΔHV)          (paper's default; other activations below)
    B ← non-dominated(B ∪ {p})                 when ΔHV > 0

ΔHV ≥ 0, so with ``tanh`` the multiplier lies in [0.5, 2): 0.5 (learning halved) when the policy adds nothing to the
front and > 0.5 exactly when it enlarges it. Points live in the normalised space of DESIGN.md (every objective
maximised in [0, 1]; length as ``1 − length/max_completion_length``), so raw token counts cannot dominate ΔHV.

=======================  ===================================  ===============================================
symbol / choice          parameter                            paper / reference code
=======================  ===================================  ===============================================
``w``                    ``weights`` / ``preset``             the fixed baseline weights (§6.1)
``f``                    ``activation``                       ``tanh`` (§4; others in the ablation)
``p``                    ``point_source``                     ``validation``: greedy validation score
evaluation period        ``hv_eval_every``                    reference code: every step (1); default 5
reference point          ``ref_point``                        the initial policy's point (None)
where r_pareto acts      ``apply_to``                         reference code: ``reward`` (see below)
=======================  ===================================  ===============================================

Activations: ``tanh`` = 0.5 + 1.5·tanh(ΔHV), ``tanh3`` = 0.5 + 1.5·tanh(3ΔHV), ``sigmoid_plus_one`` = 1 + σ(ΔHV),
``two_sigmoid`` = 2σ(ΔHV).

Timing. Before the first point is observed, and when the first point becomes the reference point (``ref_point``
None), ``r_pareto = 1`` (neutral, as the reference code's ``meta_reward = 1``; ``f(0) = 0.5`` would halve learning
before anything was measured). Then:

* ``point_source="validation"``: :meth:`wants_validation_point` asks the trainer for a point every ``hv_eval_every``
  steps, which it passes as ``stats.validation_point`` to :meth:`after_update`; the resulting ``r_pareto`` holds for every following step until the next evaluation.
  The trainer also hands over the initial policy's point (step 0) through :meth:`set_reference_point`; it becomes
  the reference point. The buffer records ``stats.validation_step`` (default ``stats.step``) as the point's step.
* ``point_source="train_batch"``: :meth:`before_update` of step t takes the batch's mean rewards
  ``stats.objective_means`` as the point; ``r_pareto`` acts on this same step (``apply_to="advantage"``).

Placement. ``apply_to="advantage"`` (default): :meth:`advantage_scale` returns ``r_pareto``; a multiplier on the
final advantages survives GRPO/REINFORCE++ normalisation. ``apply_to="reward"`` (reference code):
:meth:`scalarize` returns ``(r·w)·r_prev``, where ``r_prev`` is the multiplier in force when step t began (the
previous evaluation's or the previous batch's), and :meth:`advantage_scale` returns 1. Under group/batch std
normalisation this multiplier cancels: ``(c·r − c·mean)/(c·std + 1e-4) ≈ (r − mean)/std``.

A non-finite point is ignored: buffer and ``r_pareto`` stay as they were and :meth:`metrics` reports ``skipped = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..pareto import ParetoBuffer
from .base import StateField, StepStats, WeightingStrategy, check_number, check_vector, nan_safe_linear, register
from .fixed import resolve_weights

__all__ = ["ACTIVATIONS", "Hypervolume"]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


ACTIVATIONS: dict[str, Callable[[float], float]] = {
    "tanh": lambda d: 0.5 + 1.5 * math.tanh(d),
    "tanh3": lambda d: 0.5 + 1.5 * math.tanh(3.0 * d),
    "sigmoid_plus_one": lambda d: 1.0 + _sigmoid(d),
    "two_sigmoid": lambda d: 2.0 * _sigmoid(d),
}
POINT_SOURCES = ("validation", "train_batch")
PLACEMENTS = ("advantage", "reward")


@register("hypervolume")
class Hypervolume(WeightingStrategy):
    """Fixed weights times the meta-reward ``r_pareto = f(ΔHV)`` (arXiv 2509.11452, §4, Algorithm 1).

    Args:
        weights: one non-negative weight per objective, used as given (as in ``fixed``). Default: uniform.
        preset: a ``fixed`` preset name (``accuracy_focused``, ``balanced``, ``efficiency_focused``); exclusive
            with ``weights``.
        activation: ``tanh`` (default), ``tanh3``, ``sigmoid_plus_one`` or ``two_sigmoid``.
        point_source: ``validation`` (default, the paper's greedy validation score, passed by the trainer in
            ``after_update``) or ``train_batch`` (the batch's mean rewards, in ``before_update``).
        apply_to: ``advantage`` (default) or ``reward`` (reference-code placement, one step late; cancels under
            std normalisation).
        hv_eval_every: validation period in RL steps (read by the trainer); ``>= 1``.
        ref_point: K numbers, the HV reference point in the normalised space. Default: the first point observed.

    >>> hv = Hypervolume(2, point_source="train_batch", ref_point=[0.0, 0.0])
    >>> hv.before_update(StepStats(0, np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2), np.zeros((2, 2))))
    >>> round(hv.advantage_scale(), 4)  # ΔHV = 0.25
    0.8674
    """

    needs = frozenset({"validation"})  # default point_source; set per instance in __init__
    on_simplex = False  # user weights are applied as given
    state_fields = {
        "weights": StateField("_w"),
        "buffer": StateField("_buffer", "object"),  # the ParetoBuffer (its own strict state)
        "delta_hv": StateField("_delta_hv", "number"),
        "r_pareto": StateField("_r_pareto", "number"),  # multiplier from the latest point
        "r_prev": StateField("_r_prev", "number"),  # multiplier in force when the current step began
        "last_point_step": StateField("_last_step", "integer", nullable=True),
        "skipped": StateField("_skipped", "flag"),
    }

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        preset: str | None = None,
        activation: str = "tanh",
        point_source: str = "validation",
        apply_to: str = "advantage",
        hv_eval_every: int = 5,
        ref_point: Sequence[float] | None = None,
    ):
        super().__init__(num_objectives, objective_names)
        resolved = resolve_weights(weights, preset, self.num_objectives, "hypervolume")
        if resolved is not None:
            self._w = resolved
        for key, value, valid in (
            ("activation", activation, tuple(ACTIVATIONS)),
            ("point_source", point_source, POINT_SOURCES),
            ("apply_to", apply_to, PLACEMENTS),
        ):
            if value not in valid:
                raise ValueError(f"strategy_params.{key} must be one of {', '.join(valid)}, but got {value!r}")
        hv_eval_every = check_number(hv_eval_every, "strategy_params.hv_eval_every", low=1, integer=True)
        ref = None
        if ref_point is not None:
            ref = check_vector(ref_point, self.num_objectives, "strategy_params.ref_point", names=self.objective_names)
        self.preset, self.activation, self.point_source, self.apply_to = preset, activation, point_source, apply_to
        self.hv_eval_every, self.ref_point = int(hv_eval_every), None if ref is None else ref.tolist()
        # The trainer reads `strategy.needs`; the instance attribute shadows the class default.
        self.needs = frozenset({"validation"}) if point_source == "validation" else frozenset()  # type: ignore[misc]
        self._f = ACTIVATIONS[activation]
        self._buffer = ParetoBuffer(self.ref_point, maximize=True)
        self._delta_hv = 0.0
        self._r_pareto = 1.0  # multiplier from the latest point (neutral before any)
        self._r_prev = 1.0  # multiplier in force when the current step began (apply_to="reward")
        self._last_step: int | None = None
        self._skipped = False

    # -- hooks ---------------------------------------------------------------------------------------------------
    def before_update(self, stats: StepStats) -> None:
        self._r_prev = self._r_pareto
        if self.point_source == "train_batch":
            self._observe(stats.objective_means, stats.step)

    def after_update(self, stats: StepStats) -> None:
        if self.point_source == "validation" and stats.validation_point is not None:
            # The buffer records the evaluation's step (evals.jsonl numbering) when the trainer gives it.
            step = stats.step if stats.validation_step is None else stats.validation_step
            self._observe(stats.validation_point, int(step))
        self._r_prev = self._r_pareto  # the next step starts with the latest multiplier

    def wants_validation_point(self, rl_step: int) -> bool:
        return self.point_source == "validation" and rl_step % self.hv_eval_every == 0

    def set_reference_point(self, point: np.ndarray, step: int) -> None:
        # The initial policy's point: the reference point when ref_point is None (r_pareto stays neutral), else the
        # buffer's first point.
        if self.point_source == "validation":
            self._observe(point, step)

    def scalarize(self, rewards: np.ndarray) -> np.ndarray:
        scale = self._r_prev if self.apply_to == "reward" else 1.0
        return nan_safe_linear(rewards, self._w) * scale

    def advantage_scale(self) -> float:
        return self._r_pareto if self.apply_to == "advantage" else 1.0

    def metrics(self) -> dict[str, float]:
        return {
            "delta_hv": self._delta_hv,
            "r_pareto": self._r_pareto,
            "pareto_buffer_size": float(len(self._buffer)),
            "skipped": float(self._skipped),
        }

    def _observe(self, point: np.ndarray, step: int) -> None:
        p = np.asarray(point, dtype=np.float64).reshape(-1)
        if p.shape != (self.num_objectives,):
            raise ValueError(f"hypervolume point has {p.size} entries but there are {self.num_objectives} objectives")
        self._skipped = not bool(np.all(np.isfinite(p)))
        if self._skipped:
            return
        first_is_ref = self._buffer.ref is None  # this point becomes the reference (ref_point=None)
        # A hypervolume can overflow to inf for huge (finite) points; keep the state finite so it stays JSON.
        self._delta_hv = min(float(self._buffer.add(p, int(step))), float(np.finfo(np.float64).max))
        self._last_step = int(step)
        if not first_is_ref:  # the point that becomes the reference leaves r_pareto neutral
            self._r_pareto = float(self._f(self._delta_hv))

    # -- state -----------------------------------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weights": self._w.tolist()} if self.preset is None else {"preset": self.preset}
        out.update(
            activation=self.activation, point_source=self.point_source, apply_to=self.apply_to,
            hv_eval_every=self.hv_eval_every, ref_point=self.ref_point,
        )
        return out

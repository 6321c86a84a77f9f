"""Hypervolume-guided weight adaptation: fixed weights, learning scaled by a Pareto meta-reward.

*Learning to Optimize Multi-Objective Alignment Through Dynamic Reward Weighting* (Lu et al., 2025,
arXiv 2509.11452), §4 and Algorithm 1. The user's weights stay fixed; a meta-reward ``r_pareto`` rewards policies
that enlarge the Pareto front found so far:

    ΔHV = HV(B ∪ {p}) − HV(B)                 contribution of the current policy's point p to the buffer B
    r_pareto = f(s(ΔHV)),  f = 0.5 + 1.5·tanh           (paper's default; other activations below)
    B ← non-dominated(B ∪ {p})                 when ΔHV > 0

ΔHV ≥ 0, so with ``tanh`` the multiplier lies in [0.5, 2): 0.5 (learning halved) when the policy adds nothing to the
front and > 0.5 exactly when it enlarges it. Points live in the normalised space of docs/design.md (every objective
maximised in [0, 1]; length as ``1 − length/max_completion_length``).

Scale ``s`` (``hv_scale``). In the reference code ΔHV is in raw units: a length gain in tokens times the K − 1 gains
in the rate objectives (accuracy, clarity: each a few hundredths). With K = 2 (length and one rate) a typical
non-dominated point saturates ``tanh``: +0.02 accuracy and −100 tokens give ΔHV = 2, ``r ≈ 1.95``. With K = 3 the
second rate gain multiplies in, and ``r`` spreads over [0.5, 2), driven mostly by the length gain: +0.02 accuracy,
−100 tokens, +0.02 clarity give ΔHV = 0.04, ``r = 0.56``; it takes −800 tokens and +0.05 in both rates to reach
``r ≈ 1.95``. A point that adds nothing gets 0.5. In the unit cube ΔHV is a product of K small gains (0.05³ ≈ 1e-4),
so ``tanh(ΔHV) ≈ 0`` and ``r_pareto`` is pinned at 0.5 -- the first version of this project.

* ``box_root`` (default, ours): ``s = (ΔHV / V)^(1/K)`` with ``V = Π_k (ideal_k − ref_k)`` the volume of the box
  between the reference point and the ideal point of ``B ∪ {p}``. ``ΔHV/V ∈ [0, 1]`` is the share of the box the
  point adds, free of units; the K-th root turns that volume back into a length: a point that adds a slab of
  relative thickness x in every objective gives ``s ≈ x``. With ``tanh``, a point that doubles the box's extent in one
  objective gives ``r ≈ 1.5``, one that adds 1 % of the box ``r ≈ 0.8``.
* ``unit``: ``s = ΔHV`` in the normalised space (the first version).

Reference point (``ref_point``). By default it is the origin of the normalised space (``"origin"``: accuracy 0,
length ``max_completion_length``, clarity 0) -- the reference point of every hypervolume moalign reports, so the
meta-reward measures growth of the reported front. The paper uses the initial policy's point (``"initial"``, minus
``ref_margin``): then every later point worse than the initial policy in any single objective scores 0.5. On tasks
where one objective is bought with another (the embedded task: clear step-by-step answers are longer than the initial
direct ones) that is every point after the first few, and ``r_pareto`` stays at 0.5 for the whole run. With the
origin, the first point seeds the buffer (``r_pareto`` stays neutral) and trade-offs that extend the front count.

=======================  ===================================  ===============================================
symbol / choice          parameter                            paper / reference code
=======================  ===================================  ===============================================
``w``                    ``weights`` / ``preset``             the fixed baseline weights (§6.1)
``f``                    ``activation``                       ``tanh`` (§4; others in the ablation)
``s``                    ``hv_scale``                         raw units (saturating); default ``box_root``
``p``                    ``point_source``                     ``validation``: greedy validation score
evaluation period        ``hv_eval_every``                    reference code: every step (1); default 5
reference point          ``ref_point``, ``ref_margin``        ``initial`` (margin 0); default ``origin``
where r_pareto acts      ``apply_to``                         reference code: ``reward``; default ``lr``
=======================  ===================================  ===============================================

Activations: ``tanh`` = 0.5 + 1.5·tanh(s), ``tanh3`` = 0.5 + 1.5·tanh(3s), ``sigmoid_plus_one`` = 1 + σ(s),
``two_sigmoid`` = 2σ(s).

Timing. Before the first point is observed, and for the first point (which sets the reference point with
``"initial"`` and seeds the buffer with ``"origin"``), ``r_pareto = 1`` (neutral, as the reference code's
``meta_reward = 1``). With an explicit list of K numbers the first point is scored like any other. Then:

* ``point_source="validation"``: the trainer evaluates the policy every ``hv_eval_every`` RL steps
  (:meth:`wants_validation_point`) and passes ``stats.validation_point`` to :meth:`after_update`; the resulting
  ``r_pareto`` holds for every following step until the next evaluation. The initial policy's point (step 0) comes
  through :meth:`set_reference_point`.
* ``point_source="train_batch"``: :meth:`before_update` of step t takes the batch's mean rewards
  ``stats.objective_means`` as the point; ``r_pareto`` acts on this same step.

Placement (``apply_to``):

* ``lr`` (default, ours): :meth:`lr_scale` returns ``r_pareto`` and the trainer multiplies the learning rate of this
  step's optimizer steps by it. Adam's update is proportional to the learning rate whatever the gradient scale, so
  the factor reaches the parameters in full.
* ``advantage``: :meth:`advantage_scale` returns ``r_pareto``, a multiplier on the final advantages. It survives
  GRPO/REINFORCE++ normalisation, but Adam divides the gradient by its running RMS, so a multiplier that stays near
  one value is largely undone (a constant ×0.5 from step 1 changes Adam's update by only a few percent).
* ``reward`` (reference code): :meth:`scalarize` returns ``(r·w)·r_prev``, where ``r_prev`` is the multiplier in force
  when step t began. Under group/batch std normalisation it cancels: ``(c·r − c·mean)/(c·std + 1e-4) ≈ (r − mean)/std``.

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

__all__ = ["ACTIVATIONS", "HV_SCALES", "Hypervolume", "box_root_scale"]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


ACTIVATIONS: dict[str, Callable[[float], float]] = {
    "tanh": lambda d: 0.5 + 1.5 * math.tanh(d),
    "tanh3": lambda d: 0.5 + 1.5 * math.tanh(3.0 * d),
    "sigmoid_plus_one": lambda d: 1.0 + _sigmoid(d),
    "two_sigmoid": lambda d: 2.0 * _sigmoid(d),
}
POINT_SOURCES = ("validation", "train_batch")
PLACEMENTS = ("lr", "advantage", "reward")
REF_POINTS = ("origin", "initial")
HV_SCALES = ("box_root", "unit")


def box_root_scale(delta_hv: float, points: np.ndarray, point: np.ndarray, ref: np.ndarray) -> float:
    """``(ΔHV / V)^(1/K)``, ``V = Π_k (max_k(points ∪ {point}) − ref_k)`` (all objectives maximised).

    >>> box_root_scale(0.5 * 0.5, np.array([[1.0, 0.5]]), np.array([0.5, 1.0]), np.array([0.0, 0.0]))  # 1/4 of box
    0.5
    """
    if delta_hv <= 0:
        return 0.0
    cloud = np.vstack([np.asarray(points, dtype=np.float64).reshape(-1, len(ref)), np.asarray(point)[None, :]])
    volume = float(np.prod(cloud.max(axis=0) - np.asarray(ref, dtype=np.float64)))
    if not (volume > 0 and math.isfinite(volume)):
        return 0.0
    return float(min(delta_hv / volume, 1.0) ** (1.0 / len(ref)))


@register("hypervolume")
class Hypervolume(WeightingStrategy):
    """Fixed weights times the meta-reward ``r_pareto = f(s(ΔHV))`` (arXiv 2509.11452, §4, Algorithm 1).

    Args:
        weights: one non-negative weight per objective, used as given (as in ``fixed``). Default: uniform.
        preset: a ``fixed`` preset name (``accuracy_focused``, ``balanced``, ``efficiency_focused``); exclusive
            with ``weights``.
        activation: ``tanh`` (default), ``tanh3``, ``sigmoid_plus_one`` or ``two_sigmoid``.
        point_source: ``validation`` (default, the paper's greedy validation score, passed by the trainer in
            ``after_update``) or ``train_batch`` (the batch's mean rewards, in ``before_update``).
        apply_to: ``lr`` (default: the step's learning rate), ``advantage`` or ``reward`` (reference code).
        hv_scale: ``box_root`` (default) or ``unit`` -- the scale ΔHV is measured on (module docstring).
        hv_eval_every: validation period in RL steps; ``>= 1``.
        ref_point: ``"origin"`` (default: zeros, the reported HV's reference point), ``"initial"`` (the first
            observed point minus ``ref_margin``; the paper) or K numbers in the normalised space.
        ref_margin: with ``ref_point="initial"``, how far below the first point the reference point lies, in
            normalised units (default 0, the paper's choice; the first point then also joins the buffer when > 0).

    >>> hv = Hypervolume(2, point_source="train_batch", ref_point=[0.0, 0.0], hv_scale="unit", apply_to="advantage")
    >>> hv.before_update(StepStats(0, np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2), np.zeros((2, 2))))
    >>> round(hv.advantage_scale(), 4)  # ΔHV = 0.25
    0.8674
    """

    needs = frozenset({"validation"})  # default point_source; see needs_for
    on_simplex = False  # user weights are applied as given
    state_fields = {
        "weights": StateField("_w"),
        "buffer": StateField("_buffer", kind="object"),
        "delta_hv": StateField("_delta_hv", kind="number"),
        "scaled_delta_hv": StateField("_scaled", kind="number"),
        "r_pareto": StateField("_r_pareto", kind="number"),
        "r_prev": StateField("_r_prev", kind="number"),
        "last_point_step": StateField("_last_step", kind="integer", nullable=True),
        "skipped": StateField("_skipped", kind="flag"),
    }

    @classmethod
    def needs_for(cls, params: dict[str, Any]) -> frozenset[str]:
        # Validation points only with point_source: validation (the default); train_batch points need nothing.
        return frozenset({"validation"}) if params.get("point_source", "validation") == "validation" else frozenset()

    def __init__(
        self,
        num_objectives: int,
        objective_names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        preset: str | None = None,
        activation: str = "tanh",
        point_source: str = "validation",
        apply_to: str = "lr",
        hv_scale: str = "box_root",
        hv_eval_every: int = 5,
        ref_point: Sequence[float] | str = "origin",
        ref_margin: float = 0.0,
    ):
        super().__init__(num_objectives, objective_names)
        resolved = resolve_weights(weights, preset, self.num_objectives, "hypervolume")
        if resolved is not None:
            self._w = resolved
        for key, value, valid in (
            ("activation", activation, tuple(ACTIVATIONS)),
            ("point_source", point_source, POINT_SOURCES),
            ("apply_to", apply_to, PLACEMENTS),
            ("hv_scale", hv_scale, HV_SCALES),
        ):
            if value not in valid:
                raise ValueError(f"strategy_params.{key} must be one of {', '.join(valid)}, but got {value!r}")
        self.hv_eval_every = check_number(hv_eval_every, "strategy_params.hv_eval_every", low=1, integer=True)
        self.ref_margin = check_number(ref_margin, "strategy_params.ref_margin", low=0)
        ref = None
        if isinstance(ref_point, str):
            if ref_point not in REF_POINTS:
                raise ValueError(
                    f"strategy_params.ref_point must be one of {', '.join(REF_POINTS)} or {self.num_objectives} "
                    f"numbers, but got {ref_point!r}"
                )
            ref = np.zeros(self.num_objectives) if ref_point == "origin" else None
        elif ref_point is None:
            raise ValueError("strategy_params.ref_point must be 'origin', 'initial' or a list of numbers, not null")
        else:
            ref = check_vector(ref_point, self.num_objectives, "strategy_params.ref_point", names=self.objective_names)
        self.preset, self.activation, self.point_source, self.apply_to = preset, activation, point_source, apply_to
        self.hv_scale = hv_scale
        self.ref_point = ref_point if isinstance(ref_point, str) else ref.tolist()
        # The instance attribute shadows the class default; it is what needs_for says for these parameters.
        self.needs = type(self).needs_for({"point_source": point_source})  # type: ignore[misc]
        self._f = ACTIVATIONS[activation]
        self._buffer = ParetoBuffer(None if ref is None else ref, maximize=True)
        self._delta_hv = 0.0
        self._scaled = 0.0
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
        if self.point_source == "validation":
            self._observe(point, step)

    def scalarize(self, rewards: np.ndarray) -> np.ndarray:
        scale = self._r_prev if self.apply_to == "reward" else 1.0
        return nan_safe_linear(rewards, self._w) * scale

    def advantage_scale(self) -> float:
        return self._r_pareto if self.apply_to == "advantage" else 1.0

    def lr_scale(self) -> float:
        return self._r_pareto if self.apply_to == "lr" else 1.0

    def metrics(self) -> dict[str, float]:
        return {
            "delta_hv": self._delta_hv,
            "scaled_delta_hv": self._scaled,
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
        first = self._last_step is None
        self._last_step = int(step)
        if self._buffer.ref is None:  # "initial": the first point sets the reference point, r_pareto neutral
            self._buffer = ParetoBuffer(p - self.ref_margin, maximize=True)
            if self.ref_margin > 0:
                self._buffer.add(p, int(step))
            self._delta_hv = self._scaled = 0.0
            return
        # "origin": the first point seeds the buffer, r_pareto neutral (an explicit list scores it like any other)
        if first and isinstance(self.ref_point, str):
            self._buffer.add(p, int(step))
            self._delta_hv = self._scaled = 0.0
            return
        before = self._buffer.points
        # A hypervolume can overflow to inf for huge (finite) points; keep the state finite so it stays JSON.
        self._delta_hv = min(float(self._buffer.add(p, int(step))), float(np.finfo(np.float64).max))
        if self.hv_scale == "box_root":
            self._scaled = box_root_scale(self._delta_hv, before, p, self._buffer.ref)
        else:
            self._scaled = self._delta_hv
        self._r_pareto = float(self._f(self._scaled))

    def hyperparameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weights": self._w.tolist()} if self.preset is None else {"preset": self.preset}
        out.update(
            activation=self.activation, point_source=self.point_source, apply_to=self.apply_to,
            hv_scale=self.hv_scale, hv_eval_every=self.hv_eval_every, ref_point=self.ref_point,
            ref_margin=self.ref_margin,
        )
        return out

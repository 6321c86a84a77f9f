"""The step engine: one object per training run that does moalign's part of every RL step, for any trainer.

A trainer adapter (TRL's :class:`~moalign.trainer.MOGRPOTrainer`; a verl or OpenRLHF plugin the same way) builds one
:class:`StepEngine` from the run's settings, then per generation batch only moves tensors in and out::

    engine = StepEngine(["accuracy", "conciseness"], "gradient", {"mu": 1e-5}, estimator="rloo")
    adv_k = engine.begin(rewards, num_generations=G, step=t, lr=lr)  # (N, K) per-objective advantages, once
    adv = engine.weigh(gram=probe)   # (N,) scalar advantages; probe(adv_k) is asked only if the strategy needs it
    ... the trainer's policy update (lr × engine.lr_scale()) ...
    record = engine.finish(clipped_advantage_weights=..., validation_point=...)
    log(engine.metrics(record)); write(engine.log_line(record, step=t + 1))
    checkpoint["moalign"] = engine.state_dict()

:meth:`StepEngine.step` does ``begin`` and ``weigh`` in one call. The engine holds the estimator and the aggregation
(:mod:`moalign.rl.step`), the weighting strategy, the Gram slot, the interference monitor
(:mod:`moalign.rl.monitor`), the current step's :class:`~moalign.rl.step.StepRecord` and its own state. What a
strategy needs is known from its name and parameters (:func:`moalign.weighting.needs_for`); the strategy is built
once, here (or handed in already built).

Rows are grouped by prompt either in consecutive blocks of ``num_generations`` (TRL) or by ``group_ids`` in any
order (verl's ``uid``); every prompt must have the same number of completions. The estimator is one of moalign's
(:data:`moalign.rl.advantages.ESTIMATORS`) or a function with their signature, e.g. a framework's own estimator
(the verl plugin passes verl's GRPO/RLOO, so that its advantages equal verl's). The module depends on numpy, torch
and :mod:`moalign.weighting` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import weighting
from ..weighting.base import WeightingStrategy
from .advantages import ESTIMATORS
from .monitor import InterferenceMonitor
from .step import AGGREGATIONS, GramFn, StepRecord, _as_numpy, finish_step, per_objective_step, weigh_stats

__all__ = ["EstimatorFn", "StepEngine", "StepOutput"]

#: ``estimator(rewards, num_generations, scale_rewards) -> advantages``: rewards ``(N,)`` or ``(N, K)`` float32, rows
#: grouped by prompt in consecutive blocks of ``num_generations``, NaN = unscored; advantages of the same shape (NaN or
#: 0 where unscored). The signature of :data:`moalign.rl.advantages.ESTIMATORS`' functions.
EstimatorFn = Callable[[torch.Tensor, int, str], torch.Tensor]


@dataclass
class StepOutput:
    """What :meth:`StepEngine.step` returns.

    Attributes:
        advantages: ``(N,)`` float32 scalar advantages, in the caller's row order.
        per_objective_advantages: ``(N, K)`` float32 per-objective advantages (0 where unscored).
        record: the step's :class:`~moalign.rl.step.StepRecord`.
        metrics: the scalars to log now (:meth:`StepEngine.metrics`).
    """

    advantages: torch.Tensor
    per_objective_advantages: torch.Tensor
    record: StepRecord
    metrics: dict[str, float]


class StepEngine:
    """moalign's part of every RL step (module docstring).

    Args:
        objective_names: the objectives, in weight order (their count is K).
        strategy: a registry name (:func:`moalign.weighting.available`), built here with ``strategy_params``, or a
            built :class:`~moalign.weighting.WeightingStrategy` with K objectives.
        strategy_params: the strategy's keyword parameters (with a name only).
        estimator: ``grpo`` | ``rloo`` | ``reinforce`` (:func:`moalign.rl.compute_advantages`), or an
            :data:`EstimatorFn` (another framework's estimator). It computes the per-objective advantages and, under
            ``sum_then_normalize``, the advantages of the weighted reward.
        scale_rewards: ``group`` | ``batch`` | ``none``.
        aggregation: ``sum_then_normalize`` | ``normalize_then_sum`` (:mod:`moalign.rl.step`).
        interference_window: steps of negative covariance with a falling mean before an objective is flagged.
        gram: the default Gram slot (:data:`~moalign.rl.step.GramFn`), asked only when the strategy needs it;
            :meth:`weigh` may pass one per step instead.
    """

    def __init__(
        self,
        objective_names: Sequence[str],
        strategy: str | WeightingStrategy = "fixed",
        strategy_params: dict[str, Any] | None = None,
        *,
        estimator: str | EstimatorFn = "grpo",
        scale_rewards: str = "group",
        aggregation: str = "sum_then_normalize",
        interference_window: int = 5,
        gram: GramFn | None = None,
    ):
        self.objective_names = [str(n) for n in objective_names]
        k = len(self.objective_names)
        if callable(estimator):
            self.estimator_name = str(getattr(estimator, "__name__", type(estimator).__name__))
        elif estimator in ESTIMATORS:
            self.estimator_name = estimator
        else:
            raise ValueError(f"unknown advantage_estimator {estimator!r}; valid names: {', '.join(sorted(ESTIMATORS))}"
                             " (or pass an estimator function)")
        if scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', but got {scale_rewards!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"multi_objective_aggregation must be one of {', '.join(AGGREGATIONS)}, but got "
                             f"{aggregation!r}")
        if isinstance(strategy, str):
            strategy = weighting.build(strategy, k, self.objective_names, **(strategy_params or {}))
        elif strategy_params:
            raise ValueError("strategy_params go with a strategy name; this strategy is already built")
        elif strategy.num_objectives != k:
            raise ValueError(f"strategy has {strategy.num_objectives} objectives but {k} objectives were given")
        self.strategy = strategy
        self.estimator, self.scale_rewards, self.aggregation = estimator, scale_rewards, aggregation
        self.gram = gram
        self.monitor = InterferenceMonitor(self.objective_names, interference_window)
        self.record: StepRecord | None = None  # the current (or last) step's record
        self._stats = None  # the current step's StepStats between begin() and weigh()
        self._num_generations = 1
        self._order: np.ndarray | None = None  # row permutation that makes groups consecutive (None: identity)

    @classmethod
    def from_config(cls, args: Any, objective_names: Sequence[str],
                    strategy: WeightingStrategy | None = None) -> StepEngine:
        """The engine of a config with moalign's fields (:class:`~moalign.mo_config.MOGRPOConfig` or any object
        with ``strategy``, ``strategy_params``, ``advantage_estimator``, ``scale_rewards``,
        ``multi_objective_aggregation`` and ``interference_window``); ``strategy`` replaces the configured one."""
        return cls(
            objective_names,
            strategy if strategy is not None else args.strategy,
            None if strategy is not None else dict(args.strategy_params or {}),
            estimator=args.advantage_estimator,
            scale_rewards=args.scale_rewards,
            aggregation=getattr(args, "multi_objective_aggregation", "sum_then_normalize"),
            interference_window=getattr(args, "interference_window", 5),
        )

    # -- what the strategy needs ----------------------------------------------------------------------------------
    @property
    def needs(self) -> frozenset[str]:
        """The statistics the strategy needs (subset of ``{"gram", "losses", "post_update", "validation"}``)."""
        return frozenset(self.strategy.needs)

    @property
    def wants_gram(self) -> bool:
        """Whether :meth:`weigh` will ask the Gram slot."""
        return "gram" in self.needs or "losses" in self.needs

    def wants_validation_point(self, rl_step: int) -> bool:
        """Whether the trainer should evaluate the policy after RL step ``rl_step`` (1-based) for :meth:`finish`."""
        return "validation" in self.needs and bool(self.strategy.wants_validation_point(rl_step))

    def set_reference_point(self, point: np.ndarray, step: int = 0) -> None:
        """The initial policy's validation point (strategies that need ``"validation"``)."""
        self.strategy.set_reference_point(np.asarray(point, dtype=np.float64), step=step)

    def weights(self) -> np.ndarray:
        return np.asarray(self.strategy.weights(), dtype=np.float64)

    def lr_scale(self) -> float:
        """The strategy's learning-rate multiplier for this step's optimizer steps (recorded in the step record)."""
        scale = float(self.strategy.lr_scale())
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"strategy {self.strategy.name!r} returned lr_scale={scale}; it must be finite and >= 0")
        if self.record is not None:
            self.record.lr_scale = scale
        return scale

    # -- one step ---------------------------------------------------------------------------------------------------
    def begin(
        self,
        rewards: np.ndarray | torch.Tensor,
        *,
        num_generations: int | None = None,
        group_ids: Sequence[Any] | np.ndarray | None = None,
        step: int = 0,
        lr: float = 0.0,
    ) -> torch.Tensor:
        """Start a step: the ``(N, K)`` rewards (NaN = unscored) -> the per-objective advantages ``(N, K)`` (float32,
        CPU, caller's row order), computed once for the step. Give ``num_generations`` (rows in consecutive blocks
        per prompt) or ``group_ids`` (one id per row, any order)."""
        r = _as_numpy(rewards)
        if r.ndim != 2:
            raise ValueError(f"rewards must have shape (N, {len(self.objective_names)}), but got {r.shape}")
        size, self._order = self._grouping(r.shape[0], num_generations, group_ids)
        if self._order is not None:
            r = r[self._order]
        self._num_generations = size
        self._stats = per_objective_step(r, self.strategy.num_objectives, num_generations=size,
                                         estimator=self.estimator, scale_rewards=self.scale_rewards, step=step, lr=lr)
        self.record = None
        return self._unsort(torch.as_tensor(self._stats.advantages, dtype=torch.float32))

    def weigh(self, gram: GramFn | None = None) -> torch.Tensor:
        """The step's scalar advantages ``(N,)`` (float32, CPU, caller's row order, × the strategy's
        ``advantage_scale()``); ``self.record`` holds the decisions. ``gram`` (else the engine's slot) is called
        once with the per-objective advantages of :meth:`begin` when the strategy needs the Gram."""
        if self._stats is None:
            raise RuntimeError("StepEngine.weigh() needs begin() first (one begin() per step)")
        stats, self._stats = self._stats, None
        slot = gram if gram is not None else self.gram
        if slot is not None and self._order is not None:
            inner = slot

            def slot(adv):  # the caller's probe sees its own row order
                return inner(self._unsort(adv))

        adv, self.record = weigh_stats(
            stats, self.strategy, num_generations=self._num_generations, estimator=self.estimator,
            scale_rewards=self.scale_rewards, aggregation=self.aggregation, needs=self.needs,
            gram=slot if self.wants_gram else None,
        )
        return self._unsort(adv)

    def step(self, rewards, *, num_generations: int | None = None, group_ids=None, step: int = 0, lr: float = 0.0,
             gram: GramFn | None = None) -> StepOutput:
        """:meth:`begin` and :meth:`weigh` in one call (the policy update and :meth:`finish` follow)."""
        per_objective = self.begin(rewards, num_generations=num_generations, group_ids=group_ids, step=step, lr=lr)
        advantages = self.weigh(gram)
        return StepOutput(advantages, per_objective, self.record, self.metrics(self.record))

    def finish(
        self,
        *,
        clipped_advantage_weights: np.ndarray | torch.Tensor | None = None,
        validation_point: np.ndarray | None = None,
        validation_step: int | None = None,
    ) -> StepRecord:
        """After the policy update: the strategy's ``after_update`` with the post-update statistics (CTWA's clipped
        advantage weights ``(N,)`` in the caller's row order; a validation point ``(K,)``), then the interference
        monitor. Returns the completed record."""
        record = self.record
        if record is None:
            raise RuntimeError("StepEngine.finish() needs a weighed step (begin() and weigh() first)")
        if clipped_advantage_weights is not None and self._order is not None:
            clipped_advantage_weights = _as_numpy(clipped_advantage_weights)[self._order]
        finish_step(self.strategy, record, clipped_advantage_weights=clipped_advantage_weights,
                    validation_point=validation_point, validation_step=validation_step)
        record.traded_away = self.monitor.update(record.covariance, record.reward_means)
        return record

    def _grouping(self, n: int, num_generations, group_ids) -> tuple[int, np.ndarray | None]:
        if (num_generations is None) == (group_ids is None):
            raise ValueError("give exactly one of num_generations (rows grouped in consecutive blocks) and group_ids")
        if group_ids is None:
            if not isinstance(num_generations, (int, np.integer)) or num_generations < 1 or n % num_generations:
                raise ValueError(f"num_generations must be a positive integer dividing the {n} rows, but got "
                                 f"{num_generations!r}")
            return int(num_generations), None
        ids = np.asarray(group_ids)
        if ids.shape != (n,):
            raise ValueError(f"group_ids must have one entry per row ({n}), but has shape {ids.shape}")
        if n == 0:
            raise ValueError("the batch is empty")
        _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        if np.any(counts != counts[0]):
            raise ValueError(f"every prompt must have the same number of completions, but group sizes range from "
                             f"{counts.min()} to {counts.max()}; keep whole groups (disable filters that drop single "
                             "completions, such as rollout failures or partial groups)")
        order = np.argsort(inverse, kind="stable")  # each group's rows consecutive, in their original order
        return int(counts[0]), (None if np.array_equal(order, np.arange(n)) else order)

    def _unsort(self, x: torch.Tensor) -> torch.Tensor:
        if self._order is None:
            return x
        out = torch.empty_like(x)
        out[torch.as_tensor(self._order)] = x
        return out

    # -- logs -------------------------------------------------------------------------------------------------------
    def run_info(self) -> dict[str, Any]:
        """What ``run.json`` records about the engine: the strategy (name, repr, needs) and the estimator."""
        return {"strategy": {"name": self.strategy.name, "repr": repr(self.strategy), "needs": sorted(self.needs)},
                "advantage_estimator": self.estimator_name}

    def metrics(self, record: StepRecord | None = None) -> dict[str, float]:
        """Scalars to log for a step: ``weights/<objective>``, ``covariance/<objective>``, ``advantage_scale``,
        ``lr_scale`` and ``strategy/<metric>``."""
        record = record or self.record
        out: dict[str, float] = {}
        for name, w, c in zip(self.objective_names, record.weights, record.covariance):
            out[f"weights/{name}"] = float(w)
            out[f"covariance/{name}"] = float(c)
        out["advantage_scale"] = float(record.advantage_scale)
        out["lr_scale"] = float(record.lr_scale)
        for key, value in record.strategy_metrics.items():
            out[f"strategy/{key}"] = float(value)
        return out

    def log_line(self, record: StepRecord | None = None, *, step: int, rl_step: int | None = None,
                 timings: dict[str, float] | None = None, unscored: dict[str, int] | None = None) -> dict[str, Any]:
        """One ``steps.jsonl`` line (docs/trainer.md, "Run directory"); ``step`` is the step after the update."""
        record = record or self.record
        names = self.objective_names
        line: dict[str, Any] = {
            "step": step,
            "rl_step": rl_step,
            "weights": dict(zip(names, record.weights.tolist())),
            "rewards": dict(zip(names, record.reward_means.tolist())),
            "advantage_scale": record.advantage_scale,
            "lr_scale": record.lr_scale,
            "covariance": dict(zip(names, record.covariance.tolist())),
            "timings": dict(timings or {}),
            "lr": record.stats.lr,
            "unscored": dict(unscored or {}),
            "strategy": record.strategy_metrics,
        }
        if record.traded_away:
            line["traded_away"] = list(record.traded_away)
        if record.skip_reason:
            line["skip_reason"] = record.skip_reason
        return line

    # -- state ------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON types: the objective names, the strategy (name and state) and the monitor."""
        return {
            "objective_names": list(self.objective_names),
            "strategy": {"name": self.strategy.name, "state": self.strategy.state_dict()},
            "monitor": self.monitor.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (also the ``moalign_state.json`` of a checkpoint, which holds these keys);
        a different objective list or strategy is refused with the fix."""
        if not isinstance(state, dict) or not isinstance(state.get("strategy"), dict):
            raise ValueError("the moalign state must be a mapping with a 'strategy' entry (the state file is damaged "
                             "or was not written by moalign)")
        if state.get("objective_names") != self.objective_names:
            raise ValueError(
                f"the checkpoint was trained with objectives {state.get('objective_names')}, but this run has "
                f"{self.objective_names}; resume with the same objectives, in the same order"
            )
        if state["strategy"].get("name") != self.strategy.name:
            raise ValueError(
                f"the checkpoint was trained with strategy {state['strategy'].get('name')!r}, but this run uses "
                f"{self.strategy.name!r}; resume with the same strategy"
            )
        self.strategy.load_state_dict(state["strategy"].get("state"))
        self.monitor.load_state_dict(state.get("monitor", {}))

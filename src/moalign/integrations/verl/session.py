"""The plugin's state in verl's driver process: objectives, strategy, step counter, and what passes between hooks.

One :class:`MOSession` lives in the process that runs verl's trainer (the Ray ``TaskRunner``); the estimator and the
trainer hooks reach it through :func:`current_session`. It imports numpy, torch and moalign only -- never verl -- so
it is tested without verl and can move to moalign's step engine unchanged.

One RL step in verl (docs/verl.md has the diagram)::

    reward workers: MORewardManager scores each completion with the text objectives -> reward_extra_info columns
    driver, _compute_advantage: columns + response lengths -> rewards (N, K)  (length objectives scored here)
        -> stage(rewards, uids) -> verl's compute_advantage -> estimator "moalign" -> advantages()
           -> weigh():  moalign.rl.step.weigh_step on the rows grouped by prompt
    driver, _update_actor: verl's update, then [post-update log-probs: CTWA] -> finish()
    driver, _val_metrics_update: validation columns -> normalised point -> the strategy (next finish)

:func:`weigh` and :func:`finish` are the only two functions that call ``moalign.rl.step``; they are the seam where
the step engine will plug in.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ... import weighting
from ...evaluation import eval_metric_name, normalised_point
from ...objectives import Objective, build_objectives
from ...rl.step import StepRecord, finish_step, weigh_step
from ...rundir import atomic_write_json
from ...weighting.base import STRATEGIES, accepted_parameters

__all__ = [
    "AGGREGATIONS",
    "ESTIMATORS",
    "GRADIENT_NEEDS",
    "LENGTH_KEY",
    "MOConfig",
    "MOSession",
    "STATE_FILE",
    "clipped_advantage_weights",
    "current_session",
    "finish",
    "gradient_free_strategies",
    "group_order",
    "set_session",
    "weigh",
]

#: What a strategy may need that only the actor's backward pass can give; verl offers no hook for it (docs/verl.md).
GRADIENT_NEEDS = frozenset({"gram", "losses"})
#: Per-objective estimators: verl's own functions, run once per objective (moalign name -> verl registry name).
ESTIMATORS = {"grpo": "grpo", "rloo": "rloo"}
#: ``normalize_then_sum`` is verl's GDPO (per-objective normalisation, weighted sum, token-level whitening);
#: ``sum_then_normalize`` is verl's GRPO/RLOO on the weighted reward.
AGGREGATIONS = ("normalize_then_sum", "sum_then_normalize")
#: The reward_extra_info column holding the response length in tokens (written by MORewardManager).
LENGTH_KEY = "length"
#: The file the strategy and objective state go to, inside verl's ``global_step_<N>`` checkpoint folder.
STATE_FILE = "moalign_state.json"
_RESERVED = frozenset({"score", "acc", "reward", "pred", LENGTH_KEY})  # keys verl or this plugin already use


def gradient_free_strategies() -> list[str]:
    """Registered strategies whose ``needs`` ask for no per-objective gradient statistics (they run in verl)."""
    return sorted(name for name, cls in STRATEGIES.items() if not (set(cls.needs) & GRADIENT_NEEDS))


@dataclass
class MOConfig:
    """The ``algorithm.moalign`` block of a verl config (docs/verl.md lists every key).

    Attributes:
        objectives: registry names, ``module:callable`` paths or ``{name: ..., <parameter>: ...}`` mappings, in
            weight order.
        strategy, strategy_params: a moalign weighting strategy and its parameters (docs/strategies/).
        estimator: ``grpo`` or ``rloo``: verl's own estimator, applied to each objective.
        aggregation: ``normalize_then_sum`` (GDPO, default) or ``sum_then_normalize``.
        max_response_length: tokens; the normalised length of validation points is ``1 − length/this``.
    """

    objectives: list[Any] = field(default_factory=lambda: ["accuracy", "conciseness", "clarity"])
    strategy: str = "fixed"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    estimator: str = "grpo"
    aggregation: str = "normalize_then_sum"
    max_response_length: int | None = None

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any] | None) -> MOConfig:
        """Build from ``algorithm.moalign`` (a dict or an OmegaConf node); unknown keys are an error."""
        block = _plain(block) or {}
        if not isinstance(block, dict):
            raise ValueError(f"algorithm.moalign must be a mapping, but got {block!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(block) - known)
        if unknown:
            raise ValueError(f"algorithm.moalign has unknown key(s) {unknown}; valid keys: {', '.join(sorted(known))}")
        out = cls(**block)
        if out.estimator not in ESTIMATORS:
            raise ValueError(f"algorithm.moalign.estimator must be one of {', '.join(ESTIMATORS)} (verl's own "
                             f"estimators, run per objective), but got {out.estimator!r}")
        if out.aggregation not in AGGREGATIONS:
            raise ValueError(f"algorithm.moalign.aggregation must be one of {', '.join(AGGREGATIONS)}, but got "
                             f"{out.aggregation!r}")
        if not isinstance(out.strategy_params, dict):
            raise ValueError(f"algorithm.moalign.strategy_params must be a mapping, but got {out.strategy_params!r}")
        return out


def _plain(value: Any) -> Any:
    """An OmegaConf node as plain Python (without importing omegaconf), anything else unchanged."""
    if hasattr(value, "_get_node") or type(value).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf  # verl's dependency; only reached with a verl config

        return OmegaConf.to_container(value, resolve=True)
    return value


def build_strategy(config: MOConfig, names: Sequence[str]) -> weighting.WeightingStrategy:
    """The strategy, built once; refuses those that need per-objective gradients (the list comes from ``needs``)."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"unknown weighting strategy {config.strategy!r}; strategies that run in verl: "
                         f"{', '.join(gradient_free_strategies())}")
    params = dict(config.strategy_params)
    # verl's optimizer lives in the actor workers, out of the plugin's reach: a learning-rate multiplier cannot be
    # applied, so a strategy that offers a placement gets the advantages by default and refuses the learning rate.
    if "apply_to" in accepted_parameters(config.strategy):
        if params.get("apply_to", "advantage") == "lr":
            raise ValueError(f"strategy_params.apply_to=lr is not available under verl (the optimizer runs in the "
                             f"actor workers, which the plugin cannot reach); use apply_to=advantage or reward")
        params.setdefault("apply_to", "advantage")
    strategy = weighting.build(config.strategy, len(names), objective_names=list(names), **params)
    needs = set(strategy.needs) & GRADIENT_NEEDS
    if needs:
        raise ValueError(
            f"strategy {config.strategy!r} needs per-objective policy gradients ({', '.join(sorted(needs))}), which "
            f"verl computes only inside the actor's backward pass, with no extension point to read them; under verl "
            f"use one of: {', '.join(gradient_free_strategies())} (or moalign's TRL trainer for {config.strategy!r})"
        )
    return strategy


def group_order(index: Sequence[Any]) -> tuple[np.ndarray, int]:
    """``(order, G)``: a stable permutation putting the rows of each prompt (same ``uid``) in consecutive blocks of
    ``G``, the order moalign's estimators expect. Every prompt must have the same number of rows.

    >>> order, g = group_order(["b", "a", "b", "a"])
    >>> order.tolist(), g
    ([0, 2, 1, 3], 2)
    """
    first: dict[Any, int] = {}
    for i, uid in enumerate(index):
        first.setdefault(uid, len(first))
    groups = np.array([first[uid] for uid in index], dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups)
    if sizes.size == 0:
        raise ValueError("the batch is empty")
    if not np.all(sizes == sizes[0]):
        raise ValueError(f"every prompt (uid) needs the same number of responses for moalign's estimator, but the "
                         f"batch has group sizes {sorted(set(sizes.tolist()))}; disable filters that drop single "
                         f"responses (rollout failures, partial groups)")
    return order, int(sizes[0])


# -- the seam to moalign.rl ---------------------------------------------------------------------------------------
def weigh(rewards: np.ndarray, strategy: weighting.WeightingStrategy, *, num_generations: int, estimator: str,
          scale_rewards: str, aggregation: str, step: int) -> tuple[np.ndarray, StepRecord]:
    """One step's scalar advantages ``(N,)`` (rows grouped by prompt) and its record: :func:`moalign.rl.step.weigh_step`."""
    adv, record = weigh_step(rewards, strategy, num_generations=num_generations, estimator=estimator,
                             scale_rewards=scale_rewards, aggregation=aggregation, step=step)
    return adv.double().numpy(), record


def finish(strategy: weighting.WeightingStrategy, record: StepRecord, *, clipped: np.ndarray | None,
           validation: tuple[np.ndarray, int] | None) -> StepRecord:
    """After the update: :func:`moalign.rl.step.finish_step`."""
    point, step = validation if validation is not None else (None, None)
    return finish_step(strategy, record, clipped_advantage_weights=clipped, validation_point=point,
                       validation_step=step)


def clipped_advantage_weights(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                              mask: torch.Tensor, clip_low: float, clip_high: float) -> np.ndarray:
    """CTWA's per-completion weight ``mean_t Â·ρ·1[clip inactive]`` over response tokens, ``ρ = π_new/π_old``.

    Shapes ``(N, L)``; ``advantages`` are the token advantages the update used. The clip is inactive unless
    ``ρ > 1 + clip_high`` with ``Â > 0`` or ``ρ < 1 − clip_low`` with ``Â < 0`` (PPO's clipped branch).
    """
    mask = mask.to(torch.float64)
    ratio = torch.exp((new_logp.double() - old_logp.double()).clamp(-20.0, 20.0))
    adv = advantages.double()
    clipped = ((ratio > 1 + clip_high) & (adv > 0)) | ((ratio < 1 - clip_low) & (adv < 0))
    contrib = adv * ratio * (~clipped).double() * mask
    return (contrib.sum(1) / mask.sum(1).clamp(min=1.0)).numpy()


class MOSession:
    """Objectives, strategy and step state of one verl run (one per driver process; see the module docstring)."""

    def __init__(self, config: MOConfig):
        self.config = config
        self.objectives: list[Objective] = build_objectives(config.objectives, field="algorithm.moalign.objectives")
        self.names = [obj.name for obj in self.objectives]
        clash = sorted(set(self.names) & _RESERVED)
        if clash:
            raise ValueError(f"objective name(s) {clash} clash with reward keys verl or the plugin use "
                             f"({', '.join(sorted(_RESERVED))}); rename the objective")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"algorithm.moalign.objectives has repeated names {self.names}")
        self.strategy = build_strategy(config, self.names)
        # Length objectives (conciseness: a running mean of lengths) are scored here, from verl's response mask, so
        # that their state is one state, checkpointed with the strategy; the others in verl's reward workers.
        self.length_objectives = [i for i, obj in enumerate(self.objectives) if eval_metric_name(obj) == LENGTH_KEY]
        self.step = 0
        self.record: StepRecord | None = None
        self._staged: tuple[np.ndarray, list[Any]] | None = None
        self._pending: tuple[StepRecord, np.ndarray] | None = None  # (record, order) awaiting finish()
        self._validation: tuple[np.ndarray, int] | None = None

    @property
    def needs(self) -> frozenset[str]:
        return frozenset(self.strategy.needs)

    # -- rewards ----------------------------------------------------------------------------------------------------
    def reward_objectives(self) -> list[Objective]:
        """The objectives verl's reward workers score (all but the length objectives)."""
        return [obj for i, obj in enumerate(self.objectives) if i not in self.length_objectives]

    def rewards_from_columns(self, columns: Mapping[str, Sequence[Any]], lengths: Sequence[int], *,
                             training: bool = True) -> np.ndarray:
        """``(N, K)`` rewards: reward-worker objectives from their columns (None -> NaN), length objectives scored
        here from the response lengths in tokens (their running state moves only when ``training``)."""
        n = len(lengths)
        out = np.full((n, len(self.objectives)), np.nan)
        for k, obj in enumerate(self.objectives):
            if k in self.length_objectives:
                previous, obj.training = obj.training, training
                try:
                    scores = obj([""] * n, completion_ids=[range(int(v)) for v in lengths])
                finally:
                    obj.training = previous
            else:
                if obj.name not in columns:
                    raise ValueError(f"reward column {obj.name!r} is missing (columns: {sorted(columns)}); set "
                                     "reward.reward_manager.name=moalign so verl's reward workers score the objectives")
                scores = columns[obj.name]
            if len(scores) != n:
                raise ValueError(f"objective {obj.name!r} has {len(scores)} scores for {n} responses")
            out[:, k] = [np.nan if v is None else float(v) for v in scores]
        return out

    def stage(self, rewards: np.ndarray, uids: Sequence[Any]) -> None:
        """Hand this batch's rewards ``(N, K)`` to the estimator that verl's ``compute_advantage`` calls next."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if rewards.ndim != 2 or rewards.shape[1] != len(self.names) or rewards.shape[0] != len(uids):
            raise ValueError(f"staged rewards must have shape ({len(uids)}, {len(self.names)}), got {rewards.shape}")
        self._staged = (rewards, list(uids))

    def take_staged(self, uids: Sequence[Any]) -> np.ndarray:
        """The staged rewards, checked against the batch verl passes the estimator (same uids, same order)."""
        if self._staged is None:
            raise ValueError(
                "moalign's estimator got no per-objective rewards for this batch: run verl's v1 trainer with "
                "trainer.v1.trainer_mode=moalign (verl passes reward columns to an estimator only under the name "
                "'gdpo', and the v1 trainer not even then; the moalign trainer hands them over). See docs/verl.md.")
        rewards, staged_uids = self._staged
        self._staged = None
        if [str(u) for u in staged_uids] != [str(u) for u in uids]:
            raise ValueError("the staged rewards belong to another batch (uids differ from the estimator's index)")
        return rewards

    # -- one step ---------------------------------------------------------------------------------------------------
    def advantages(self, rewards: np.ndarray, index: Sequence[Any], *, norm_by_std: bool) -> tuple[np.ndarray, float]:
        """Scalar advantages ``(N,)`` in the batch's row order and the strategy's advantage scale.

        Finishes the previous step first if the trainer has not (e.g. the estimator used on its own).
        """
        if self._pending is not None:
            self.finish_step(None)
        order, g = group_order(index)
        adv, record = weigh(rewards[order], self.strategy, num_generations=g,
                            estimator=f"verl_{self.config.estimator}",
                            scale_rewards="group" if norm_by_std else "none",
                            aggregation=self.config.aggregation, step=self.step)
        out = np.empty_like(adv)
        out[order] = adv
        self.record = record
        self._pending = (record, order)
        return out, float(record.advantage_scale)

    def finish_step(self, clipped: np.ndarray | None) -> None:
        """After verl's actor update: the strategy's ``after_update`` with CTWA's post-update weights (batch row
        order) and the latest validation point, if one arrived since the previous step."""
        if self._pending is None:
            return
        record, order = self._pending
        self._pending = None
        if clipped is not None:
            clipped = np.asarray(clipped, dtype=np.float64)[order]
        validation, self._validation = self._validation, None
        finish(self.strategy, record, clipped=clipped, validation=validation)
        self.step += 1

    def observe_validation(self, columns: Mapping[str, Sequence[Any]], step: int) -> np.ndarray | None:
        """A validation pass's per-sample columns (verl's ``reward_extra_infos_dict``) -> the normalised point
        ``(K,)``. At step 0 it is the initial policy's point (the strategy's reference); later it goes to the
        strategy with the next :meth:`finish_step`. Returns None when the strategy does not use validation."""
        if "validation" not in self.needs:
            return None
        metrics = {}
        for obj in self.objectives:
            key = eval_metric_name(obj)
            values = [float(v) for v in columns.get(key, []) if v is not None and not _isnan(v)]
            if not values:
                raise ValueError(f"validation has no {key!r} values (columns: {sorted(columns)}); set "
                                 "reward.reward_manager.name=moalign")
            metrics[key] = float(np.mean(values))
        if self.length_objectives and not self.config.max_response_length:
            raise ValueError("algorithm.moalign.max_response_length is needed to normalise the validation length")
        point = normalised_point(metrics, self.objectives, self.config.max_response_length or 1)
        if step == 0:
            self.strategy.set_reference_point(point, 0)
        else:
            self._validation = (point, int(step))
        return point

    def metrics(self) -> dict[str, float]:
        """The last step's numbers for verl's logger (``moalign/...`` keys; docs/verl.md lists them)."""
        rec = self.record
        if rec is None:
            return {}
        out: dict[str, float] = {"moalign/advantage_scale": rec.advantage_scale,
                                 "moalign/skipped": float(rec.skip_reason is not None)}
        for i, name in enumerate(self.names):
            out[f"moalign/weight/{name}"] = float(rec.weights[i])
            out[f"moalign/reward/{name}"] = float(rec.reward_means[i])
            out[f"moalign/covariance/{name}"] = float(rec.covariance[i])
        for key, value in rec.strategy_metrics.items():
            out[f"moalign/{key}"] = float(value)
        return out

    # -- state ------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.config.strategy,
            "objectives": self.names,
            "step": self.step,
            "strategy_state": self.strategy.state_dict(),
            "objective_state": {obj.name: obj.state_dict() for obj in self.objectives},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, mine in (("strategy", self.config.strategy), ("objectives", self.names)):
            if state.get(key) != mine:
                raise ValueError(f"the checkpoint's moalign state has {key} {state.get(key)!r} but this run has "
                                 f"{mine!r}; resume with the same algorithm.moalign settings")
        self.strategy.load_state_dict(state["strategy_state"])
        for obj in self.objectives:
            obj.load_state_dict(state["objective_state"][obj.name])
        self.step = int(state["step"])

    def save(self, folder: str | os.PathLike) -> str:
        """Write the state into a verl checkpoint folder (``global_step_<N>/moalign_state.json``)."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, STATE_FILE)
        atomic_write_json(path, self.state_dict())
        return path

    def load(self, folder: str | os.PathLike) -> None:
        path = os.path.join(folder, STATE_FILE)
        if not os.path.exists(path):
            raise ValueError(f"{path} does not exist: the checkpoint was not written by a moalign run; resume from "
                             "a checkpoint of this run or start without resuming (trainer.resume_mode=disable)")
        with open(path) as f:
            self.load_state_dict(json.load(f))


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


_SESSION: MOSession | None = None


def set_session(session: MOSession | None) -> None:
    """Install the driver's session (the moalign trainer does it once at start-up)."""
    global _SESSION
    _SESSION = session


def current_session(algorithm_config: Any = None) -> MOSession:
    """The driver's session; built from ``algorithm_config.moalign`` on first use when no trainer installed one."""
    global _SESSION
    if _SESSION is None:
        block = None
        if algorithm_config is not None:
            block = algorithm_config.get("moalign", None) if hasattr(algorithm_config, "get") else None
        _SESSION = MOSession(MOConfig.from_mapping(block))
    return _SESSION

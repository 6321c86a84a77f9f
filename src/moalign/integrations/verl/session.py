"""The plugin's state in verl's driver process: objectives, the step engine, step counter, and what passes between
hooks.

One :class:`MOSession` lives in the process that runs verl's trainer (the Ray ``TaskRunner``); the estimator and the
trainer hooks reach it through :func:`current_session`. The session holds one :class:`~moalign.rl.engine.StepEngine`
(the one TRL's trainer uses too), built once at start-up; the engine computes the per-objective advantages, weighs
them with the strategy, keeps the step record and the interference monitor, and owns the strategy's state. The
session adds only what is verl's: reading reward columns, uids and validation columns, scoring length objectives,
the step counter and the checkpoint file. It never imports verl at import time, so it is tested without verl; only
the per-objective estimator (:func:`verl_estimator`) calls verl's own ``grpo``/``rloo`` when a step runs.

One RL step in verl (docs/verl.md has the diagram)::

    reward workers: MORewardManager scores each completion with the text objectives -> reward_extra_info columns
    driver, _compute_advantage: columns + response lengths -> rewards (N, K)  (length objectives scored here)
        -> stage(rewards, uids) -> verl's compute_advantage -> estimator "moalign" -> advantages()
           -> engine.begin(rewards, group_ids=uids) (verl's estimator per objective, once) -> engine.weigh()
    driver, _update_actor: verl's update, then [post-update log-probs: CTWA] -> finish_step() -> engine.finish()
    driver, _val_metrics_update: validation columns -> normalised point -> engine (next finish_step)
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
from ...rl import post_update
from ...rl.engine import EstimatorFn, StepEngine
from ...rl.step import StepRecord
from ...rundir import atomic_write_json
from ...weighting.base import STRATEGIES, WeightingStrategy, accepted_parameters

__all__ = [
    "AGGREGATIONS",
    "ESTIMATORS",
    "GRADIENT_NEEDS",
    "LENGTH_KEY",
    "MOConfig",
    "MOSession",
    "STATE_FILE",
    "STATE_FORMAT_VERSION",
    "clipped_advantage_weights",
    "current_session",
    "gradient_free_strategies",
    "set_session",
    "verl_estimator",
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
#: The file the engine and objective state go to, inside verl's ``global_step_<N>`` checkpoint folder.
STATE_FILE = "moalign_state.json"
#: 2: the engine's state (``objective_names``, ``strategy``, ``monitor``) + ``step`` + ``objectives``. The plugin's
#: first files had no version (strategy name, ``strategy_state``, ``objective_state``); they still load.
STATE_FORMAT_VERSION = 2
_RESERVED = frozenset({"score", "acc", "reward", "pred", LENGTH_KEY})  # keys verl or this plugin already use


def gradient_free_strategies() -> list[str]:
    """Registered strategies whose ``needs`` ask for no per-objective gradient statistics (they run in verl)."""
    return sorted(name for name in STRATEGIES if not (weighting.needs_for(name) & GRADIENT_NEEDS))


def verl_estimator(verl_name: str) -> EstimatorFn:
    """verl's estimator ``verl_name`` (``grpo`` or ``rloo``: ``ε = 1e-6``, grouping by prompt) as a step-engine
    estimator: run on each objective's scored rows (rows grouped in consecutive blocks of ``G``), or on the weighted
    reward. It imports verl when first called, not before."""

    def estimator(r: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
        from verl.trainer.ppo import core_algos

        if scale_rewards not in ("group", "none"):
            raise ValueError(f"verl's {verl_name} normalises per prompt or not at all (algorithm."
                             f"norm_adv_by_std_in_grpo), but scale_rewards={scale_rewards!r}")
        fn = core_algos.get_adv_estimator_fn(verl_name)
        columns = r.unsqueeze(1) if r.ndim == 1 else r
        groups = np.arange(columns.shape[0]) // num_generations
        out = torch.full_like(columns, float("nan"))
        for k in range(columns.shape[1]):
            scored = ~torch.isnan(columns[:, k])
            if not scored.any():
                continue
            rows = columns[scored, k].unsqueeze(1)  # (n, 1): one "token" holding the outcome reward
            kwargs = {"norm_adv_by_std_in_grpo": scale_rewards == "group"} if verl_name == "grpo" else {}
            adv, _ = fn(token_level_rewards=rows, response_mask=torch.ones_like(rows),
                        index=groups[scored.numpy()], config=None, **kwargs)
            out[scored, k] = adv[:, 0]
        return out.reshape(r.shape)

    estimator.__name__ = estimator.__qualname__ = f"verl_{verl_name}"
    return estimator


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


def strategy_params(config: MOConfig) -> dict[str, Any]:
    """The strategy's parameters under verl, checked before anything is built: strategies that need per-objective
    gradients are refused (from :func:`moalign.weighting.needs_for`, so the strategy is built once, by the engine),
    and a learning-rate placement is refused."""
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
    needs = weighting.needs_for(config.strategy, params) & GRADIENT_NEEDS
    if needs:
        raise ValueError(
            f"strategy {config.strategy!r} needs per-objective policy gradients ({', '.join(sorted(needs))}), which "
            f"verl computes only inside the actor's backward pass, with no extension point to read them; under verl "
            f"use one of: {', '.join(gradient_free_strategies())} (or moalign's TRL trainer for {config.strategy!r})"
        )
    return params


def clipped_advantage_weights(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                              mask: torch.Tensor, clip_low: float, clip_high: float) -> np.ndarray:
    """CTWA's per-completion weight ``mean_t Â·ρ·1[clip inactive]`` over response tokens, ``ρ = π_new/π_old``.

    Shapes ``(N, L)``; ``advantages`` are the token advantages the update used. The clip is inactive unless
    ``ρ > 1 + clip_high`` with ``Â > 0`` or ``ρ < 1 − clip_low`` with ``Â < 0`` (PPO's clipped branch).
    """
    # the TRL trainer's computation, in float64 and with |log ρ| ≤ 20 so that exp cannot overflow
    old_logp = old_logp.double()
    new_logp = old_logp + (new_logp.double() - old_logp).clamp(-20.0, 20.0)
    return post_update.clipped_advantage_weights(new_logp, old_logp, advantages.double(), mask, clip_low,
                                                 clip_high).numpy()


class MOSession:
    """Objectives, step engine and step state of one verl run (one per driver process; see the module docstring)."""

    def __init__(self, config: MOConfig):
        self.config = config
        self.objectives: list[Objective] = build_objectives(config.objectives, field="algorithm.moalign.objectives")
        models = [obj.name for obj in self.objectives if hasattr(obj, "reward_model")]  # issue 28: refused here
        if models:
            raise ValueError(
                f"algorithm.moalign.objectives: {models} are reward-model objectives, which the verl plugin does not "
                "load (its objectives are scored from response text in verl's reward workers). verl's own reward-model"
                " worker (reward_model.enable=True reward_model.model.path=PATH) writes one summed rm_scores, which the"
                " plugin's per-objective rewards do not read; to feed a reward model's scores to moalign in verl, score"
                " them in a reward function of your own (a module:callable entry in algorithm.moalign.objectives, one "
                "per head, returning one score per response), or train with moalign's MOGRPOTrainer, which loads "
                "reward models itself (docs/objectives.md, Reward models)")
        self.names = [obj.name for obj in self.objectives]
        clash = sorted(set(self.names) & _RESERVED)
        if clash:
            raise ValueError(f"objective name(s) {clash} clash with reward keys verl or the plugin use "
                             f"({', '.join(sorted(_RESERVED))}); rename the objective")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"algorithm.moalign.objectives has repeated names {self.names}")
        self.engine = StepEngine(self.names, config.strategy, strategy_params(config),
                                 estimator=verl_estimator(ESTIMATORS[config.estimator]),
                                 aggregation=config.aggregation)
        # Length objectives (conciseness: a running mean of lengths) are scored here, from verl's response mask, so
        # that their state is one state, checkpointed with the strategy; the others in verl's reward workers.
        self.length_objectives = [i for i, obj in enumerate(self.objectives) if eval_metric_name(obj) == LENGTH_KEY]
        self.step = 0
        self._staged: tuple[np.ndarray, list[Any]] | None = None
        self._weighed = False  # a step was weighed and awaits finish_step()
        self._validation: tuple[np.ndarray, int] | None = None

    @property
    def strategy(self) -> WeightingStrategy:
        """The engine's weighting strategy."""
        return self.engine.strategy

    @property
    def needs(self) -> frozenset[str]:
        return self.engine.needs

    @property
    def record(self) -> StepRecord | None:
        """The engine's record of the current (or last) step."""
        return self.engine.record

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
        """Scalar advantages ``(N,)`` in the batch's row order (``index``: each row's ``uid``) and the strategy's
        advantage scale, from the engine. ``norm_by_std`` is verl's ``algorithm.norm_adv_by_std_in_grpo``, read at
        each call as verl's own estimators do.

        Finishes the previous step first if the trainer has not (e.g. the estimator used on its own).
        """
        if self._weighed:
            self.finish_step(None)
        self.engine.scale_rewards = "group" if norm_by_std else "none"
        self.engine.begin(rewards, group_ids=np.asarray(index, dtype=object), step=self.step)
        adv = self.engine.weigh()
        self._weighed = True
        return adv.double().numpy(), float(self.engine.record.advantage_scale)

    def finish_step(self, clipped: np.ndarray | None) -> None:
        """After verl's actor update: the engine's ``finish`` with CTWA's post-update weights (batch row order) and
        the latest validation point, if one arrived since the previous step."""
        if not self._weighed:
            return
        self._weighed = False
        point, step = self._validation if self._validation is not None else (None, None)
        self._validation = None
        self.engine.finish(clipped_advantage_weights=clipped, validation_point=point, validation_step=step)
        self.step += 1

    def observe_validation(self, columns: Mapping[str, Sequence[Any]], step: int) -> np.ndarray | None:
        """A validation pass's per-sample columns (verl's ``reward_extra_infos_dict``) -> the normalised point
        ``(K,)``. At step 0 it is the initial policy's point (the strategy's reference); later it goes to the
        engine with the next :meth:`finish_step`. Returns None when the strategy does not use validation."""
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
            self.engine.set_reference_point(point, 0)
        else:
            self._validation = (point, int(step))
        return point

    def metrics(self) -> dict[str, float]:
        """The current step's numbers for verl's logger: the engine's metrics (the keys TRL's trainer logs) under
        ``moalign/``, plus each objective's mean reward, whether the strategy skipped, and the objectives the
        interference monitor flagged (after :meth:`finish_step`). docs/verl.md lists them."""
        rec = self.engine.record
        if rec is None:
            return {}
        out = {f"moalign/{key}": value for key, value in self.engine.metrics(rec).items()}
        out["moalign/skipped"] = float(rec.skip_reason is not None)
        for name, mean in zip(self.names, rec.reward_means):
            out[f"moalign/reward/{name}"] = float(mean)
            out[f"moalign/traded_away/{name}"] = float(name in rec.traded_away)
        return out

    # -- state ------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The engine's state (objective names, strategy, interference monitor), the step counter and the objectives'
        state (conciseness's running mean)."""
        return {
            "format_version": STATE_FORMAT_VERSION,
            **self.engine.state_dict(),
            "step": self.step,
            "objectives": {obj.name: obj.state_dict() for obj in self.objectives},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        state = _upgrade_state(state)
        try:
            self.engine.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"{exc} (under verl: resume with the same algorithm.moalign settings)") from exc
        for obj in self.objectives:
            obj.load_state_dict(state["objectives"][obj.name])
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


def _upgrade_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state file of any version as the current format; the plugin's first files (no ``format_version``: strategy
    name, ``strategy_state``, objective list, ``objective_state``) load with an empty interference monitor."""
    if not isinstance(state, Mapping):
        raise ValueError(f"the moalign state must be a mapping, but got {type(state).__name__} (the file is damaged)")
    version = state.get("format_version")
    if version is None and "strategy_state" in state:
        return {"format_version": STATE_FORMAT_VERSION, "objective_names": state.get("objectives"),
                "strategy": {"name": state.get("strategy"), "state": state["strategy_state"]},
                "step": state.get("step", 0), "objectives": state.get("objective_state", {})}
    if version != STATE_FORMAT_VERSION:
        raise ValueError(f"the moalign state has format_version {version!r}, but this moalign reads "
                         f"{STATE_FORMAT_VERSION} (and the unversioned files of the first plugin); resume with the "
                         "moalign version that wrote the checkpoint")
    return dict(state)


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

"""One multi-objective RL step, top to bottom, without any training framework.

A trainer (TRL's here; a verl or OpenRLHF adapter the same way) gathers the per-objective rewards of one generation
batch and calls :func:`weigh_step` once, before the policy update, then :func:`finish_step` once, after it::

    rewards (N, K) ──► per-objective advantages A (N, K)  (estimator: grpo | rloo | reinforce)
                   ──► [Gram G (K, K), losses (K,) = gram(A)]     only when the strategy needs them
                   ──► strategy.before_update(stats)              weights for this batch
                   ──► scalar rewards s = strategy.scalarize(r)   (sum_then_normalize)
                       or s = strategy.scalarize(A)               (normalize_then_sum: GDPO; mo_grpo: MO-GRPO)
                   ──► scalar advantages (N,) × strategy.advantage_scale()
                   ──► StepRecord (weights, reward means, covariance, skip reason, strategy metrics)
    policy update (the trainer's)
    finish_step ──► strategy.after_update(stats)  (post-update statistics, validation point) ──► record metrics

``sum_then_normalize`` is TRL's default aggregation: the weighted reward is normalised by the estimator.
``normalize_then_sum`` is GDPO (*GDPO: Group reward-Decoupled Normalization Policy Optimization*, Liu et al., 2026,
arXiv 2601.05242; TRL's ``multi_objective_aggregation="normalize_then_sum"``): each objective is normalised by the
estimator first, the strategy combines the normalised rewards, and the result is whitened over the batch,
``(s − mean s) / (std s + 1e-4)``. With ``estimator="grpo"`` and ``scale_rewards="group"`` both are TRL's computation.
``mo_grpo`` is MO-GRPO (*MO-GRPO: Mitigating Reward Hacking of Group Relative Policy Optimization on Multi-Objective
Problems*, Ichihara et al., 2025, arXiv 2509.22047): ``normalize_then_sum`` without the final whitening, ``A = s``.
Every estimator's per-objective advantages sum to 0 over each prompt's group (over the batch for ``reinforce``), so
``mean s = 0`` and the whitening only divides by ``std s``: GDPO's advantages are MO-GRPO's times one positive number
per step (docs/strategies/mo_grpo.md derives it; moalign ships MO-GRPO as this option, not as a strategy).

The module depends on numpy and torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..weighting.base import StepStats, WeightingStrategy
from .advantages import EPS, compute_advantages, nanstd
from .covariance import within_group_covariance

__all__ = [
    "AGGREGATIONS", "GramFn", "StepRecord", "StepSkipped", "finish_step", "per_objective_step", "weigh_stats",
    "weigh_step",
]

AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum", "mo_grpo")

#: ``gram(advantages)``: the trainer's probe. Takes the gathered per-objective advantages ``(N, K)`` (float32, 0 where
#: unscored) and returns the Gram matrix ``(K, K)`` of the per-objective policy gradients, or ``(gram, losses)`` with
#: the ``(K,)`` per-objective surrogate losses. Both already reduced across ranks. When the statistics cannot be used
#: it raises :class:`StepSkipped` (or any exception with a ``reason`` string, e.g. ``moalign.rl.gram.GramSkipped``):
#: the strategy then keeps its weights and the record's ``skip_reason`` is that reason.
GramFn = Callable[[torch.Tensor], "np.ndarray | torch.Tensor | tuple[Any, Any]"]


class StepSkipped(RuntimeError):
    """Raised by a :data:`GramFn` whose statistics cannot be used this step; ``reason`` is logged."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class StepRecord:
    """Everything one RL step decided, for logs (``steps.jsonl``) and for :func:`finish_step`.

    Attributes:
        step: the step index the trainer passed.
        weights: ``(K,)`` the weights that scalarized this batch.
        reward_means: ``(K,)`` per-objective nan-mean rewards.
        advantage_scale: the strategy's multiplier on this step's advantages.
        covariance: ``(K,)`` within-prompt covariance of each objective's reward with the final advantage.
        skip_reason: why the strategy kept its previous weights this step (None when it updated or has nothing to
            update).
        strategy_metrics: the strategy's scalars (refreshed by :func:`finish_step`).
        stats: the :class:`~moalign.weighting.StepStats` the strategy saw (``gram``, ``losses``,
            ``scalarized_advantages``...).
        lr_scale: the strategy's learning-rate multiplier on this step's optimizer steps (set by the engine).
        traded_away: objectives the interference monitor flagged after this step (set by the engine).
    """

    step: int
    weights: np.ndarray
    reward_means: np.ndarray
    advantage_scale: float
    covariance: np.ndarray
    skip_reason: str | None
    strategy_metrics: dict[str, float]
    stats: StepStats = field(repr=False)
    lr_scale: float = 1.0
    traded_away: list[str] = field(default_factory=list)


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _skip_reason(stats: StepStats) -> str:
    if not np.any(stats.advantages != 0):
        return "no objective's reward varies within a prompt (every advantage is 0)"
    if stats.gram is not None:
        gram = np.asarray(stats.gram, dtype=np.float64)
        if not np.all(np.isfinite(gram)):
            return "non-finite Gram matrix"
        if not np.any(np.diag(gram) > 0):
            return "all-zero Gram matrix although rewards vary (no objective has a policy gradient on the probed " \
                   "parameters)"
    return "non-finite or degenerate statistics"


def per_objective_step(
    rewards: np.ndarray | torch.Tensor,
    num_objectives: int,
    *,
    num_generations: int,
    estimator: str = "grpo",
    scale_rewards: str = "group",
    step: int = 0,
    lr: float = 0.0,
) -> StepStats:
    """The first half of :func:`weigh_step`: the step's :class:`StepStats` with the per-objective advantages
    ``(N, K)``, computed once (``stats.advantages``; 0 where unscored)."""
    r = torch.as_tensor(_as_numpy(rewards), dtype=torch.float32)  # (N, K)
    if r.ndim != 2 or r.shape[1] != num_objectives:
        raise ValueError(f"rewards must have shape (N, {num_objectives}) (one column per objective), but "
                         f"got {tuple(r.shape)}")
    mo_adv = compute_advantages(r, estimator, num_generations, scale_rewards)  # (N, K), 0 where unscored
    return StepStats(
        step=int(step),
        rewards=_as_numpy(r),
        group_ids=np.arange(r.shape[0]) // num_generations,
        advantages=_as_numpy(mo_adv),
        lr=float(lr),
    )


def weigh_stats(
    stats: StepStats,
    strategy: WeightingStrategy,
    *,
    num_generations: int,
    estimator: str = "grpo",
    scale_rewards: str = "group",
    aggregation: str = "sum_then_normalize",
    needs: frozenset[str] | None = None,
    gram: GramFn | None = None,
) -> tuple[torch.Tensor, StepRecord]:
    """The second half of :func:`weigh_step`, on the stats of :func:`per_objective_step`: the Gram (when the
    strategy needs it), ``before_update``, the scalarization and the scalar advantages. ``needs`` defaults to
    ``strategy.needs``."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"multi_objective_aggregation must be one of {', '.join(AGGREGATIONS)}, but got "
                         f"{aggregation!r}")
    r = torch.as_tensor(stats.rewards, dtype=torch.float32)  # (N, K), exact: float32 -> float64 -> float32
    mo_adv = torch.as_tensor(stats.advantages, dtype=torch.float32)
    n = r.shape[0]
    unscored = torch.isnan(r)  # (N, K)
    needs = strategy.needs if needs is None else needs
    skip_reason = None
    if bool(unscored.all()):
        skip_reason = "no completion could be scored"
    else:
        if "gram" in needs or "losses" in needs:
            if gram is None:
                raise ValueError(f"strategy {strategy.name!r} needs per-objective gradient statistics; pass gram=")
            try:
                out = gram(mo_adv)
            except Exception as exc:  # noqa: BLE001 - only the probe's own "cannot use this step" signal
                if not isinstance(getattr(exc, "reason", None), str):
                    raise
                skip_reason = exc.reason
            else:
                g, losses = out if isinstance(out, tuple) else (out, None)
                stats.gram = _as_numpy(g)
                stats.losses = None if losses is None else _as_numpy(losses)
        if skip_reason is None:
            strategy.before_update(stats)
            if strategy.metrics().get("skipped"):
                skip_reason = _skip_reason(stats)
    weights = np.asarray(strategy.weights(), dtype=np.float64)

    if aggregation == "sum_then_normalize":
        scalar = torch.as_tensor(strategy.scalarize(stats.rewards), dtype=torch.float32)  # (N,), NaN: unscored
        adv = compute_advantages(scalar, estimator, num_generations, scale_rewards)
    else:  # GDPO / MO-GRPO: the strategy combines the normalised per-objective rewards
        normalised = _as_numpy(mo_adv.masked_fill(unscored, float("nan")))  # (N, K)
        scalar = torch.as_tensor(strategy.scalarize(normalised), dtype=torch.float32)  # (N,)
        if aggregation == "normalize_then_sum":  # GDPO: batch whitening (TRL)
            std = nanstd(scalar) if n > 1 else torch.zeros(())
            scalar = (scalar - torch.nanmean(scalar)) / (std + EPS)
        adv = torch.nan_to_num(scalar, nan=0.0)
    scale = float(strategy.advantage_scale())
    adv = adv * scale
    stats.scalarized_advantages = _as_numpy(adv)
    record = StepRecord(
        step=int(stats.step),
        weights=weights,
        reward_means=stats.objective_means,
        advantage_scale=scale,
        covariance=within_group_covariance(stats.rewards, stats.scalarized_advantages, stats.group_ids),
        skip_reason=skip_reason,
        strategy_metrics=dict(strategy.metrics()),
        stats=stats,
    )
    return adv, record


def weigh_step(
    rewards: np.ndarray | torch.Tensor,
    strategy: WeightingStrategy,
    *,
    num_generations: int,
    estimator: str = "grpo",
    scale_rewards: str = "group",
    aggregation: str = "sum_then_normalize",
    step: int = 0,
    lr: float = 0.0,
    gram: GramFn | None = None,
) -> tuple[torch.Tensor, StepRecord]:
    """The scalar advantages ``(N,)`` of one generation batch and its :class:`StepRecord`.

    Args:
        rewards: ``(N, K)`` per-objective rewards of the whole (gathered) batch, rows grouped by prompt in
            consecutive blocks of ``num_generations``; NaN where an objective could not score a completion.
        strategy: the weighting strategy; its ``before_update`` runs here.
        num_generations: completions per prompt (``G``).
        estimator, scale_rewards: the advantage estimator (:func:`~moalign.rl.compute_advantages`).
        aggregation: ``sum_then_normalize`` (default), ``normalize_then_sum`` (GDPO) or ``mo_grpo`` (MO-GRPO:
            GDPO without the final whitening); module docstring.
        step, lr: the step index and the policy learning rate ``η_t`` handed to the strategy.
        gram: the trainer's Gram probe (:data:`GramFn`); called once when the strategy needs ``"gram"`` or
            ``"losses"``. Required then.

    Returns:
        ``(advantages, record)``: float32 advantages ``(N,)`` on the CPU, already multiplied by the strategy's
        ``advantage_scale()``; 0 for completions no objective scored.

    >>> from moalign import weighting
    >>> r = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> adv, rec = weigh_step(r, weighting.build("fixed", 2, weights=[1.0, 0.0]), num_generations=2,
    ...                       scale_rewards="none")
    >>> adv.tolist(), rec.weights.tolist(), rec.reward_means.tolist()
    ([0.5, -0.5, 0.5, -0.5], [1.0, 0.0], [0.5, 0.5])
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"multi_objective_aggregation must be one of {', '.join(AGGREGATIONS)}, but got "
                         f"{aggregation!r}")
    stats = per_objective_step(rewards, strategy.num_objectives, num_generations=num_generations, estimator=estimator,
                               scale_rewards=scale_rewards, step=step, lr=lr)
    return weigh_stats(stats, strategy, num_generations=num_generations, estimator=estimator,
                       scale_rewards=scale_rewards, aggregation=aggregation, gram=gram)


def finish_step(
    strategy: WeightingStrategy,
    record: StepRecord,
    *,
    clipped_advantage_weights: np.ndarray | None = None,
    validation_point: np.ndarray | None = None,
    validation_step: int | None = None,
) -> StepRecord:
    """After the policy update: ``strategy.after_update`` with the post-update statistics, then the record's
    ``strategy_metrics`` refreshed. Skipped (the strategy is not called) when no completion was scored."""
    stats = record.stats
    if clipped_advantage_weights is not None:
        stats.clipped_advantage_weights = _as_numpy(clipped_advantage_weights)
    if validation_point is not None:
        stats.validation_point = _as_numpy(validation_point)
        stats.validation_step = validation_step
    if not np.isnan(stats.rewards).all():
        strategy.after_update(stats)
    record.strategy_metrics = dict(strategy.metrics())
    return record

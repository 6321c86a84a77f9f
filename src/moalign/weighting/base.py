"""The weighting-strategy interface, the statistics it receives, and the registry.

A strategy owns the weight vector ``w`` (K floats) and whatever state its method needs. The trainer calls it at
fixed points of every RL step (one step = one generation batch), in this order:

1. :meth:`WeightingStrategy.weights` -- the K weights used to scalarize this batch.
2. :meth:`WeightingStrategy.before_update` -- after rewards are known, before the policy update. Gradient-level
   methods (``needs`` contains ``"gram"``) receive the Gram matrix of per-objective policy gradients here and set
   the weights for this same batch.
3. :meth:`WeightingStrategy.scalarize` -- turns the ``(N, K)`` rewards into ``(N,)`` scalar rewards. Linear
   scalarization ``r @ w`` by default; Tchebycheff-type methods override it (an extension of DESIGN.md's interface:
   a non-linear scalarization cannot be expressed as weights alone).
4. :meth:`WeightingStrategy.advantage_scale` -- multiplier on this step's final advantages (1.0 by default).
5. :meth:`WeightingStrategy.after_update` -- after the policy update, with post-update statistics.
6. :meth:`WeightingStrategy.state_dict` / :meth:`WeightingStrategy.load_state_dict` -- JSON types only.

Strategies receive statistics already reduced across ranks (numpy arrays, float64) and never log by themselves:
:meth:`WeightingStrategy.metrics` returns the scalars the trainer logs. The module depends on numpy only.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "StepStats",
    "WeightingStrategy",
    "register",
    "build",
    "available",
    "STRATEGIES",
    "check_weight_vector",
    "nan_safe_linear",
    "require_gram",
]

# Statistic names a strategy may declare in ``needs``; the trainer computes only what some strategy asks for.
KNOWN_NEEDS = frozenset({"gram", "losses", "post_update", "validation"})


@dataclass
class StepStats:
    """What the trainer hands a strategy at each hook. Arrays are numpy float64, identical on every rank.

    Attributes:
        step: RL step index (0-based, the optimizer step the batch is used for).
        rewards: ``(N, K)`` per-objective rewards of the whole (gathered) batch; NaN where an objective could not
            score a completion.
        group_ids: ``(N,)`` prompt index of each completion (completions of one prompt share an id).
        advantages: ``(N, K)`` per-objective advantages from the trainer's estimator (0 where unscored).
        lr: the policy learning rate at this step (``η_t`` of the gradient method).
        gram: ``(K, K)`` Gram matrix of per-objective policy gradients (only when ``"gram"`` in ``needs``).
        losses: ``(K,)`` per-objective policy-gradient losses (only when ``"losses"`` in ``needs``).
        scalarized_advantages: ``(N,)`` final advantages used for the update (``after_update`` only).
        clipped_advantage_weights: ``(N,)`` CTWA's per-completion clipped advantage weight from the post-update
            probability ratio (``after_update`` only, when ``"post_update"`` in ``needs``).
        validation_point: ``(K,)`` greedy validation score of the current policy, in the objectives' own units
            and directions (``after_update`` only, when ``"validation"`` in ``needs`` and an evaluation ran).
        objective_means: ``(K,)`` nan-mean of ``rewards`` per objective.
    """

    step: int
    rewards: np.ndarray
    group_ids: np.ndarray
    advantages: np.ndarray
    lr: float = 0.0
    gram: np.ndarray | None = None
    losses: np.ndarray | None = None
    scalarized_advantages: np.ndarray | None = None
    clipped_advantage_weights: np.ndarray | None = None
    validation_point: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_objectives(self) -> int:
        return int(self.rewards.shape[1])

    @property
    def objective_means(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            counts = np.sum(~np.isnan(self.rewards), axis=0)
            sums = np.nansum(self.rewards, axis=0)
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def check_weight_vector(weights: Sequence[float], num_objectives: int, name: str = "weights") -> np.ndarray:
    """Validate a user-given weight vector: K finite, non-negative entries, not all zero. Returns float64 copy."""
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a list of {num_objectives} numbers, but got {weights!r}") from exc
    if w.size != num_objectives:
        raise ValueError(
            f"{name} has {w.size} entries but there are {num_objectives} objectives; "
            "give one weight per objective, in the order of `objectives`"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} must be finite, but got {w.tolist()}")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative, but got {w.tolist()}; use a weight of 0 to ignore an objective")
    if not np.any(w > 0):
        raise ValueError(f"{name} must not be all zero; give at least one objective a positive weight")
    return w


def require_gram(stats: "StepStats", owner: str, num_objectives: int) -> np.ndarray:
    """``stats.gram`` as a float64 ``(K, K)`` array; raises if the trainer did not provide it or its shape is wrong."""
    if stats.gram is None:
        raise ValueError(f"strategy {owner!r} needs stats.gram (the trainer computes it when 'gram' in needs)")
    gram = np.asarray(stats.gram, dtype=np.float64)
    if gram.shape != (num_objectives, num_objectives):
        raise ValueError(f"stats.gram has shape {gram.shape}, expected ({num_objectives}, {num_objectives})")
    return gram


def live_gram(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(symmetrised Gram, squared gradient norms clipped at 0, mask of objectives with a non-zero gradient)``; None
    when the Gram is not finite or every gradient is zero (the strategy then keeps its weights)."""
    if not np.all(np.isfinite(gram)):
        return None
    gram = (gram + gram.T) / 2
    d = np.clip(np.diag(gram), 0.0, None)
    live = d > 1e-12 * max(d.max(), 0.0)
    return (gram, d, live) if live.any() else None


def nan_safe_linear(rewards: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``rewards @ weights`` where NaN rewards count as 0 and rows with every reward NaN stay NaN (TRL's rule)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.nan_to_num(rewards, nan=0.0) @ np.asarray(weights, dtype=np.float64)
    out[np.isnan(rewards).all(axis=1)] = np.nan
    return out


class WeightingStrategy:
    """Base class of every weighting strategy. Subclasses override only the hooks they use.

    Class attributes:
        name: registry name.
        needs: statistics the trainer must compute for this strategy (subset of ``{"gram", "losses",
            "post_update", "validation"}``).
        on_simplex: whether :meth:`weights` always lies on the probability simplex.
    """

    name: ClassVar[str] = "base"
    needs: ClassVar[frozenset[str]] = frozenset()
    on_simplex: ClassVar[bool] = True

    def __init__(self, num_objectives: int, objective_names: Sequence[str] | None = None):
        if not isinstance(num_objectives, (int, np.integer)) or num_objectives < 1:
            raise ValueError(f"num_objectives must be a positive integer, but got {num_objectives!r}")
        self.num_objectives = int(num_objectives)
        if objective_names is None:
            objective_names = [f"objective_{i}" for i in range(self.num_objectives)]
        if len(objective_names) != self.num_objectives:
            raise ValueError(
                f"objective_names has {len(objective_names)} entries but num_objectives is {self.num_objectives}"
            )
        self.objective_names = list(objective_names)
        self._w = np.full(self.num_objectives, 1.0 / self.num_objectives)

    # -- hooks ---------------------------------------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """The K weights that scalarize the current batch (a copy)."""
        return self._w.copy()

    def before_update(self, stats: StepStats) -> None:
        """Called after rewards are computed, before the policy update."""

    def scalarize(self, rewards: np.ndarray) -> np.ndarray:
        """``(N, K)`` rewards -> ``(N,)`` scalar rewards. Linear in the weights by default."""
        return nan_safe_linear(rewards, self.weights())

    def advantage_scale(self) -> float:
        """Multiplier applied to this step's final advantages."""
        return 1.0

    def after_update(self, stats: StepStats) -> None:
        """Called after the policy update."""

    def metrics(self) -> dict[str, float]:
        """Extra scalars for the trainer to log this step (e.g. ``{"delta_hv": ...}``)."""
        return {}

    # -- state -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every piece of mutable state, in JSON types."""
        return {"weights": self._w.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._w = _load_vector(state, "weights", self.num_objectives, self.name)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _set_weights(self, w: np.ndarray) -> None:
        """Install new weights, refusing non-finite values (the previous weights are kept)."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.num_objectives,) or not np.all(np.isfinite(w)):
            raise FloatingPointError(f"{self.name}: refusing non-finite or mis-shaped weights {w.tolist()}")
        self._w = w

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({params})"

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments other than the objective count/names (for ``repr`` and ``run.json``)."""
        return {}


def _load_vector(state: dict[str, Any], key: str, size: int, owner: str) -> np.ndarray:
    if key not in state:
        raise ValueError(f"{owner} state has no '{key}' entry (keys: {sorted(state)}); the state file is incomplete")
    v = np.asarray(state[key], dtype=np.float64).reshape(-1)
    if v.size != size:
        raise ValueError(f"{owner} state '{key}' has {v.size} entries, but the run has {size} objectives")
    return v


# -- registry --------------------------------------------------------------------------------------------------------
STRATEGIES: dict[str, type[WeightingStrategy]] = {}


def register(name: str) -> Callable[[type[WeightingStrategy]], type[WeightingStrategy]]:
    """Class decorator that adds a strategy to the registry under ``name``."""

    def decorator(cls: type[WeightingStrategy]) -> type[WeightingStrategy]:
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"a weighting strategy named {name!r} is already registered ({STRATEGIES[name]})")
        unknown = set(cls.needs) - KNOWN_NEEDS
        if unknown:
            raise ValueError(f"strategy {name!r} declares unknown needs {sorted(unknown)}; known: {sorted(KNOWN_NEEDS)}")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return decorator


def available() -> list[str]:
    """Sorted registry names."""
    return sorted(STRATEGIES)


def accepted_parameters(name: str) -> list[str]:
    """The keyword parameters strategy ``name`` accepts (besides ``num_objectives``/``objective_names``)."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters if p not in ("self", "num_objectives", "objective_names")]


def _lookup(name: str) -> type[WeightingStrategy]:
    if name not in STRATEGIES:
        raise ValueError(f"unknown weighting strategy {name!r}; valid names: {', '.join(available())}")
    return STRATEGIES[name]


def build(
    name: str, num_objectives: int, objective_names: Sequence[str] | None = None, **params: Any
) -> WeightingStrategy:
    """Build a registered strategy by name; unknown names and parameters raise ``ValueError`` with the valid ones."""
    cls = _lookup(name)
    accepted = accepted_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"strategy {name!r} got unknown parameter(s) {unknown}; it accepts: {', '.join(accepted) or '(none)'}"
        )
    return cls(num_objectives, objective_names=objective_names, **params)


def is_finite_matrix(x: np.ndarray | None) -> bool:
    return x is not None and bool(np.all(np.isfinite(x)))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z)
    e = np.exp(z)
    return e / e.sum()


def isclose_simplex(w: np.ndarray, atol: float = 1e-9) -> bool:
    return bool(np.all(w >= -atol) and math.isclose(float(np.sum(w)), 1.0, abs_tol=atol * 10))

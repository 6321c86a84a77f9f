"""The weighting-strategy interface, the statistics it receives, and the registry.

A strategy owns the weight vector ``w`` (K floats) and whatever state its method needs. The trainer calls it at
fixed points of every RL step (one step = one generation batch), in this order:

1. :meth:`WeightingStrategy.weights` -- the K weights used to scalarize this batch.
2. :meth:`WeightingStrategy.before_update` -- after rewards are known, before the policy update. Gradient-level
   methods (``needs`` contains ``"gram"``) receive the Gram matrix of per-objective policy gradients here and set
   the weights for this same batch.
3. :meth:`WeightingStrategy.scalarize` -- turns the ``(N, K)`` rewards into ``(N,)`` scalar rewards. Linear
   scalarization ``r @ w`` by default; Tchebycheff-type methods override it (a non-linear scalarization cannot be
   expressed as weights alone; docs/design.md, "Strategy interface").
4. :meth:`WeightingStrategy.advantage_scale` -- multiplier on this step's final advantages (1.0 by default).
5. :meth:`WeightingStrategy.after_update` -- after the policy update, with post-update statistics.
6. :meth:`WeightingStrategy.state_dict` / :meth:`WeightingStrategy.load_state_dict` -- JSON types only. A strategy
   declares its state in ``state_fields`` (JSON key -> :class:`StateField`); the base class saves exactly those
   fields and loads them strictly: a missing or an unknown key, a wrong length or a non-number is an error.

Strategies that score the policy on validation data (``"validation"`` in ``needs``) get two more hooks:
:meth:`WeightingStrategy.wants_validation_point` (the trainer asks after every RL step whether to evaluate now) and
:meth:`WeightingStrategy.set_reference_point` (the initial policy's point, evaluated before training).

Hyperparameters are checked with :func:`check_number` and :func:`check_vector`, the one number validator and the one
vector validator every strategy uses, so that all of them accept and reject the same inputs with the same words.

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
    "StateField",
    "StepStats",
    "WeightingStrategy",
    "check_number",
    "check_vector",
    "register",
    "build",
    "available",
    "STRATEGIES",
    "check_weight_vector",
    "nan_safe_linear",
    "needs_for",
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
        validation_step: the optimizer step the validation point was evaluated at (``evals.jsonl`` numbering).
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
    validation_step: int | None = None
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


def _describe_range(low, high, low_open, high_open, integer) -> str:
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low == 0 and not integer:
        return "a positive number" if low_open else "a non-negative number"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return f"a finite {'integer' if integer else 'number'}"


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str = "",
) -> float | int:
    """The one number validator: a finite real (not a bool) within the given bounds, as ``float`` (``int`` when
    ``integer``). ``name`` is the user-facing field (``strategy_params.mu``); ``hint`` is appended to the message
    (e.g. ``" (paper: 1e-5)"``).

    >>> check_number(0.1, "strategy_params.mu", low=0, low_open=True)
    0.1
    >>> check_number(0, "strategy_params.mu", low=0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: strategy_params.mu must be a positive number, but got 0
    """
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = real and math.isfinite(value)
    if ok and integer:
        ok = isinstance(value, (int, np.integer)) or float(value).is_integer()
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(
            f"{name} must be {_describe_range(low, high, low_open, high_open, integer)}, but got {value!r}{hint}"
        )
    return int(value) if integer else float(value)


def check_vector(
    value: Any,
    size: int,
    name: str,
    *,
    names: Sequence[str] | None = None,
    low: float | None = None,
    low_open: bool = False,
    not_all_zero: bool = False,
    allow_nan: bool = False,
    count: str | None = None,
) -> np.ndarray:
    """The one vector validator: ``size`` finite numbers (NaN too when ``allow_nan``), each ``>= low`` (``> low``
    with ``low_open``), not all zero with ``not_all_zero``. Returns a float64 copy (the input is never modified).

    ``names`` (the objectives the entries belong to) and ``count`` (what the entries are counted against, default
    "objectives") make the length error say what to give.

    >>> check_vector([0.5, 0.5], 2, "strategy_params.weights", low=0.0, not_all_zero=True).tolist()
    [0.5, 0.5]
    >>> check_vector([1.0], 2, "strategy_params.weights", names=["a", "b"])
    Traceback (most recent call last):
    ...
    ValueError: strategy_params.weights has 1 entries but objectives has 2 (a, b); give one value per objective, in that order
    """
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise ValueError(f"{name} must be a list of {size} numbers, but got {value!r}")
    try:
        v = np.array(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a list of {size} numbers, but got {value!r}") from exc
    if any(isinstance(x, (bool, np.bool_)) for x in np.asarray(value, dtype=object).reshape(-1)):
        raise ValueError(f"{name} must be numbers, not true/false, but got {value!r}")
    if v.size != size:
        if names and not count:  # STYLE.md's wording
            what = f"objectives has {size} ({', '.join(names)})"
        else:
            what = f"there are {count or f'{size} objectives'}"
        raise ValueError(
            f"{name} has {v.size} entries but {what}; give one value per {'entry' if count else 'objective'}, "
            "in that order"
        )
    finite = np.isfinite(v) | (np.isnan(v) if allow_nan else False)
    if not np.all(finite):
        raise ValueError(f"{name} must be finite, but got {v.tolist()}")
    if low is not None:
        bad = (v <= low) if low_open else (v < low)
        if np.any(bad & ~np.isnan(v)):
            word = {(0.0, False): "non-negative", (0.0, True): "positive"}.get((float(low), low_open))
            rule = word or f"{'>' if low_open else '>='} {low:g}"
            raise ValueError(f"{name} must be {rule}, but got {v.tolist()}")
    if not_all_zero and not np.any(np.nan_to_num(v) != 0):
        raise ValueError(f"{name} must not be all zero; give at least one objective a positive weight")
    return v


def check_weight_vector(weights: Sequence[float], num_objectives: int, name: str = "weights") -> np.ndarray:
    """A user-given weight vector: :func:`check_vector` with K non-negative entries, not all zero."""
    try:
        return check_vector(weights, num_objectives, name, low=0.0, not_all_zero=True)
    except ValueError as exc:
        if "must be non-negative" in str(exc):
            raise ValueError(f"{exc}; use a weight of 0 to ignore an objective") from None
        raise


@dataclass(frozen=True)
class StateField:
    """One entry of a strategy's state: the JSON key maps to the attribute ``attr``.

    Attributes:
        attr: attribute holding the value.
        kind: ``"vector"`` (float64 array), ``"flags"`` (bool array), ``"number"`` (float), ``"integer"``,
            ``"flag"`` (bool) or ``"object"`` (an object with its own ``state_dict``/``load_state_dict``).
        length: vector length: ``"K"`` (the number of objectives), an int, or the name of an int attribute.
        nullable: ``None`` is a valid value (the attribute is then ``None``).
        nan_as_null: for vectors, NaN entries are saved as ``null`` (JSON has no NaN) and loaded back as NaN.
    """

    attr: str
    kind: str = "vector"
    length: int | str = "K"
    nullable: bool = False
    nan_as_null: bool = False


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
    #: The strategy's mutable state, JSON key -> field; :meth:`state_dict` saves exactly these keys.
    state_fields: ClassVar[dict[str, StateField]] = {"weights": StateField("_w")}

    @classmethod
    def needs_for(cls, params: dict[str, Any]) -> frozenset[str]:
        """The statistics an instance built with ``params`` (its ``strategy_params``) will need, known without
        building it: the class's ``needs`` unless a parameter changes them (hypervolume's ``point_source``). A
        trainer decides from this what to compute, so the strategy itself is built only once."""
        return cls.needs

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

    def lr_scale(self) -> float:
        """Multiplier on the learning rate of this step's optimizer steps (the trainer restores it afterwards).
        Unlike :meth:`advantage_scale`, Adam cannot normalise it away."""
        return 1.0

    def after_update(self, stats: StepStats) -> None:
        """Called after the policy update."""

    def wants_validation_point(self, rl_step: int) -> bool:
        """Whether the trainer should evaluate the policy now, after RL step ``rl_step`` (1-based count of finished
        steps), and pass the point to :meth:`after_update` as ``stats.validation_point``. Only asked when
        ``"validation"`` is in ``needs``."""
        return False

    def set_reference_point(self, point: np.ndarray, step: int) -> None:
        """The initial policy's validation point ``(K,)``, evaluated before the first update (``"validation"`` in
        ``needs``)."""

    def metrics(self) -> dict[str, float]:
        """Extra scalars for the trainer to log this step (e.g. ``{"delta_hv": ...}``)."""
        return {}

    # -- state -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every piece of mutable state (the fields of ``state_fields``), in JSON types."""
        return {key: self._encode(spec, getattr(self, spec.attr)) for key, spec in self.state_fields.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` strictly: exactly the keys of ``state_fields``, each of the right type and
        length, or ``ValueError`` naming the strategy and the key. Nothing changes unless every field is valid."""
        owner = f"strategy {self.name!r} state"
        if not isinstance(state, dict):
            raise ValueError(f"{owner} must be a mapping, but got {type(state).__name__}")
        expected = set(self.state_fields)
        missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unknown:
            problems = ([f"missing key(s) {missing}"] if missing else []) + (
                [f"unknown key(s) {unknown}"] if unknown else [])
            raise ValueError(
                f"{owner} has {' and '.join(problems)}; expected exactly {sorted(expected)} (the state was written "
                "by another strategy version or is incomplete; resume from a checkpoint of this run)"
            )
        values = {}
        for key, spec in self.state_fields.items():
            if spec.kind != "object":
                values[spec.attr] = self._decode(spec, state[key], f"{owner} {key!r}")
        for key, spec in self.state_fields.items():
            if spec.kind == "object":
                try:
                    getattr(self, spec.attr).load_state_dict(state[key])
                except ValueError as exc:
                    raise ValueError(f"{owner} {key!r}: {exc}") from exc
        for attr, value in values.items():
            setattr(self, attr, value)
        self._state_loaded()

    def _state_loaded(self) -> None:
        """Adjust attributes after :meth:`load_state_dict`. Never recompute a saved field from the others (e.g.
        weights from log-weights): a recomputation can differ in the last bit on another CPU, so the resumed run
        would not continue the saved one."""

    def _length(self, spec: StateField) -> int:
        if spec.length == "K":
            return self.num_objectives
        return int(spec.length if isinstance(spec.length, int) else getattr(self, spec.length))

    @staticmethod
    def _encode(spec: StateField, value: Any) -> Any:
        if value is None:
            return None
        if spec.kind == "vector":
            v = np.asarray(value, dtype=np.float64).reshape(-1)
            return [None if (spec.nan_as_null and math.isnan(x)) else float(x) for x in v]
        if spec.kind == "flags":
            return [bool(x) for x in np.asarray(value).reshape(-1)]
        if spec.kind == "number":
            return float(value)
        if spec.kind == "integer":
            return int(value)
        if spec.kind == "flag":
            return bool(value)
        if spec.kind == "object":
            return value.state_dict()
        raise ValueError(f"unknown state field kind {spec.kind!r}")

    def _decode(self, spec: StateField, value: Any, where: str) -> Any:
        if value is None:
            if spec.nullable:
                return None
            raise ValueError(f"{where} is null, but it must be set")
        if spec.kind in ("vector", "flags"):
            size = self._length(spec)
            if spec.kind == "flags":
                if not isinstance(value, list) or not all(isinstance(x, bool) for x in value):
                    raise ValueError(f"{where} must be a list of {size} true/false values, but got {value!r}")
                if len(value) != size:
                    raise ValueError(f"{where} has {len(value)} entries, but the run has {size}")
                return np.array(value, dtype=bool)
            if spec.nan_as_null and isinstance(value, list):
                value = [math.nan if x is None else x for x in value]
            try:
                return check_vector(value, size, where, allow_nan=spec.nan_as_null, count=f"{size} in this run")
            except ValueError as exc:
                raise ValueError(f"{exc} (the state file is damaged or from another run)") from None
        if spec.kind == "number":
            return check_number(value, where)
        if spec.kind == "integer":
            return check_number(value, where, integer=True)
        if spec.kind == "flag":
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, but got {value!r}")
            return value
        raise ValueError(f"unknown state field kind {spec.kind!r}")

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
        kinds = {"vector", "flags", "number", "integer", "flag", "object"}
        bad = {key: f.kind for key, f in cls.state_fields.items() if f.kind not in kinds}
        if bad:
            raise ValueError(f"strategy {name!r} declares state fields of unknown kind {bad}; known: {sorted(kinds)}")
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


def check_parameter_names(name: str, params: dict[str, Any]) -> type[WeightingStrategy]:
    """The class of strategy ``name``; an unknown name or parameter name raises ``ValueError`` with the valid ones.
    Parameter *values* are checked by the constructor (:func:`build`)."""
    cls = _lookup(name)
    accepted = accepted_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"strategy {name!r} got unknown parameter(s) {unknown}; it accepts: {', '.join(accepted) or '(none)'}"
        )
    return cls


def needs_for(name: str, params: dict[str, Any] | None = None) -> frozenset[str]:
    """What strategy ``name`` with ``params`` needs (``"gram"``, ``"losses"``, ``"post_update"``, ``"validation"``),
    without building it.

    >>> sorted(needs_for("gradient")), sorted(needs_for("hypervolume", {"point_source": "train_batch"}))
    (['gram'], [])
    """
    params = dict(params or {})
    return frozenset(check_parameter_names(name, params).needs_for(params))


def build(
    name: str, num_objectives: int, objective_names: Sequence[str] | None = None, **params: Any
) -> WeightingStrategy:
    """Build a registered strategy by name; unknown names and parameters raise ``ValueError`` with the valid ones."""
    cls = check_parameter_names(name, params)
    return cls(num_objectives, objective_names=objective_names, **params)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z)
    e = np.exp(z)
    return e / e.sum()


def isclose_simplex(w: np.ndarray, atol: float = 1e-9) -> bool:
    return bool(np.all(w >= -atol) and math.isclose(float(np.sum(w)), 1.0, abs_tol=atol * 10))

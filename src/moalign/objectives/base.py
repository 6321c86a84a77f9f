"""The objective protocol, helpers shared by objectives, and the objective registry.

An objective is a TRL reward function with a name and a direction:

* ``obj(completions, **columns) -> list[float | None]``, one score per completion, ``None`` when a completion cannot
  be scored. TRL's ``GRPOTrainer._calculate_rewards`` (TRL 1.16) calls ``reward_func(prompts=..., completions=...,
  completion_ids=..., **dataset_columns, trainer_state=..., log_extra=..., log_metric=...)`` (plus ``environments``
  when an environment is used); objectives take what they need and ignore the rest. A completion is a string or a
  chat-message list (``[{"role": "assistant", "content": "..."}]``); :func:`completion_text` turns either into text.
* ``.name`` (also ``__name__``, which TRL uses for its log keys) and ``.maximize``.
* ``.training``: the trainer sets it to ``False`` while evaluating, so that stateful objectives (conciseness's running
  mean) do not learn from evaluation batches.
* ``eval_metric``: the metric evaluations report for the objective. By default the objective's own score under its
  own name; conciseness reports ``"length"`` (tokens, lower is better), which evaluations measure themselves.
* ``state_dict()`` / ``load_state_dict()``: whatever the objective learns while training, in JSON types; saved with
  every checkpoint.

Objectives are small callable classes, not closures, so that they pickle into worker processes.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .protocol import Objective, ScoreCountError, completion_text, sanitize_scores

__all__ = [
    "OBJECTIVES",
    "FunctionObjective",
    "ScoreCountError",
    "Objective",
    "as_objective",
    "available_objectives",
    "build_objective",
    "build_objectives",
    "build_objectives_with_params",
    "check_distinct_names",
    "completion_text",
    "get_objective",
    "objective_label",
    "objective_params",
    "objective_spec_json",
    "register_objective",
    "sanitize_scores",
]


class FunctionObjective(Objective):
    """A plain reward function ``fn(completions, **kwargs) -> list[float | None]`` as an objective.

    The function receives the completions exactly as TRL passes them (strings or message lists) and every keyword
    argument. Its ``state_dict``/``load_state_dict``/``eval_metric`` are used when it has them.

    >>> def brevity(completions, **kwargs):
    ...     return [float(len(c) < 5) for c in completions]
    >>> obj = as_objective(brevity)
    >>> obj.name, obj.maximize, obj(["ab", "abcdef"])
    ('brevity', True, [1.0, 0.0])
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, maximize: bool | None = None):
        from .reward_model import is_model_object

        if is_model_object(fn):
            raise ValueError(
                f"{type(fn).__name__} is a model, not a reward function: a model called on completions is never "
                "scored. Pass it as an objectives entry (MOGRPOTrainer(objectives=[model], reward_processing_classes="
                "[its tokenizer]) or {name: ..., model: PATH} in a config), which scores it as TRL scores a reward "
                "model, or wrap it: RewardModelObjective(model, tokenizer=...)"
            )
        if not callable(fn):
            raise ValueError(f"an objective must be callable, but got {fn!r} of type {type(fn).__name__}")
        self.fn = fn
        super().__init__()
        self.name = str(name or getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__)
        self.maximize = bool(getattr(fn, "maximize", True) if maximize is None else maximize)
        self.eval_metric = getattr(fn, "eval_metric", None)

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        scores = list(self.fn(completions=completions, **kwargs))
        if len(scores) != len(completions):
            raise ScoreCountError(
                f"objective {self.name!r} produced {len(scores)} scores for {len(completions)} completions"
            )
        return scores

    @property
    def training(self) -> bool:
        return bool(getattr(self.fn, "training", self.__dict__.get("_training", True)))

    @training.setter
    def training(self, value: bool) -> None:
        self.__dict__["_training"] = bool(value)
        if hasattr(self.fn, "training"):
            self.fn.training = bool(value)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.fn.state_dict()) if hasattr(self.fn, "state_dict") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.fn, "load_state_dict"):
            self.fn.load_state_dict(state)

    def __repr__(self) -> str:
        return f"FunctionObjective({self.name!r}, maximize={self.maximize})"


def as_objective(fn: Any, name: str | None = None, maximize: bool | None = None) -> Objective:
    """``fn`` as an :class:`Objective`: ``fn`` itself if it is one, else ``fn`` wrapped in :class:`FunctionObjective`.

    ``name`` defaults to ``fn.name``, then ``fn.__name__``, then the class name; ``maximize`` to ``fn.maximize``,
    then True.
    """
    if isinstance(fn, Objective):
        if name is not None and name != fn.name:
            raise ValueError(f"objective {fn.name!r} cannot be renamed to {name!r}; subclass it to change its name")
        return fn
    return FunctionObjective(fn, name=name, maximize=maximize)


#: Registry: name -> objective class (instantiated with keyword arguments) or plain reward function (wrapped).
OBJECTIVES: dict[str, Any] = {}


def register_objective(name: str) -> Callable[[Any], Any]:
    """Decorator adding an objective class, or a plain reward function, to :data:`OBJECTIVES` under ``name``.

    >>> @register_objective("politeness")
    ... def politeness(completions, **kwargs):
    ...     return [float("please" in c) for c in completions]
    >>> build_objective("politeness")(["please do", "no"])
    [1.0, 0.0]
    >>> del OBJECTIVES["politeness"]
    """
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise ValueError(f"objective names must be non-empty identifiers, but got {name!r}")

    def decorator(obj: Any) -> Any:
        if not callable(obj):
            raise ValueError(f"register_objective({name!r}) needs a class or a function, but got {obj!r}")
        existing = OBJECTIVES.get(name)
        if existing is not None and existing is not obj and _qualname(existing) != _qualname(obj):
            raise ValueError(f"an objective named {name!r} is already registered ({_qualname(existing)})")
        OBJECTIVES[name] = obj
        return obj

    return decorator


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def available_objectives() -> list[str]:
    """Sorted registry names."""
    return sorted(OBJECTIVES)


def _accepted_parameters(target: Any) -> tuple[list[str], bool]:
    """``(named parameters, takes **kwargs)`` of a class's constructor."""
    params = inspect.signature(target).parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _instantiate(target: Any, label: str, kwargs: dict[str, Any]) -> Objective:
    if isinstance(target, type):
        named, open_ended = _accepted_parameters(target)
        unknown = [] if open_ended else sorted(k for k in kwargs if k not in named)
        if unknown:
            hints = [m for k in unknown for m in difflib.get_close_matches(k, named, n=1)]
            raise ValueError(
                f"objective {label!r} does not accept {unknown}"
                + (f" (did you mean {', '.join(hints)}?)" if hints else "")
                + f"; its parameters are: {', '.join(named) or 'none'}"
            )
        try:
            inspect.signature(target).bind(**kwargs)
        except TypeError as exc:  # a required parameter is missing
            raise ValueError(
                f"objective {label!r} cannot be built with {kwargs} ({exc}); its parameters are: "
                f"{', '.join(named) or 'none'}"
            ) from None
        if not kwargs:
            return as_objective(target())
        try:
            built = target(**kwargs)
        except (TypeError, ValueError) as exc:  # the constructor's own checks (a value of the wrong kind, ...)
            raise ValueError(f"objective {label!r} rejected its parameters {kwargs}: {exc}") from exc
        return as_objective(built)
    if kwargs:
        raise ValueError(
            f"objective {label!r} is a plain function and takes no parameters, but got {sorted(kwargs)}; "
            "make it a class to give it parameters"
        )
    return as_objective(target)


def get_objective(name: str, **kwargs: Any) -> Objective:
    """The registered objective ``name``, built with ``kwargs``.

    >>> get_objective("clarity", min_steps=3)
    Clarity(min_steps=3)
    """
    if name not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {name!r}; valid names: {', '.join(available_objectives())} "
            "(or a 'module:callable' import path to your own reward function)"
        )
    return _instantiate(OBJECTIVES[name], name, kwargs)


def _split_spec(spec: Mapping) -> tuple[str, dict[str, Any]]:
    """``{"name": target, **params}`` -> ``(target, params)``, with errors that show the expected form."""
    if "name" not in spec:
        fix = "e.g. {name: conciseness, max_tokens: 512}"
        if len(spec) == 1:
            (key, value), = spec.items()
            if isinstance(value, Mapping):  # {conciseness: {max_tokens: 512}}
                fix = "write " + "{" + ", ".join([f"name: {key}", *(f"{k}: {v!r}" for k, v in value.items())]) + "}"
        raise ValueError(
            f"objective {dict(spec)!r} has no 'name': a mapping names the objective and sets its parameters; {fix}"
        )
    target = spec["name"]
    if not isinstance(target, str) or not target:
        raise ValueError(
            f"objective {dict(spec)!r}: 'name' must be a registry name or a 'module:callable' path, but got {target!r}"
        )
    params = {k: v for k, v in spec.items() if k != "name"}
    bad_keys = [k for k in params if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"objective {target!r}: parameter names must be strings, but got {bad_keys}")
    return target, params


def objective_label(spec: Any) -> str:
    """A short label of an objective spec: a string as it is, a mapping's ``name``, else ``.name``/``__name__``.

    >>> objective_label("accuracy"), objective_label({"name": "conciseness", "max_tokens": 512})
    ('accuracy', 'conciseness')
    """
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        return str(spec.get("name"))
    return str(getattr(spec, "name", None) or getattr(spec, "__name__", None) or type(spec).__name__)


def objective_params(spec: Any) -> dict[str, Any] | None:
    """The parameters a spec sets, as JSON types: a mapping's keys other than ``name``, ``{}`` for a name or path,
    ``None`` for an objective object or callable (whose constructor parameters are not known).

    >>> objective_params({"name": "conciseness", "max_tokens": 512}), objective_params("accuracy")
    ({'max_tokens': 512}, {})
    """
    if isinstance(spec, Mapping):
        return {str(k): _json_value(v) for k, v in spec.items() if k != "name"}
    return {} if isinstance(spec, str) else None


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    name_or_path = getattr(getattr(value, "config", None), "_name_or_path", None)  # a model object: its path
    return str(name_or_path) if name_or_path else repr(value)


def objective_spec_json(spec: Any) -> str | dict[str, Any]:
    """The spec as JSON types, for ``run.json`` and loggers: strings as they are, a mapping with its parameters
    (values that are not JSON types become their ``repr``), anything else its :func:`objective_label`.

    >>> objective_spec_json({"name": "clarity", "min_steps": 3}), objective_spec_json(len)
    ({'name': 'clarity', 'min_steps': 3}, 'len')
    """
    if isinstance(spec, Mapping):
        return {str(k): _json_value(v) for k, v in spec.items()}
    from .reward_model import is_model_object

    if is_model_object(spec) and getattr(getattr(spec, "config", None), "_name_or_path", None):
        return {"model": _json_value(spec)}  # what `moalign eval` reloads it from
    return objective_label(spec)


def build_objective(spec: Any, **kwargs: Any) -> Objective:
    """An objective from a registry name, an import path (``"pkg.mod:attr"`` or ``"pkg.mod.attr"``), a mapping
    ``{"name": <name or path>, <parameter>: <value>, ...}`` (a config entry with parameters), a reward model (a
    model object, a path or Hub id, or ``{name: ..., model: PATH_OR_ID, ...}``; see
    :mod:`moalign.objectives.reward_model`) or a callable.

    A plain string is read in this order: a registry name; a reward model when it has a ``/`` or names an existing
    directory (:func:`~moalign.objectives.reward_model.looks_like_model_path`); else an import path.

    A class (registered or imported) is instantiated with the mapping's parameters and ``kwargs``; a function or any
    other callable is wrapped with :func:`as_objective`. Unknown names raise ValueError listing the valid ones;
    unknown parameters raise ValueError listing the constructor's parameters.

    >>> build_objective("accuracy").name
    'accuracy'
    >>> build_objective("moalign.objectives.clarity:Clarity").name
    'clarity'
    >>> build_objective({"name": "clarity", "min_steps": 3})
    Clarity(min_steps=3)
    """
    from .reward_model import is_reward_model_spec, looks_like_model_path, reward_model_objectives

    if is_reward_model_spec(spec) or (isinstance(spec, str) and spec not in OBJECTIVES and looks_like_model_path(spec)):
        built = reward_model_objectives(spec if not isinstance(spec, str) else {"model": spec}, **kwargs)
        if len(built) != 1:
            raise ValueError(f"reward model entry {objective_spec_json(spec)!r} gives {len(built)} objectives (one per "
                             "head); build it with build_objectives([...]), which expands heads")
        return built[0]
    if isinstance(spec, Mapping):
        target, params = _split_spec(spec)
        both = sorted(set(params) & set(kwargs))
        if both:
            raise ValueError(f"objective {target!r}: parameter(s) {both} given both in the spec and as arguments")
        return build_objective(target, **params, **kwargs)
    if isinstance(spec, str):
        if spec in OBJECTIVES:
            return get_objective(spec, **kwargs)
        if ":" in spec or "." in spec:
            module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
            try:
                target = importlib.import_module(module_name)
                for part in attr.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(
                    f"cannot import objective {spec!r} ({type(exc).__name__}: {exc}); give 'package.module:name' "
                    "of a reward function or objective class importable from this Python environment"
                ) from exc
            return _instantiate(target, spec, kwargs)
        return get_objective(spec, **kwargs)  # raises with the valid names
    if isinstance(spec, type):
        return _instantiate(spec, spec.__name__, kwargs)
    if kwargs:
        raise ValueError(f"parameters {sorted(kwargs)} given for an objective that is already built ({spec!r})")
    return as_objective(spec)


def _is_path(name: str) -> bool:
    return ":" in name or "." in name


def build_objectives(specs: Any, field: str = "objectives") -> list[Objective]:
    """Check a config's list of objective specs and build them, with errors that name the entry (``field[i]``).

    Each entry is a registry name, a ``module:callable`` path, a mapping ``{name: ..., <parameter>: ...}``, a reward
    model (a path or id, a model object, ``{name: ..., model: ...}``; a ``heads:`` entry gives one objective per
    head) or a callable. Errors: not a list, an empty list, unknown names (all of them at once, with the valid
    names), unknown or invalid parameters, and two objectives of the same name (:func:`check_distinct_names`).

    >>> [o.name for o in build_objectives(["accuracy", {"name": "conciseness", "max_tokens": 512}])]
    ['accuracy', 'conciseness']
    """
    return build_objectives_with_params(specs, field)[0]


def build_objectives_with_params(specs: Any, field: str = "objectives", tokenizers: Any = None
                                 ) -> tuple[list[Objective], list[dict[str, Any] | None]]:
    """:func:`build_objectives` plus each objective's parameters as ``run.json`` records them
    (:func:`objective_params` of its entry; every head of a reward-model entry records the whole entry).

    ``tokenizers``: one per entry (TRL's ``reward_processing_classes``): the tokenizer of a reward-model entry,
    None elsewhere."""
    from .reward_model import is_reward_model_spec

    if isinstance(specs, (str, Mapping)) or not isinstance(specs, (list, tuple)):
        raise ValueError(
            f"{field} must be a list of names, e.g. [accuracy, conciseness, clarity] or [accuracy, {{name: "
            f"conciseness, max_tokens: 512}}], but got {specs!r}"
        )
    if not specs:
        raise ValueError(f"{field} is empty; name at least one objective, e.g. [accuracy, conciseness, clarity]")
    tokenizers = _per_entry(tokenizers, len(specs))
    targets = []
    for i, spec in enumerate(specs):
        try:
            plain = isinstance(spec, Mapping) and not is_reward_model_spec(spec)
            targets.append(_split_spec(spec)[0] if plain else spec)
        except ValueError as exc:
            raise ValueError(f"{field}[{i}]: {exc}") from exc
    unknown = [t for t in targets if isinstance(t, str) and not _is_path(t) and t not in OBJECTIVES
               and not _is_model_string(t)]
    if unknown:
        raise ValueError(
            f"{field}: unknown name(s) {unknown}; valid names: {', '.join(available_objectives())} "
            "(or a 'module:callable' path to your own reward function, or a reward model's path or Hub id)"
        )
    built, params = [], []
    for i, (spec, tokenizer) in enumerate(zip(specs, tokenizers)):
        try:
            objectives = _build_entry(spec, tokenizer)
        except ValueError as exc:
            raise ValueError(f"{field}[{i}]: {exc}") from exc
        built += objectives
        params += [objective_params(spec)] * len(objectives)
    check_distinct_names(built, specs, field)
    return built, params


def _per_entry(tokenizers: Any, n: int) -> list[Any]:
    if tokenizers is None:
        return [None] * n
    tokenizers = list(tokenizers) if isinstance(tokenizers, (list, tuple)) else [tokenizers]
    if len(tokenizers) != n:
        raise ValueError(f"reward_processing_classes has {len(tokenizers)} entries but objectives has {n}; give one "
                         "per objectives entry (None for reward functions), as TRL's GRPOTrainer")
    return tokenizers


def _is_model_string(text: str) -> bool:
    from .reward_model import looks_like_model_path

    return looks_like_model_path(text)


def _build_entry(spec: Any, tokenizer: Any) -> list[Objective]:
    from .reward_model import is_reward_model_spec, reward_model_objectives

    if isinstance(spec, str) and spec not in OBJECTIVES and _is_model_string(spec):
        spec = {"model": spec}
    if is_reward_model_spec(spec):
        return list(reward_model_objectives(spec, tokenizer))
    if tokenizer is not None:
        raise ValueError(f"a reward_processing_class was given for {objective_label(spec)!r}, which is not a reward "
                         "model; give None for reward functions")
    return [build_objective(spec)]


def check_distinct_names(objectives: Sequence[Any], specs: Any = None, field: str = "objectives") -> None:
    """The one check that objective names are distinct: weights, logs and checkpoints are keyed by them."""
    names = [o.name for o in objectives]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        entries = f" (entries {[objective_spec_json(s) for s in specs]})" if specs is not None else ""
        raise ValueError(
            f"{field} has duplicates: {duplicates}{entries}; name each objective once (weights, logs and "
            "checkpoints are keyed by the objective's name): set name: in a config entry, or .name on your function"
        )

"""The objective protocol, helpers shared by objectives, and the objective registry.

An objective is a TRL reward function with a name and a direction: ``obj(completions, **columns) ->
list[float | None]`` (``None`` = this completion cannot be scored), ``.name``, ``.maximize``, and
``state_dict()``/``load_state_dict()`` (JSON types) for whatever it learns while training. Objectives are small
picklable classes (not closures) so that they can be sent to worker processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "Objective",
    "FunctionObjective",
    "as_objective",
    "available_objectives",
    "build_objective",
    "completion_text",
    "register_objective",
    "OBJECTIVES",
]


def completion_text(completion: Any) -> str:
    """The assistant text of a completion: a string, or a chat-message list (TRL passes both)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        parts = [m.get("content", "") for m in completion if isinstance(m, dict) and m.get("role", "assistant") ==
                 "assistant"]
        return "".join(p if isinstance(p, str) else str(p) for p in parts)
    return str(completion)


class Objective:
    """Base class: subclasses set ``name``/``maximize`` and implement :meth:`score`.

    ``training`` is switched off by the trainer during evaluation so that stateful objectives (conciseness's running
    mean) do not learn from evaluation batches. ``eval_metric`` names the metric the objective is reported as in
    evaluations when it differs from its own mean score (conciseness -> ``length``).
    """

    name: str = "objective"
    maximize: bool = True
    eval_metric: str | None = None

    def __init__(self) -> None:
        self.training = True

    @property
    def __name__(self) -> str:  # TRL names reward columns after `reward_func.__name__`
        return self.name

    def __call__(self, completions: list, **columns: Any) -> list[float | None]:
        return self.score([completion_text(c) for c in completions], **columns)

    def score(self, texts: list[str], **columns: Any) -> list[float | None]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionObjective(Objective):
    """Wraps a plain reward function ``fn(completions, **kwargs) -> list[float | None]`` as an objective."""

    def __init__(self, fn: Callable[..., list], name: str | None = None, maximize: bool = True):
        super().__init__()
        if not callable(fn):
            raise ValueError(f"an objective must be callable, but got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
        self.maximize = bool(getattr(fn, "maximize", maximize))
        self.eval_metric = getattr(fn, "eval_metric", None)

    def __call__(self, completions: list, **columns: Any) -> list[float | None]:
        return list(self.fn(completions=completions, **columns))

    def state_dict(self) -> dict[str, Any]:
        return self.fn.state_dict() if hasattr(self.fn, "state_dict") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.fn, "load_state_dict"):
            self.fn.load_state_dict(state)

    def __repr__(self) -> str:
        return f"FunctionObjective({self.name!r}, maximize={self.maximize})"


def as_objective(fn: Any, name: str | None = None, maximize: bool = True) -> Objective:
    """Return ``fn`` if it already is an :class:`Objective`, else wrap it (any callable with a name works)."""
    if isinstance(fn, Objective):
        return fn
    return FunctionObjective(fn, name=name, maximize=maximize)


OBJECTIVES: dict[str, Callable[[], Any]] = {}


def register_objective(name: str) -> Callable:
    """Decorator adding an objective class (or a plain reward function) to the registry under ``name``.

    >>> @register_objective("politeness")
    ... def politeness(completions, **kw):
    ...     return [float("please" in c) for c in completions]
    >>> build_objective("politeness")(["please do", "no"])
    [1.0, 0.0]
    """

    def decorator(obj):
        if name in OBJECTIVES and OBJECTIVES[name] is not obj:
            raise ValueError(f"an objective named {name!r} is already registered")
        OBJECTIVES[name] = obj
        return obj

    return decorator


def available_objectives() -> list[str]:
    return sorted(OBJECTIVES)


def _instantiate(factory: Any, name: str | None) -> Objective:
    if isinstance(factory, type):
        obj = factory()
        return obj if isinstance(obj, Objective) else as_objective(obj, name=name)
    return as_objective(factory, name=name)


def build_objective(spec: Any) -> Objective:
    """An objective from a registry name, a ``"module:attr"`` / ``"module.attr"`` import path, or a callable."""
    if not isinstance(spec, str):
        return as_objective(spec)
    if spec in OBJECTIVES:
        return _instantiate(OBJECTIVES[spec], spec)
    if ":" in spec or "." in spec:
        module_name, _, attr = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import objective {spec!r} ({exc}); check the module path and name") from exc
        return _instantiate(target, attr)
    raise ValueError(
        f"unknown objective {spec!r}; valid names: {', '.join(available_objectives())} "
        "(or a 'module:callable' import path to your own reward function)"
    )

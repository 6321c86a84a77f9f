"""The objective protocol: :class:`Objective`, :func:`completion_text`, :func:`sanitize_scores`.

Kept apart from the registry and spec builders of :mod:`moalign.objectives.base` (which re-exports every name here), so
that objective families built on the protocol (:mod:`moalign.objectives.reward_model`) and the builders that know them
import without a cycle.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["Objective", "ScoreCountError", "completion_text", "sanitize_scores"]


def completion_text(completion: Any) -> str:
    """The text of a completion: a string as it is, or the assistant content of a chat-message list.

    TRL passes strings for plain-text prompts and message lists for conversational ones. Message contents that are
    lists of parts (``[{"type": "text", "text": ...}]``) are joined; non-assistant messages (tool results) are skipped.

    >>> completion_text("x = 2")
    'x = 2'
    >>> completion_text([{"role": "assistant", "content": "x = 2"}])
    'x = 2'
    """
    if isinstance(completion, str):
        return completion
    if completion is None:
        return ""
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        return "".join(
            _content_text(m.get("content"))
            for m in completion
            if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
        )
    return str(completion)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # multimodal parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


class ScoreCountError(ValueError):
    """An objective returned a number of scores different from the number of completions (a bug, not a fault of
    one completion: the trainer stops with this error instead of leaving samples unscored)."""


def sanitize_scores(values: Any, n: int, name: str = "objective") -> tuple[list[float | None], int]:
    """Check an objective's output and make it safe to use: ``(scores, n_bad)``.

    Raises ValueError when ``values`` does not have one entry per completion. ``None`` stays ``None`` (unscorable);
    NaN, infinities and values that are not real numbers become ``None`` and are counted in ``n_bad``.

    >>> sanitize_scores([1, None, float("nan"), "x", True], 5)
    ([1.0, None, None, None, 1.0], 2)
    """
    try:
        values = list(values)
    except TypeError as exc:
        raise ValueError(f"objective {name!r} returned {type(values).__name__}, not a list of scores") from exc
    if len(values) != n:
        raise ScoreCountError(
            f"objective {name!r} returned {len(values)} scores for {n} completions; "
            "return one score (or None) per completion, in order"
        )
    out: list[float | None] = []
    bad = 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            f = float(v) if isinstance(v, (numbers.Real, bool)) or hasattr(v, "__float__") else math.nan
        except (TypeError, ValueError):
            f = math.nan
        if math.isfinite(f):
            out.append(f)
        else:
            out.append(None)
            bad += 1
    return out, bad


class Objective:
    """Base class of the built-in objectives: subclasses set ``name``/``maximize`` and implement :meth:`score`.

    ``__call__`` turns completions into text, calls ``score(texts, **kwargs)`` with everything TRL passed, and
    checks that one score per completion came back.

    >>> class Short(Objective):
    ...     name = "short"
    ...     def score(self, texts, **kwargs):
    ...         return [float(len(t) < 5) for t in texts]
    >>> Short()(["ab", [{"role": "assistant", "content": "abcdef"}]], prompts=["p", "q"], trainer_state=None)
    [1.0, 0.0]
    >>> Short().__name__, Short().eval_metric  # None: reported under its own name
    ('short', None)
    """

    name: str = "objective"
    maximize: bool = True
    #: Metric name reported in evaluations (``None``: the objective's own ``name``).
    eval_metric: str | None = None

    def __init__(self) -> None:
        self.training = True

    @property
    def __name__(self) -> str:  # TRL names reward columns and log keys after `reward_func.__name__`
        return self.name

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        scores = list(self.score(texts, **kwargs))
        if len(scores) != len(texts):
            raise ScoreCountError(
                f"objective {self.name!r} produced {len(scores)} scores for {len(texts)} completions"
            )
        return scores

    def score(self, texts: list[str], **kwargs: Any) -> list[float | None]:
        """One score (or None) per completion text; ``kwargs`` are TRL's keyword arguments and dataset columns."""
        raise NotImplementedError(f"{type(self).__name__} must implement score(texts, **kwargs)")

    def state_dict(self) -> dict[str, Any]:
        """Everything the objective learned while training, in JSON types (nothing by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        del state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

"""Scoring completions with objectives, in one place for training, evaluation and the meta-policy gate.

* :func:`normalised_length`: the normalised space's length rule, ``1 − min(v, L)/L`` (docs/design.md, "Normalised
  space"): 1 for an empty completion, 0 at the length limit ``L`` and beyond.
* :func:`objectives_frozen`: objectives with running state (conciseness's mean length) do not move it while they
  score evaluations.
* :func:`score_completions`: every objective on a list of completions, frozen, with NaN/inf/non-numbers as ``None``.
* :class:`GuardedObjective`: a training reward that one bad completion cannot stop (the trainer's reward functions).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .objectives import ScoreCountError, sanitize_scores

__all__ = ["GuardedObjective", "normalised_length", "objectives_frozen", "report_unscored", "score_completions"]

logger = logging.getLogger(__name__)


def normalised_length(length, max_length: int):
    """``1 − min(length, L)/L`` for a number or an array of lengths (tokens).

    >>> normalised_length(3, 12), normalised_length(20, 12)
    (0.75, 0.0)
    """
    if isinstance(length, np.ndarray):
        return 1.0 - np.minimum(length, max_length) / max_length
    return 1.0 - min(length, max_length) / max_length


@contextlib.contextmanager
def objectives_frozen(objectives: Sequence) -> Iterator[None]:
    """Objectives with a ``training`` flag score without updating their state; restored afterwards."""
    previous = [getattr(o, "training", None) for o in objectives]
    for o in objectives:
        if hasattr(o, "training"):
            o.training = False
    try:
        yield
    finally:
        for o, p in zip(objectives, previous):
            if p is not None:
                o.training = p


def score_completions(
    objectives: Sequence,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    completion_ids: Sequence[Sequence[int]],
    columns: dict[str, list] | None = None,
) -> dict[str, list[float | None]]:
    """``{objective name: one score per completion}``, each objective frozen; ``None`` where it returned no finite
    number. ``columns`` are the dataset's other columns (``answer``...), one entry per completion."""
    out: dict[str, list[float | None]] = {}
    for obj in objectives:
        with objectives_frozen([obj]):
            scores = obj(prompts=list(prompts), completions=completions,
                         completion_ids=[list(t) for t in completion_ids], **(columns or {}))
        out[obj.name] = [float(s) if s is not None and math.isfinite(float(s)) else None for s in scores]
    return out


class GuardedObjective:
    """Calls an objective so that one bad completion cannot stop training.

    If the objective raises on the batch, it is called again one completion at a time and the completions it still
    raises on are left unscored (None). NaN, inf and non-numbers become None. Counts are kept for logging.
    """

    def __init__(self, objective):
        self.objective = objective
        self.__name__ = getattr(objective, "name", getattr(objective, "__name__", type(objective).__name__))
        self.unscored = 0
        self.errors: list[str] = []

    def __call__(self, prompts, completions, **kwargs):
        n = len(completions)
        try:
            values = self.objective(prompts=prompts, completions=completions, **kwargs)
        except ScoreCountError:
            raise  # a bug in the objective, not a bad completion: stop with the message
        except Exception as exc:  # noqa: BLE001 - isolate the failing sample, report it
            self.errors.append(f"{type(exc).__name__}: {exc}")
            values = [self._score_one(i, prompts, completions, kwargs) for i in range(n)]
        scores, _ = sanitize_scores(values, n, self.__name__)
        self.unscored += sum(v is None for v in scores)
        return scores

    def _score_one(self, i, prompts, completions, kwargs):
        one = {k: ([v[i]] if isinstance(v, list) and len(v) == len(completions) else v) for k, v in kwargs.items()}
        try:
            return self.objective(prompts=[prompts[i]], completions=[completions[i]], **one)[0]
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return None


def report_unscored(guards: Sequence[GuardedObjective], counts: Sequence[int], n: int, step: int,
                    warn: bool = True) -> dict[str, int]:
    """``{objective: completions left unscored}`` for a step's ``n`` completions (``counts``: summed over ranks),
    with a warning per objective that left any (and its first error)."""
    unscored = {g.__name__: int(c) for g, c in zip(guards, counts)}
    for g in guards:
        if unscored[g.__name__] and warn:
            logger.warning("objective %r left %d of %d completions unscored at step %d%s", g.__name__,
                           unscored[g.__name__], n, step, f" (first error: {g.errors[0]})" if g.errors else "")
    return unscored

r"""Formatting habits of the ``habits`` synthetic task, and the objective that scores one of them.

The ``habits`` member of the synthetic task family (:mod:`moalign.data.synthetic`) writes one line per operation and
then the answer; each of seven independent habits changes that layout in one way:

=============  ============================================================  ===================================
habit          present                                                        absent
=============  ============================================================  ===================================
``numbered``   operation lines start ``1. ``, ``2. ``                        they start ``-> `` (same length)
``signoff``    a last line ``OK`` after the answer                           no such line
``period``     operation lines end with ``.``                                no ``.``
``header``     a first line ``#``                                            no such line
``spaced``     ``17+5 = 22`` (spaces around ``=``)                           ``17+5=22``
``label``      the answer line reads ``A:\boxed{18}``                         ``\boxed{18}``
``gap``        an empty line before the answer line                          no empty line
=============  ============================================================  ===================================

A habit scores 1.0 when the completion has a non-empty ``\boxed{}`` answer and shows the habit (for the line habits
``numbered``, ``period`` and ``spaced``: on every operation line, and there is at least one), else 0.0.

>>> text = "#\n1. 17+5 = 22.\n2. 22-4 = 18.\n\nA:\\boxed{18}\nOK"
>>> [name for name in HABITS if has_habit(text, name)]
['numbered', 'signoff', 'period', 'header', 'spaced', 'label', 'gap']
>>> [name for name in HABITS if has_habit("-> 17+5=22\n-> 22-4=18\n\\boxed{18}", name)]
[]
"""

from __future__ import annotations

import re
from typing import Any

from .accuracy import last_boxed
from .base import Objective, register_objective

__all__ = ["HABITS", "Habit", "has_habit", "operation_lines"]

HABITS = ("numbered", "signoff", "period", "header", "spaced", "label", "gap")
"""The habits, in objective order: the ``habits`` task's K objectives are accuracy and the first K - 1 of these."""

_OPERATION = re.compile(r"\d+ ?[+-] ?\d+ ?= ?\d+")
_ANSWER_LINE = re.compile(r"(?:A:)?\\boxed\{")


def operation_lines(text: str) -> list[str]:
    """The lines of ``text`` that write an operation (``a+b=c`` or ``a-b=c``, with or without spaces).

    >>> operation_lines("#\\n1. 3+4 = 7.\\n\\\\boxed{7}")
    ['1. 3+4 = 7.']
    """
    return [line for line in text.split("\n") if _OPERATION.search(line)]


def _answer_index(lines: list[str]) -> int | None:
    for i in range(len(lines) - 1, -1, -1):
        if _ANSWER_LINE.match(lines[i]):
            return i
    return None


def has_habit(text: str, habit: str) -> bool:
    """Whether ``text`` shows ``habit`` (one of :data:`HABITS`); see the module docstring for each one's rule."""
    if habit not in HABITS:
        raise ValueError(f"habit must be one of {', '.join(HABITS)}, but got {habit!r}")
    if not last_boxed(text):
        return False
    lines = text.split("\n")
    ops = operation_lines(text)
    if habit == "numbered":
        return bool(ops) and all(re.match(r"\d+\. ", line) for line in ops)
    if habit == "period":
        return bool(ops) and all(line.endswith(".") for line in ops)
    if habit == "spaced":
        return bool(ops) and all(" = " in line for line in ops)
    if habit == "header":
        return lines[0] == "#"
    if habit == "signoff":
        return lines[-1] == "OK"
    answer = _answer_index(lines)
    if answer is None:
        return False
    if habit == "label":
        return lines[answer].startswith("A:")
    return answer > 0 and lines[answer - 1] == ""  # gap


@register_objective("habit")
class Habit(Objective):
    r"""1.0 when a completion shows one formatting habit of the ``habits`` task (and a non-empty ``\boxed{}``), else 0.

    Parameters:
        habit: which one, from :data:`HABITS`. The objective is named ``habit_<habit>``; in a config,
            ``{name: habit, habit: period}``.

    >>> Habit(habit="period")(["1. 2+3=5.\n\\boxed{5}", "1. 2+3=5\n\\boxed{5}"])
    [1.0, 0.0]
    """

    maximize = True

    def __init__(self, habit: str):
        super().__init__()
        if habit not in HABITS:
            raise ValueError(f"habit must be one of {', '.join(HABITS)}, but got {habit!r}")
        self.habit = habit
        self.name = f"habit_{habit}"

    def score(self, texts: list[str], **kwargs: Any) -> list[float | None]:
        return [float(has_habit(t, self.habit)) for t in texts]

    def __repr__(self) -> str:
        return f"Habit(habit={self.habit!r})"

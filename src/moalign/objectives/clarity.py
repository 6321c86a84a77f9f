r"""Clarity: a non-empty ``\boxed{}`` answer and at least two distinct explicit step markers.

Step markers (matching is case-insensitive):

* **Ordinal words** ``first``, ``second``, ``third``, ``fourth``, ``fifth``, ``next``, ``then``, ``finally``,
  ``lastly`` -- as a whole word at the start of a line (after optional indentation and ``**``/``#`` markup) or at the
  start of a sentence (after ``.``, ``!``, ``?`` or ``:`` and whitespace). ``if x > 0 then y`` and ``the first term``
  are not steps (mid-sentence), nor is ``Firstly``... only the listed words (``Firstly`` is not listed).
* **Enumerators** at the start of a line (after optional indentation, ``#``/``>`` and ``**``): ``1.``, ``2)``,
  ``(3)`` (one to three digits), and ``Step 4`` with anything after the number (``Step 4:``, ``**Step 4**``,
  ``## Step 4``). A number followed by a digit is a decimal, not an enumerator (``1.5``, ``Step 1.5``), and ``Step``
  without a number is not a marker.
* **List items** at the start of a line: ``-``, ``*`` or ``•``, then spaces, then text that does not start with a
  digit, ``-``, ``=``, ``+`` or ``*``. ``5 - 3`` (a minus inside a line), a ``-`` alone on a line, ``-5``,
  ``- 3 = 2`` and ``* * *`` are not.

Markers are counted once per distinct key: the lower-cased word for ordinals (``Then ... Then ...`` is one marker),
the number for enumerators (``1.`` and ``Step 1:`` are the same step), and the position for list items (each item is
its own marker). The box must contain something other than whitespace.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

from .accuracy import last_boxed
from .base import Objective, register_objective

__all__ = ["Clarity", "ORDINAL_WORDS", "count_step_markers", "step_markers"]

ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "next", "then", "finally", "lastly")

_LINE_START = r"(?:^|(?<=\n))[ \t]*(?:[#>]+[ \t]*)?(?:\*\*|__)?"  # indentation, heading/quote marks, bold
_ORDINAL = re.compile(
    rf"(?:{_LINE_START}|(?<=[.!?:])[ \t]+(?:\*\*)?)(?P<word>{'|'.join(ORDINAL_WORDS)})\b(?![-'])",
    re.IGNORECASE,
)
_ENUMERATOR = re.compile(
    rf"{_LINE_START}(?:step[ \t]*(?P<step>\d{{1,3}})(?![\d.,]?\d)|(?P<num>\d{{1,3}})[.)](?!\d)|"
    r"\((?P<paren>\d{1,3})\))",
    re.IGNORECASE,
)
_BULLET = re.compile(r"(?:^|(?<=\n))[ \t]*[-*\u2022][ \t]+(?=[^\s\d\-=+*])")


def step_markers(text: str) -> set[str]:
    """The distinct step markers of ``text`` (keys as described in the module docstring).

    >>> sorted(step_markers("First, add.\\nThen subtract.\\n2) check\\n- done"))
    ['#2', 'first', 'item@36', 'then']
    """
    keys: set[str] = set()
    for m in _ORDINAL.finditer(text):
        keys.add(m.group("word").lower())
    for m in _ENUMERATOR.finditer(text):
        keys.add("#" + str(int(m.group("step") or m.group("num") or m.group("paren"))))
    for m in _BULLET.finditer(text):
        keys.add(f"item@{m.start()}")
    return keys


def count_step_markers(text: str) -> int:
    """Number of distinct step markers in ``text``.

    >>> count_step_markers("First, add.\\nThen subtract. 5 - 3 = 2")
    2
    >>> count_step_markers("if x > 0 then y = 1.5 - x")
    0
    """
    return len(step_markers(text))


@register_objective("clarity")
class Clarity(Objective):
    r"""1.0 for a non-empty ``\boxed{}`` answer plus at least ``min_steps`` distinct step markers, else 0.0.

    Parameters:
        min_steps: markers required (the papers use 2).

    >>> Clarity()(["First, 2+3=5.\nThen 5-1=4.\n\\boxed{4}", "\\boxed{4}", "1. a\n2. b\n\\boxed{ }"])
    [1.0, 0.0, 0.0]
    """

    name = "clarity"
    maximize = True

    def __init__(self, min_steps: int = 2):
        super().__init__()
        if (isinstance(min_steps, bool) or not isinstance(min_steps, numbers.Real) or int(min_steps) != min_steps
                or min_steps < 1):
            raise ValueError(f"min_steps must be a positive integer, but got {min_steps!r}")
        self.min_steps = int(min_steps)

    def score(self, texts: list[str], **kwargs: Any) -> list[float | None]:
        return [float(bool(last_boxed(t)) and count_step_markers(t) >= self.min_steps) for t in texts]

    def __repr__(self) -> str:
        return f"Clarity(min_steps={self.min_steps})"

r"""Clarity: a non-empty ``\boxed{}`` answer and at least two explicit step markers.

Step markers (each occurrence counts once; matching is case-insensitive):

* an ordinal word -- first, second, third, fourth, fifth, next, then, finally, lastly -- at the start of a line or
  of a sentence (after ``.``, ``!``, ``?`` or ``:`` and whitespace). "if x > 0 then y" is not a step: "then" is
  mid-sentence;
* an enumerator at the start of a line: ``1.``, ``2)``, ``(3)``, ``Step 4:`` / ``Step 4.`` -- but not a decimal such
  as ``1.5``, and not "Step" without a number;
* a list bullet at the start of a line followed by text: ``- add``, ``* add``. A minus sign inside a line
  (``5 - 3``), a lone ``-`` line and ``-5`` are not steps (the reference code counted any " - ").
"""

from __future__ import annotations

import re
from typing import Any

from .accuracy import last_boxed
from .base import Objective, register_objective

__all__ = ["Clarity", "count_step_markers", "STEP_MARKER"]

STEP_MARKER = re.compile(
    r"(?:^|(?<=[.!?:])[ \t]+)[ \t]*(?:first|second|third|fourth|fifth|next|then|finally|lastly)\b"
    r"|^[ \t]*(?:step[ \t]*\d+[ \t]*[:.)]|\(?\d+[.)](?!\d)|\(\d+\))"
    r"|^[ \t]*[-*][ \t]+(?=[^\s\d-])",
    re.IGNORECASE | re.MULTILINE,
)


def count_step_markers(text: str) -> int:
    """Number of step markers in ``text``.

    >>> count_step_markers("First, add.\\nThen subtract. 5 - 3 = 2")
    2
    """
    return len(STEP_MARKER.findall(text))


@register_objective("clarity")
class Clarity(Objective):
    r"""1.0 for a non-empty ``\boxed{}`` plus >= ``min_steps`` step markers, else 0.0.

    >>> Clarity()(["First, 2+3=5.\nThen 5-1=4.\n\\boxed{4}", "\\boxed{4}", "1. a\n2. b\n\\boxed{}"])
    [1.0, 0.0, 0.0]
    """

    name = "clarity"
    maximize = True

    def __init__(self, min_steps: int = 2):
        super().__init__()
        if min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, but got {min_steps}")
        self.min_steps = int(min_steps)

    def score(self, texts: list[str], **columns: Any) -> list[float | None]:
        return [float(bool(last_boxed(t)) and count_step_markers(t) >= self.min_steps) for t in texts]

    def __repr__(self) -> str:
        return f"Clarity(min_steps={self.min_steps})"

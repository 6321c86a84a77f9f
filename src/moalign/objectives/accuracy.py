r"""Accuracy: the completion's last ``\boxed{}`` answer checked against the ground truth with math-verify.

A completion scores 1.0 when the content of its last ``\boxed{...}`` (or ``\fbox{...}``) is mathematically equal to
the ground truth, 0.0 otherwise, and ``None`` when its dataset row has no ground truth at all.

Design: bounded time, in any thread or process
----------------------------------------------

math-verify's own timeouts use ``signal.alarm``: they raise off the main thread, and even on the main thread a signal
cannot interrupt one long C call (``\boxed{9^{9^{9^{9^9}}}}`` makes ``verify`` compute a huge power for minutes).
So moalign switches them off (``parsing_timeout=None``, ``timeout_seconds=None``) and bounds time itself, in layers:

1. **Extraction is linear and capped** (:func:`last_boxed`): only the text from the *last* ``\boxed`` / ``\fbox`` on
   is looked at (one reverse search, so a 50 KB completion costs microseconds); the answer must close its braces
   within ``max_answer_chars`` characters (default 1,000) and ``MAX_BRACE_DEPTH`` (32) levels of nesting, else the
   completion has no answer (0.0). ``\{`` and ``\}`` are literal braces and do not count.
2. **Fast path without sympy**: identical answers after whitespace/``$``/``\left``/``\dfrac`` normalisation are
   equal; two plain integers are compared as integers. Repeated ``(gold, answer)`` pairs are memoised per process
   (GRPO groups repeat answers a lot); a pair that ran over budget is not retried with the same or a smaller budget.
3. **math-verify in a worker process** (:mod:`moalign.objectives._verifier`): every remaining pair of one call goes
   to a persistent child process in one round trip; the child answers item by item and the caller waits at most
   ``timeout_s`` (default 2 s) per item. An item over budget scores 0.0 and its child is killed (which is what stops
   a runaway sympy computation) and replaced. This works the same from the main thread, from any other thread and
   inside worker processes (daemonic ``multiprocessing.Pool`` workers included: the child is started with
   :mod:`subprocess`). Only if no child process can be started at all does verification run in-process, with
   math-verify's signal timeouts on the main thread and stricter input caps elsewhere.

Ground truth, per row, first found: the ``answer_column`` column (default ``answer``); verl's ``reward_model`` column
(``{"ground_truth": ...}``); the last ``\boxed{}`` of a ``solution`` column. Both sides are parsed wrapped in
``\boxed{...}`` (as verl's math-verify reward does with the gold answer), then compared with ``verify(gold, pred)``,
gold first.
"""

from __future__ import annotations

import numbers
import re
import threading
from typing import Any

from ._verifier import get_verifier
from .base import Objective, register_objective

__all__ = ["Accuracy", "answers_match", "last_boxed", "ground_truth"]

#: Longest boxed answer considered, in characters (longer: no answer).
MAX_ANSWER_CHARS = 1000
#: Deepest brace nesting inside a boxed answer (deeper: no answer).
MAX_BRACE_DEPTH = 32

_BOX_NAMES = ("\\boxed", "\\fbox")
_INT_RE = re.compile(r"[+-]?\d{1,30}")
_SPACES_RE = re.compile(r"\\[,;:! ]|\\q?quad|\s+")


def last_boxed(text: str, max_chars: int = MAX_ANSWER_CHARS, max_depth: int = MAX_BRACE_DEPTH) -> str | None:
    r"""Content of the last ``\boxed{...}`` / ``\fbox{...}`` of ``text``, stripped; None if absent or malformed.

    Only the last occurrence counts: if it is cut off, too long (``max_chars``) or too deeply nested (``max_depth``),
    the result is None even when an earlier box is complete.

    >>> last_boxed(r"so \boxed{1}, or rather \boxed {\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> last_boxed(r"the set \fbox{\{1, 2\}}")
    '\\{1, 2\\}'
    >>> last_boxed(r"\boxed{" + "{" * 500) is None, last_boxed("no box") is None
    (True, True)
    """
    start = -1
    for name in _BOX_NAMES:
        at = text.rfind(name)
        while at != -1 and text[at + len(name): at + len(name) + 1].isalpha():  # \boxedfoo is another macro
            at = text.rfind(name, 0, at)
        if at > start:
            start, length = at, len(name)
    if start < 0:
        return None
    i = start + length
    end = len(text)
    while i < end and text[i] in " \t\n":
        i += 1
    if i >= end or text[i] != "{":
        return None
    i += 1
    begin, depth, limit = i, 1, min(end, i + max_chars + 1)
    while i < limit:
        ch = text[i]
        if ch == "\\":
            i += 2  # an escaped character (\{ and \} are literal braces)
            continue
        if ch == "{":
            depth += 1
            if depth > max_depth:
                return None
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()
        i += 1
    return None


def _normalise(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = _SPACES_RE.sub("", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
                     ("\\displaystyle", "")):
        s = s.replace(old, new)
    return s.rstrip(".")


def _fast_compare(gold: str, pred: str) -> bool | None:
    """True/False when decidable without sympy, None otherwise."""
    g, p = _normalise(gold), _normalise(pred)
    if g == p:
        return True
    if _INT_RE.fullmatch(g) and _INT_RE.fullmatch(p):
        return int(g) == int(p)
    return None


_CACHE: dict[tuple[str, str], bool | float] = {}  # result, or the budget (s) an over-budget pair ran out of
_CACHE_MAX = 50_000
_CACHE_LOCK = threading.Lock()


def _match_many(pairs: list[tuple[str, str]], timeout_s: float) -> list[bool]:
    out: list[bool | None] = [None] * len(pairs)
    todo: dict[tuple[str, str], list[int]] = {}
    with _CACHE_LOCK:
        for i, pair in enumerate(pairs):
            fast = _fast_compare(*pair)
            if fast is None:
                cached = _CACHE.get(pair)
                if isinstance(cached, bool):
                    fast = cached
                elif cached is not None and timeout_s <= cached:
                    fast = False  # ran over a budget at least as large before: do not wait for it again
            if fast is None:
                todo.setdefault(pair, []).append(i)
            else:
                out[i] = fast
    if todo:
        unique = list(todo)
        results = get_verifier().verify_many(unique, timeout_s)
        with _CACHE_LOCK:
            if len(_CACHE) + len(unique) > _CACHE_MAX:
                _CACHE.clear()
            for pair, ok in zip(unique, results):
                _CACHE[pair] = float(timeout_s) if ok is None else ok
                for i in todo[pair]:
                    out[i] = bool(ok)
    return [bool(v) for v in out]


def answers_match(gold: str, pred: str, timeout_s: float = 2.0) -> bool:
    r"""Whether answer ``pred`` equals ground truth ``gold`` (bare answers, without ``\boxed``).

    >>> answers_match("0.5", r"\frac{1}{2}"), answers_match("3", "4")
    (True, False)
    """
    return _match_many([(str(gold), str(pred))], timeout_s)[0]


def _clean_gold(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if "\\boxed" in text or "\\fbox" in text:
        text = last_boxed(text) or ""
    text = text.strip().strip("$").strip()
    return text or None


def ground_truth(columns: dict[str, Any], i: int, answer_column: str = "answer") -> str | None:
    r"""The ground truth of row ``i``: ``columns[answer_column]``, else ``reward_model["ground_truth"]``, else the
    last ``\boxed{}`` of ``solution``; None when none of them gives a non-empty answer.

    >>> ground_truth({"reward_model": [{"ground_truth": "4", "style": "rule"}]}, 0)
    '4'
    >>> ground_truth({"answer": [""], "solution": [r"so $\boxed{12}$."]}, 0)
    '12'
    """
    for key in (answer_column, "reward_model", "solution"):
        values = columns.get(key)
        if values is None:
            continue
        value = values[i]
        if isinstance(value, dict):
            value = value.get("ground_truth")
        elif key == "solution" and isinstance(value, str):
            value = last_boxed(value)
        gold = _clean_gold(value)
        if gold is not None:
            return gold
    return None


@register_objective("accuracy")
class Accuracy(Objective):
    r"""1.0 if the last ``\boxed{}`` answer equals the ground truth, 0.0 if not, None when the row has no ground truth.

    Parameters:
        answer_column: dataset column holding the ground truth (then ``reward_model``, then ``solution`` are tried).
        timeout_s: wall-clock budget of one math-verify comparison, in seconds (over budget: 0.0).
        max_answer_chars: longest boxed answer considered (longer: 0.0).

    >>> acc = Accuracy()
    >>> acc([r"So \boxed{\frac{1}{2}}", "no box", [{"role": "assistant", "content": r"$\boxed{0.5}$"}]],
    ...     answer=["1/2", "1/2", r"\frac12"])
    [1.0, 0.0, 1.0]
    >>> acc([r"\boxed{4}"], reward_model=[{"ground_truth": "4"}]), acc([r"\boxed{4}"], other=["?"])
    ([1.0], [None])
    """

    name = "accuracy"
    maximize = True

    def __init__(self, answer_column: str = "answer", timeout_s: float = 2.0, max_answer_chars: int = MAX_ANSWER_CHARS):
        super().__init__()
        if not isinstance(answer_column, str) or not answer_column:
            raise ValueError(f"answer_column must be a non-empty column name, but got {answer_column!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real) or not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, but got {timeout_s!r}; give a number of seconds")
        if (isinstance(max_answer_chars, bool) or not isinstance(max_answer_chars, numbers.Real)
                or int(max_answer_chars) != max_answer_chars or max_answer_chars < 1):
            raise ValueError(f"max_answer_chars must be a positive integer, but got {max_answer_chars!r}")
        self.answer_column = answer_column
        self.timeout_s = float(timeout_s)
        self.max_answer_chars = int(max_answer_chars)

    def score(self, texts: list[str], **columns: Any) -> list[float | None]:
        for key in (self.answer_column, "reward_model", "solution"):
            values = columns.get(key)
            if values is not None and len(values) != len(texts):
                raise ValueError(
                    f"accuracy: column {key!r} has {len(values)} values for {len(texts)} completions; "
                    "pass one ground truth per completion"
                )
        out: list[float | None] = [None] * len(texts)
        pairs, where = [], []
        for i, text in enumerate(texts):
            gold = ground_truth(columns, i, self.answer_column)
            if gold is None:
                continue
            pred = last_boxed(text, max_chars=self.max_answer_chars)
            if not pred:
                out[i] = 0.0
                continue
            pairs.append((gold, pred))
            where.append(i)
        for i, ok in zip(where, _match_many(pairs, self.timeout_s)):
            out[i] = 1.0 if ok else 0.0
        return out

    @staticmethod
    def warmup() -> bool:
        """Start the math-verify worker process now rather than on the first batch; False if none can be started."""
        return get_verifier().warmup()

    def __repr__(self) -> str:
        return (f"Accuracy(answer_column={self.answer_column!r}, timeout_s={self.timeout_s}, "
                f"max_answer_chars={self.max_answer_chars})")

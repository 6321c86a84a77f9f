r"""Accuracy: the completion's last ``\boxed{}`` answer checked against the ground truth with math-verify.

Design (bounded time, safe in threads and worker processes):

1. **Extraction** (:func:`last_boxed`) scans only the completion's last 4,000 characters for ``\boxed{`` / ``\fbox{``
   and matches braces up to a nesting depth of 64 and 1,000 characters of content; anything larger is not an
   answer (score 0). So a 50 KB completion or ``\boxed{{{{...`` costs microseconds.
2. **Fast path**: when gold and prediction are plain numbers (integers, decimals, simple fractions) or identical
   after whitespace/``$`` normalisation, they are compared in Python without sympy.
3. **math-verify** (``parse`` + ``verify(gold, pred)``, gold first) runs in a persistent worker *process* with its
   own signal-free settings (``parsing_timeout=None``, ``timeout_seconds=None``), one request per completion; if an
   item takes longer than ``timeout_s`` the worker is killed (so a runaway sympy computation cannot keep burning a
   core) and restarted, and the item scores 0. math-verify's own timeouts use ``signal.alarm``, which only works on
   the main thread -- hence the process. Where a child process cannot be started (e.g. inside a daemonic
   ``multiprocessing.Pool`` worker), verification runs inline: with math-verify's signal timeouts on the main
   thread, or after stricter input caps (200 characters, exponent towers refused) elsewhere.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import re
import threading
from fractions import Fraction
from typing import Any

from .base import Objective, register_objective

__all__ = ["Accuracy", "last_boxed", "answers_match"]

logger = logging.getLogger(__name__)

TAIL_CHARS = 4000
MAX_DEPTH = 64
MAX_CONTENT = 1000
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(/\d+)?$")
_FRAC_RE = re.compile(r"^\\[dt]?frac\{([+-]?\d+)\}\{(\d+)\}$")


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) with balanced braces, or None.

    >>> last_boxed(r"so \boxed{1} or rather \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> last_boxed(r"\boxed{" + "{" * 500) is None
    True
    """
    tail = text[-TAIL_CHARS:]
    starts = [m.end() for m in _BOX_RE.finditer(tail)]
    for start in reversed(starts):
        depth, i = 1, start
        end = min(len(tail), start + MAX_CONTENT + 1)
        while i < end:
            ch = tail[i]
            if ch == "{":
                depth += 1
                if depth > MAX_DEPTH:
                    break
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return tail[start:i].strip()
            i += 1
    return None


def _normalise(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\[,;! ]|\s+", "", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    return s.rstrip(".")


def _as_number(s: str) -> Fraction | None:
    s = _normalise(s).replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", _normalise(s)) else _normalise(s)
    m = _FRAC_RE.match(s)
    if m:
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    if _NUMBER_RE.match(s) and len(s) < 40:
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _fast_compare(gold: str, pred: str) -> bool | None:
    """True/False when decidable without sympy, None otherwise."""
    if _normalise(gold) == _normalise(pred):
        return True
    g, p = _as_number(gold), _as_number(pred)
    if g is not None and p is not None:
        return g == p
    return None


def _verify_inline(gold: str, pred: str, signal_timeouts: bool) -> bool:
    from math_verify import LatexExtractionConfig, parse, verify

    pt, vt = (5, 5) if signal_timeouts else (None, None)
    config = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=True)]
    gold_parsed = parse(f"\\boxed{{{gold}}}", extraction_config=config, parsing_timeout=pt)
    if not gold_parsed:
        gold_parsed = parse(f"${gold}$", parsing_timeout=pt)
    pred_parsed = parse(f"\\boxed{{{pred}}}", extraction_config=config, parsing_timeout=pt)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=vt))


def _worker_loop(conn) -> None:  # runs in the child process
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        gold, pred = item
        try:
            conn.send(_verify_inline(gold, pred, signal_timeouts=False))
        except Exception:  # noqa: BLE001 - any failure to parse/verify means "not verified"
            conn.send(False)


class _Verifier:
    """A persistent worker process for math-verify, restarted whenever an item exceeds its time budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._unavailable = False

    def _start(self) -> bool:
        if self._unavailable:
            return False
        try:
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True)
            proc.start()
        except (AssertionError, OSError, RuntimeError) as exc:  # e.g. "daemonic processes are not allowed to have children"
            logger.info("math-verify runs inline (no worker process: %s)", exc)
            self._unavailable = True
            return False
        self._proc, self._conn = proc, parent
        return True

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=1)
        self._proc = self._conn = None

    def verify(self, gold: str, pred: str, timeout_s: float, startup_s: float = 30.0) -> bool:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                if not self._start():
                    return _inline_bounded(gold, pred)
                budget = timeout_s + startup_s  # the first request also pays for importing sympy in the child
            else:
                budget = timeout_s
            try:
                self._conn.send((gold, pred))
                if self._conn.poll(budget):
                    return bool(self._conn.recv())
            except (EOFError, OSError, BrokenPipeError):
                pass
            logger.warning("math-verify exceeded %.1f s on an answer of %d characters; scored 0", timeout_s, len(pred))
            self._kill()
            return False

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
            self._kill()


def _inline_bounded(gold: str, pred: str) -> bool:
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main and (len(pred) > 200 or pred.count("^") > 2 or re.search(r"\d{30,}", pred)):
        return False  # no way to interrupt sympy off the main thread without a process: refuse risky inputs
    try:
        return _verify_inline(gold, pred, signal_timeouts=on_main)
    except Exception:  # noqa: BLE001
        return False


_VERIFIER = _Verifier()
atexit.register(_VERIFIER.close)


def answers_match(gold: str, pred: str, timeout_s: float = 2.0) -> bool:
    """Whether ``pred`` is mathematically equal to ``gold`` (fast path, then math-verify in the worker)."""
    fast = _fast_compare(gold, pred)
    if fast is not None:
        return fast
    return _VERIFIER.verify(gold, pred, timeout_s)


def _gold_from_row(columns: dict[str, Any], i: int, answer_column: str) -> str | None:
    for key in (answer_column, "reward_model", "solution"):
        values = columns.get(key)
        if values is None:
            continue
        value = values[i]
        if key == "reward_model" and isinstance(value, dict):
            value = value.get("ground_truth")
        elif key == "solution" and isinstance(value, str):
            value = last_boxed(value)
        if value is not None and str(value).strip():
            return str(value)
    return None


@register_objective("accuracy")
class Accuracy(Objective):
    r"""1.0 if the last ``\boxed{}`` answer equals the ground truth, else 0.0; None when the row has no ground truth.

    Ground truth, first found: the ``answer_column`` column (default ``answer``), verl's
    ``reward_model["ground_truth"]``, the last ``\boxed{}`` of a ``solution`` column.

    >>> Accuracy()([r"So \boxed{\frac{1}{2}}", "no box", r"\boxed{0.5}"], answer=["1/2", "1/2", "\\frac12"])
    [1.0, 0.0, 1.0]
    """

    name = "accuracy"
    maximize = True

    def __init__(self, answer_column: str = "answer", timeout_s: float = 2.0):
        super().__init__()
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, but got {timeout_s}")
        self.answer_column = answer_column
        self.timeout_s = float(timeout_s)

    def score(self, texts: list[str], **columns: Any) -> list[float | None]:
        out: list[float | None] = []
        for i, text in enumerate(texts):
            gold = _gold_from_row(columns, i, self.answer_column)
            if gold is None:
                out.append(None)
                continue
            pred = last_boxed(text)
            out.append(float(answers_match(gold, pred, self.timeout_s)) if pred else 0.0)
        return out

    def __repr__(self) -> str:
        return f"Accuracy(answer_column={self.answer_column!r}, timeout_s={self.timeout_s})"

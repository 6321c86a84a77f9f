r"""Bounded-time math-verify: a persistent worker *process* that can be killed when an answer takes too long.

Why a process: math-verify's own timeouts use ``signal.alarm``, which only works on the main thread, and even there a
signal cannot interrupt one long C call (``verify`` on ``9^{9^{9^{9^9}}}`` spends minutes inside a single big-integer
power). A thread cannot be killed either. A child process can.

How it works:

* :class:`Verifier` starts ``python _verifier.py`` with :mod:`subprocess` (not :mod:`multiprocessing`: no
  re-import of the caller's ``__main__``, and it works inside daemonic ``multiprocessing.Pool`` workers, which may not
  start ``multiprocessing`` children). The child imports math-verify once, says ``ready``, then answers JSON lines.
* One call sends *all* its ``(gold, pred)`` pairs in one line; the child answers one line per pair as soon as it is
  done. The parent waits at most ``timeout_s`` for each answer (the clock restarts at every answer), so the budget is
  per item. On a timeout the child is killed, the item scores ``False``, a fresh child is started at once, and the
  remaining items of the batch go to it.
* A lock serialises callers (threads); the child is per process (a forked child of the caller starts its own).
* Backstops in the child: ``RLIMIT_CPU`` is raised batch by batch to "CPU used so far + budget of this batch", so a
  child left behind by a parent that died mid-batch is stopped by the kernel; SIGINT is ignored (Ctrl-C goes to the
  parent, which then closes the pipe) and the child exits when its stdin closes.
* If no child can be started (no usable ``sys.executable``), :func:`verify_inline` runs in the calling process:
  with math-verify's signal timeouts on the main thread, and without them elsewhere, after refusing inputs that are
  known to blow up (power towers, very long numbers).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time

logger = logging.getLogger(__name__)

__all__ = ["Verifier", "verify_inline", "get_verifier"]

#: Seconds a fresh child may take to import math-verify and sympy before we give up on it.
STARTUP_TIMEOUT_S = 60.0

#: Answers that can make sympy run for minutes inside one C call: power towers, very long numbers, big factorials.
_RISKY = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?\s*\d+\s*\^|\d{40,}|\d{4,}\s*!|!\s*!")
_EOF = object()


def _parse_pair(gold: str, pred: str, parsing_timeout: int | None = None):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    def boxed(s: str) -> str:
        return s if "\\boxed" in s else f"\\boxed{{{s}}}"

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    gold_parsed = parse(boxed(gold), extraction_config=config, parsing_timeout=parsing_timeout)
    pred_parsed = parse(boxed(pred), extraction_config=config, parsing_timeout=parsing_timeout)
    return gold_parsed, pred_parsed


def _verify_unbounded(gold: str, pred: str) -> bool:
    """math-verify, signal timeouts off: ``parse`` both sides wrapped in ``\\boxed{}``, then ``verify(gold, pred)``."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse_pair(gold, pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def verify_inline(gold: str, pred: str, timeout_s: float) -> bool:
    """Verify in the calling process (the fallback when no worker process can be started)."""
    if _RISKY.search(pred) and not _RISKY.search(gold):
        return False  # neither a signal nor a thread can interrupt one long C call (a huge power): refuse it
    try:
        if threading.current_thread() is threading.main_thread():
            from math_verify import verify

            secs = max(1, math.ceil(timeout_s))
            gold_parsed, pred_parsed = _parse_pair(gold, pred, parsing_timeout=secs)
            return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=secs))
        if len(pred) > 200:
            return False  # no timeout at all off the main thread: keep to short answers
        return _verify_unbounded(gold, pred)
    except Exception:  # noqa: BLE001 - any failure to parse or compare means "not verified"
        return False


class Verifier:
    """A persistent math-verify worker process with a per-item wall-clock budget (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        self.restarts = 0  # workers killed after a timeout (for diagnostics)

    def _reset(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue | None = None
        self._ready = False
        self._pid = os.getpid()
        self._unavailable = False
        self._batch = 0

    # -- process management -------------------------------------------------------------------------------------
    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and file
                [sys.executable, "-u", os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except (OSError, ValueError) as exc:
            logger.warning("cannot start the math-verify worker (%s); verifying in-process with input caps", exc)
            self._unavailable = True
            return
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True, name="moalign-verifier-reader")
        reader.start()
        self._proc, self._lines, self._ready = proc, lines, False

    def _kill(self) -> None:
        proc, self._proc, self._lines, self._ready = self._proc, None, None, False
        if proc is not None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def _ensure(self) -> bool:
        """A live, ready worker (starting one if needed); False when workers are unavailable."""
        if self._pid != os.getpid():  # we are a forked child: the worker belongs to the parent
            self._reset()
        if self._proc is not None and self._proc.poll() is not None:
            self._kill()
        if self._proc is None:
            if self._unavailable:
                return False
            self._start()
            if self._proc is None:
                return False
        if not self._ready:
            line = self._get(STARTUP_TIMEOUT_S)
            if line != "ready":
                line = "end of output" if line is _EOF else line
                logger.warning("the math-verify worker did not start (%r); verifying in-process", line)
                self._kill()
                self._unavailable = True
                return False
            self._ready = True
        return True

    def _get(self, timeout: float):
        """The worker's next line; None after ``timeout`` seconds; ``_EOF`` when the worker has gone."""
        try:
            return self._lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def warmup(self) -> bool:
        """Start the worker now (so that the first scored batch does not wait for math-verify to import)."""
        with self._lock:
            return self._ensure()

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._pid == os.getpid():
                try:
                    self._proc.stdin.close()
                    self._proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                self._kill()

    # -- verification ---------------------------------------------------------------------------------------------
    def verify_many(self, pairs: list[tuple[str, str]], timeout_s: float) -> list[bool | None]:
        """``verify(gold, pred)`` for each pair, each bounded by ``timeout_s`` seconds of wall-clock time.

        Returns True/False per pair, or None for a pair that ran over its budget (or crashed the worker).
        """
        results: list[bool | None] = [False] * len(pairs)
        if not pairs:
            return results
        with self._lock:
            todo = list(range(len(pairs)))
            while todo:
                if not self._ensure():
                    for i in todo:
                        results[i] = verify_inline(*pairs[i], timeout_s)
                    break
                todo = self._round_trip(pairs, todo, timeout_s, results)
        return results

    def _round_trip(self, pairs, todo, timeout_s, results) -> list[int]:
        """Send ``todo`` in one batch; return the indices still to do after a timeout (empty when all answered)."""
        self._batch += 1
        batch = self._batch
        message = {"batch": batch, "budget": timeout_s * len(todo) + 10.0, "items": [list(pairs[i]) for i in todo]}
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            self._kill()
            return todo
        done = 0
        while done < len(todo):
            deadline = time.monotonic() + timeout_s
            line = None
            while line is None and time.monotonic() < deadline:
                line = self._get(deadline - time.monotonic())
                if line is _EOF:
                    line = None
                    break  # the worker died (e.g. out of memory): like a timeout, without the wait
                if line is not None:
                    try:
                        got_batch, index, ok = json.loads(line)
                    except (ValueError, TypeError):
                        line = None
                        continue
                    if got_batch != batch:
                        line = None  # a late answer from an earlier batch: ignore
                        continue
                    results[todo[index]] = bool(ok)
                    done = index + 1
            if line is None:
                stuck = todo[done]
                logger.warning(
                    "math-verify exceeded %.1f s on an answer of %d characters; scored 0 and restarted the worker",
                    timeout_s, len(pairs[stuck][1]),
                )
                results[stuck] = None
                self._kill()
                self.restarts += 1
                self._start()  # begin importing in the background while the caller goes on
                return todo[done + 1:]
        return []


def _pump(stream, lines: queue.Queue) -> None:
    try:
        for line in stream:
            lines.put(line.strip())
    except (OSError, ValueError):
        pass
    lines.put(_EOF)


_VERIFIER: Verifier | None = None
_VERIFIER_LOCK = threading.Lock()


def get_verifier() -> Verifier:
    """The process-wide :class:`Verifier` (created on first use, closed at exit)."""
    global _VERIFIER
    with _VERIFIER_LOCK:
        if _VERIFIER is None:
            import atexit

            _VERIFIER = Verifier()
            atexit.register(_VERIFIER.close)
        return _VERIFIER


def _after_fork_in_child() -> None:
    global _VERIFIER, _VERIFIER_LOCK
    _VERIFIER_LOCK = threading.Lock()
    if _VERIFIER is not None:
        _VERIFIER._lock = threading.Lock()
        _VERIFIER._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _child_main() -> None:  # pragma: no cover - runs in the worker process
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.disable(logging.CRITICAL)  # math-verify warns about disabled timeouts: we bound time from outside
    try:
        import resource
    except ImportError:
        resource = None
    _verify_unbounded("1", "1")  # import math-verify and sympy before saying we are ready
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if resource is not None:
            used = time.process_time()
            try:
                _, hard = resource.getrlimit(resource.RLIMIT_CPU)
                soft = int(used + float(message.get("budget", 60))) + 1
                if hard != resource.RLIM_INFINITY:
                    soft = min(soft, hard)
                resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
            except (ValueError, OSError):
                pass
        for index, (gold, pred) in enumerate(message["items"]):
            try:
                ok = _verify_unbounded(gold, pred)
            except Exception:  # noqa: BLE001
                ok = False
            out.write(json.dumps([message["batch"], index, ok]) + "\n")
            out.flush()


if __name__ == "__main__":  # pragma: no cover
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # our siblings (base.py, ...) must not shadow other modules
    _child_main()

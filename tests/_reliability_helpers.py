"""Helpers for tests/test_reliability.py (imported by the tests and, by module path, by `moalign train` subprocesses).

* :class:`TripwireClarity` -- exactly :class:`moalign.objectives.Clarity`, except that when the environment variable
  ``MOALIGN_TEST_TRIPWIRE=<marker path>:<n>`` is set, its n-th *training* call (= RL step n, while rewards are being
  computed, after generation and before the update) writes ``<marker path>`` and sleeps. The kill test waits for the
  marker and SIGKILLs the run: the kill lands inside a known step instead of racing a timer. Without the variable the
  objective is plain Clarity, so an uninterrupted reference run uses the same objective spec.
* :class:`DigitShare` -- share of digit characters in a completion, a continuous score in [0, 1] (the load test uses
  it so that the hypervolume strategy's Pareto buffer sees varied points even from a random tiny model).
* :func:`start_train`, :func:`wait_for`, :func:`sigkill` -- run ``python -m moalign.cli train`` in its own session
  with output to files, poll for a condition, kill it (and only the processes it started).

The subprocess finds this module through ``PYTHONPATH`` (set by :func:`start_train`); objectives name it as
``_reliability_helpers:TripwireClarity``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moalign.objectives import Clarity, Objective

TESTS_DIR = Path(__file__).resolve().parent
TRIPWIRE_ENV = "MOALIGN_TEST_TRIPWIRE"


class TripwireClarity(Clarity):
    """Clarity that parks the process inside training step n when ``MOALIGN_TEST_TRIPWIRE=<path>:<n>`` is set."""

    name = "clarity"

    def __init__(self) -> None:
        super().__init__()
        self.training_calls = 0

    def score(self, texts: list[str], **columns: Any) -> list[float | None]:
        out = super().score(texts, **columns)
        if self.training:  # evaluations switch `training` off, so only RL steps count
            self.training_calls += 1
            spec = os.environ.get(TRIPWIRE_ENV)
            if spec:
                path, _, n = spec.rpartition(":")
                if self.training_calls == int(n):
                    Path(path).write_text(str(os.getpid()))
                    time.sleep(600)  # the test kills us here
        return out


class DigitShare(Objective):
    """Share of digit characters in the completion (0.0 for an empty one)."""

    name = "digit_share"
    maximize = True

    def score(self, texts: list[str], **columns: Any) -> list[float | None]:
        return [sum(c.isdigit() for c in t) / len(t) if t else 0.0 for t in texts]


def start_train(config: Path, log_dir: Path, *flags: str, env: dict[str, str] | None = None,
                tag: str = "run") -> subprocess.Popen:
    """``python -m moalign.cli train <config> <flags>`` in a new session; output goes to ``<log_dir>/<tag>.log``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), full_env.get("PYTHONPATH", "")) if p)
    full_env.pop(TRIPWIRE_ENV, None)
    full_env.setdefault("OMP_NUM_THREADS", "1")  # see test_reliability.one_torch_thread
    full_env.update(env or {})
    with open(log_dir / f"{tag}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "moalign.cli", "train", str(config), *flags],
            stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True,
        )


def log_tail(log_dir: Path, tag: str = "run", chars: int = 3000) -> str:
    path = log_dir / f"{tag}.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float, what: str) -> float:
    """Poll ``condition`` every 10 ms; fail if ``proc`` exits first or ``timeout`` seconds pass. Returns seconds."""
    start = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the training process exited (rc={proc.returncode}) before {what}")
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def sigkill(proc: subprocess.Popen) -> int:
    """SIGKILL the training process, then whatever is left of the session it started (e.g. its verifier worker)."""
    os.kill(proc.pid, signal.SIGKILL)
    rc = proc.wait(timeout=60)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session was created by start_train for this process only
    except ProcessLookupError:
        pass
    return rc


def reward(completions, **kwargs):
    """A user reward function named `reward` (as many are), importable as ``_reliability_helpers:reward``."""
    return [float(len(str(c)) % 2) for c in completions]


class Other:
    """Holds a second, different reward function also named `reward` (``_reliability_helpers:Other.reward``)."""

    @staticmethod
    def reward(completions, **kwargs):
        return [float(len(str(c)) % 3 == 0) for c in completions]

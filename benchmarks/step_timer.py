"""The time of each whole training step, end-of-step work included, for the step-time benchmarks.

MOGRPOTrainer finishes a step in its own callback's ``on_step_end`` (the strategy's post-update work: CTWA's extra
forward, validation points, steps.jsonl, evaluations). A timer given to the trainer as ``callbacks=[timer]`` comes
before that callback in the handler's list, so its ``on_step_end`` stopped the clock before that work ran: the
earlier figures of bench_trainer.py and bench_real_model.py left it out. :meth:`WholeStepTimer.attach` appends the
timer after every callback the trainer has, and the timer refuses to run anywhere else.

    timer = WholeStepTimer().attach(trainer)
    trainer.train()
    timer.times  # seconds per optimizer step
"""

from __future__ import annotations

import time
from collections.abc import Callable

from transformers import TrainerCallback

__all__ = ["WholeStepTimer"]


class WholeStepTimer(TrainerCallback):
    """Per-step time from ``on_step_begin`` to the end of the last ``on_step_end``: wall clock by default, or any
    ``clock`` (``time.process_time``: this process's CPU time, which other processes on a shared machine do not
    inflate)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock, self.times = clock, []
        self._started: float | None = None
        self._callbacks: list | None = None

    def attach(self, trainer) -> WholeStepTimer:
        """Add the timer as the trainer's last callback (after MOGRPOTrainer's end-of-step callback)."""
        trainer.add_callback(self)
        self._callbacks = trainer.callback_handler.callbacks
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        if self._callbacks is None or self._callbacks[-1] is not self:
            raise RuntimeError("WholeStepTimer must be the trainer's last callback, or it stops the clock before the "
                               "trainer's end-of-step work: build the trainer without it, then call "
                               "WholeStepTimer().attach(trainer)")

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(self.clock() - self._started)

"""Runs trained in worker processes, stopped cleanly: what ``moalign bench`` and ``moalign demo`` share.

Each run is a job (a dict) that a module-level function trains in a spawned worker process; a finished run is complete
on disk, so an interrupted command can resume. SIGTERM and Ctrl-C end the workers instead of orphaning them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol

__all__ = ["stop_on_signals", "train_in_workers"]


class RunProgress(Protocol):
    def running(self, job: dict[str, Any]) -> None: ...

    def finished(self, job: dict[str, Any], result: Any) -> None: ...  # what ``run`` returned


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM, and SIGINT also in a background job (which starts with SIGINT ignored), stop the command as Ctrl-C
    does, with a ``KeyboardInterrupt`` on which :func:`train_in_workers` stops its workers; otherwise the workers were
    orphaned and trained on. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def train_in_workers(todo: list[dict[str, Any]], workers: int, bar: RunProgress,
                     run: Callable[[dict[str, Any]], Any]) -> None:
    """Train the runs, ``workers`` at a time (in this process when ``workers`` is 1). ``run(job)`` trains one and
    returns what ``bar.finished`` receives (its time); it must be a module-level function, so that a spawned worker
    can import it."""
    if workers == 1:
        for job in todo:
            bar.running(job)
            bar.finished(job, run(job))
        return
    import multiprocessing

    from ._quiet import libraries_quiet, quiet_worker

    # a spawned worker starts with the libraries' defaults: it gets the command's choice (quiet or --verbose)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=quiet_worker,
                             initargs=(libraries_quiet(),)) as pool:
        futures = {pool.submit(run, job): job for job in todo}
        try:
            for fut in as_completed(futures):
                bar.finished(futures[fut], fut.result())  # a failed run re-raises here, with its traceback
        except KeyboardInterrupt:
            # the end of the block would wait for the running runs and then train the queued ones: end the running
            # ones (Python 3.14 has pool.terminate_workers() for this), cancel the others
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(cancel_futures=True)
            raise

"""What a ``moalign`` command shows: its own output, and the libraries' only when ``--verbose`` asks for it.

transformers, TRL, datasets and accelerate address their warnings, log lines and progress bars ("Loading weights",
"Map", "Writing model shards", deprecation notices) to someone who configured them by hand. Inside a ``moalign``
command they bury the command's own output, so :func:`command_output` switches them off for the command's duration,
through the libraries' own switches, and restores them after. Errors still show: a library's ERROR log records,
exceptions and moalign's own warnings and log lines are never hidden.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

__all__ = ["command_output", "libraries_quiet", "quiet_libraries", "quiet_worker"]

# Python warnings attributed to these packages are the libraries' own notices (e.g. TRL calling transformers'
# deprecated ``gradient_checkpointing_*``); a warning attributed to moalign or user code still shows.
_LIBRARY_MODULES = r"(transformers|trl|accelerate|datasets|peft|torch|huggingface_hub|tqdm)(\.|$)"
_OWN_LOGGERS = ("moalign", "__main__")
_depth = 0  # how many quiet_libraries() contexts are open in this process


def _switch_libraries_off() -> Callable[[], None]:
    """Only errors from the libraries' loggers, none of their progress bars; returns a function that restores them."""
    import datasets
    import transformers

    tf_log, ds_log = transformers.utils.logging, datasets.utils.logging
    saved = (tf_log.get_verbosity(), tf_log.is_progress_bar_enabled(), ds_log.get_verbosity(),
             datasets.is_progress_bar_enabled(), logging.getLogger("trl").level)
    tf_log.set_verbosity_error()
    tf_log.disable_progress_bar()
    ds_log.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)

    def restore() -> None:
        tf_log.set_verbosity(saved[0])
        if saved[1]:
            tf_log.enable_progress_bar()
        ds_log.set_verbosity(saved[2])
        if saved[3]:
            datasets.enable_progress_bars()
        logging.getLogger("trl").setLevel(saved[4])

    return restore


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Only errors from transformers, datasets and TRL, none of their progress bars and none of the Python warnings
    issued from inside the libraries, while the block runs; every switch is restored after."""
    global _depth
    restore = _switch_libraries_off()
    _depth += 1
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_LIBRARY_MODULES)
            yield
    finally:
        _depth -= 1
        restore()


def libraries_quiet() -> bool:
    """Whether a :func:`quiet_libraries` block is open in this process (worker processes inherit the choice)."""
    return _depth > 0


def quiet_worker(quiet: bool) -> None:
    """Initializer of a worker process (``ProcessPoolExecutor(initializer=quiet_worker, initargs=(quiet,))``): the
    parent's choice, for the worker's whole life (a spawned process starts with the libraries' defaults)."""
    if quiet:
        _switch_libraries_off()
        warnings.filterwarnings("ignore", module=_LIBRARY_MODULES)


class _OwnRecordsBelowError(logging.Filter):
    """Below ERROR, only moalign's own log records pass; a library's errors still do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in _OWN_LOGGERS


@contextlib.contextmanager
def command_output(verbose: bool, level: int = logging.WARNING) -> Iterator[None]:
    """The console of one command: moalign's log records from ``level`` up; unless ``verbose``, none of the
    libraries' warnings, log records below ERROR or progress bars."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        yield
        return
    own_only = _OwnRecordsBelowError()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(own_only)
    try:
        with quiet_libraries():
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(own_only)

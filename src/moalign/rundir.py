"""The run directory: a stable, documented on-disk format (see docs/run_directory.md).

```
<run_dir>/
  run.json          config, objectives, strategy, seed, package versions
  steps.jsonl       one line per RL step
  evals.jsonl       one line per evaluation
  checkpoints/      trainer checkpoints, each with moalign_state.json
  report/           written by `moalign report`
```

Every whole-file write is atomic (write to a temporary file in the same directory, fsync, rename), and JSONL files
are appended one complete line at a time and repaired on resume (a torn last line is dropped, lines past the
resumed step are removed), so a run killed at any instant leaves files a resumed run can continue.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "STATE_FILE",
    "atomic_write_json",
    "append_jsonl",
    "sync_file",
    "read_jsonl",
    "truncate_jsonl",
    "read_state_file",
    "package_versions",
    "start_logs",
    "to_jsonable",
    "run_json",
]

logger = logging.getLogger(__name__)

STATE_FILE = "moalign_state.json"
STATE_FORMAT_VERSION = 1


def to_jsonable(obj: Any) -> Any:
    """Numpy/torch scalars and arrays -> Python types; non-finite floats -> None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    return str(obj)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + fsync + rename)."""
    _atomic_write(Path(path), lambda f: json.dump(to_jsonable(data), f, indent=2, allow_nan=False))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + fsync + rename): a reader sees the old or the new file."""
    _atomic_write(Path(path), lambda f: f.write(text))


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it over ``path``; on any
    failure the old file is untouched and the temporary file removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_jsonl(path: str | os.PathLike, record: dict[str, Any], *, fsync: bool = True) -> None:
    """Append one JSON line, written with a single ``write`` call and fsync'd unless ``fsync=False``.

    A killed process loses nothing either way (the line is in the page cache after ``write``); fsync only guards
    against a machine crash, at ~10 ms per call on common disks. The trainer appends its per-step lines without it and
    calls :func:`sync_file` when a checkpoint is saved, so every line up to a checkpoint is on disk before it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(to_jsonable(record), allow_nan=False) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def sync_file(path: str | os.PathLike) -> None:
    """fsync an existing file (no-op when it does not exist)."""
    path = Path(path)
    if path.exists():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete lines of a JSONL file (a torn last line, from a killed writer, is skipped)."""
    return list(_iter_jsonl(Path(path)))


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.endswith("\n"):
                return  # torn write at the end of the file
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({exc}); the file is corrupt") from exc


def truncate_jsonl(path: str | os.PathLike, max_step: int | None = None) -> int:
    """Rewrite ``path`` atomically keeping complete lines with ``step <= max_step``. Returns lines kept."""
    path = Path(path)
    if not path.exists():
        return 0
    records = [r for r in _iter_jsonl(path) if max_step is None or int(r.get("step", 0)) <= max_step]
    _atomic_write(path, lambda f: f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in records))
    return len(records)


def read_state_file(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """Load ``moalign_state.json`` from a checkpoint, with errors that say what is wrong and what to do."""
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing, so the weighting strategy and objective state of this checkpoint cannot be restored. "
            "Resume from a checkpoint written by moalign (each has moalign_state.json), or start a new run; "
            "moalign does not silently restart weight adaptation from scratch."
        )
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is corrupt ({exc}); resume from an earlier checkpoint in {Path(checkpoint_dir).parent}"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} holds a JSON {type(state).__name__}, not an object; it is corrupt or not a moalign state file. "
            f"Resume from an earlier checkpoint in {Path(checkpoint_dir).parent}"
        )
    missing = {"format_version", "strategy", "objectives"} - set(state)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}; it was not written by this version of moalign")
    if state["format_version"] != STATE_FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {state['format_version']}, expected {STATE_FORMAT_VERSION}")
    return state


def set_aside_old_logs(run_dir: str | os.PathLike, names: tuple[str, ...] = ("steps.jsonl", "evals.jsonl")) -> list[Path]:
    """Rename run files left by an earlier (e.g. killed) run so a new run neither mixes nor loses them."""
    import time

    moved = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in names:
        path = Path(run_dir) / name
        if path.exists():
            target = path.with_name(f"{name}.{stamp}.old")
            os.replace(path, target)
            moved.append(target)
    return moved


def start_logs(run_dir: str | os.PathLike, resumed_step: int | None = None) -> list[Path]:
    """Before training: a resumed run continues its files, without what the killed run wrote after its checkpoint
    (``resumed_step``); a new run sets aside the logs an earlier run left (returned, with a warning each)."""
    if resumed_step is not None:
        for name in ("steps.jsonl", "evals.jsonl"):
            truncate_jsonl(Path(run_dir) / name, max_step=resumed_step)
        return []
    old = set_aside_old_logs(run_dir)
    for path in old:
        logger.warning("%s already held a run's logs; kept them as %s (pass resume_from_checkpoint to continue that "
                       "run instead)", run_dir, path.name)
    return old


def run_json(record: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``run.json`` holds: ``record`` (config, objectives, strategy, ...) plus the package versions, the start
    time and ``extra`` (e.g. the dataset and model of ``moalign train``)."""
    import time

    return {**record, "versions": package_versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("moalign", "torch", "transformers", "trl", "accelerate", "datasets", "peft", "moocore", "torchjd",
                 "math-verify", "numpy", "vllm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out

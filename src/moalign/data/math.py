r"""Math datasets as TRL-ready rows: Math500 (Hub or verl parquet), MATH-lighteval, GSM8K and local files.

Every loader returns rows with

* ``prompt``: ``[{"role": "user", "content": problem + " " + STEP_BY_STEP_SUFFIX}]`` (or the plain string with
  ``chat=False``); verl parquet rows keep the ``prompt`` they already have;
* ``answer``: the ground truth as a string (what :class:`moalign.objectives.Accuracy` reads);
* ``problem`` and every other column of the source (``solution``, ``subject``, ``level``, ``unique_id``...).

Sources (:func:`load_math_dataset`): a Hub name (``load_dataset(name)``), a directory of per-split files
(``train/val/test`` ``.parquet``/``.jsonl``/``.json``, e.g. a verl export), one local ``.parquet``/``.jsonl``/``.json``
file, or a short name of a dataset shipped inside the package: ``math500`` is the Math500 split below, as verl parquet
files in ``moalign/data/math500/`` (:data:`MATH500_DIR`; MIT licence notice beside them). Everything goes through
``datasets.load_dataset``.

Splits: ``train``, ``val`` and ``test``. A source with a single split (the Hub's ``HuggingFaceH4/MATH-500`` has only
its 500-row ``test`` split; a single local file) is split the way the reference code of arXiv 2509.11452 split
Math500 -- ``ds.train_test_split(test_size=0.4, seed=42)``, then the 40 % part ``.train_test_split(test_size=0.5,
seed=42)`` whose first part becomes ``test`` and second part ``val`` -- which gives 300/100/100 rows for Math500,
identical (rows and order) to the verl parquet files shipped as ``math500``. A source with ``train`` and
``test`` only (MATH-lighteval, GSM8K) gets a ``val`` split of ``val_size`` rows cut from ``train`` with the same seed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MATH500_DIR",
    "SHIPPED_DATASETS",
    "STEP_BY_STEP_SUFFIX",
    "extract_gsm8k_answer",
    "load_math_dataset",
    "split_dataset",
    "to_trl_rows",
]

logger = logging.getLogger(__name__)

STEP_BY_STEP_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."

MATH500_DIR = Path(__file__).resolve().parent / "math500"
"""The shipped Math500 split: ``train.parquet`` (300 rows), ``val.parquet`` (100), ``test.parquet`` (100), verl
schema; the MIT licence notice of MATH is in ``README.md`` beside them."""

SHIPPED_DATASETS = {"math500": MATH500_DIR}
"""Short names accepted by :func:`load_math_dataset` (and ``dataset:`` in configs) for data shipped in the package."""

_FILE_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "eval": "val"}
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def extract_gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution (after ``####``), without thousands separators.

    >>> extract_gsm8k_answer("Natalia sold 48/2 = 24 clips in May.\\n#### 1,072")
    '1072'
    """
    m = _GSM8K_ANSWER.search(text or "")
    return m.group(1).replace(",", "").strip() if m else None


def _last_boxed(text: str) -> str | None:
    from ..objectives.accuracy import last_boxed

    return last_boxed(text)


def _missing_columns_error(label: str, missing: list[str], columns: Sequence[str]) -> ValueError:
    return ValueError(
        f"{label} lacks column(s) {missing}; columns found: {sorted(columns)}. A math dataset needs a problem column "
        "('problem' or 'question') and a ground truth ('answer', or a 'solution' ending in \\boxed{...}), or verl's "
        "'prompt' + 'reward_model' columns. Name your columns with problem_column=... and answer_column=..."
    )


def to_trl_rows(
    dataset,
    *,
    problem_column: str | None = None,
    answer_column: str = "answer",
    suffix: str | None = STEP_BY_STEP_SUFFIX,
    chat: bool = True,
    label: str = "dataset",
):
    r"""Map one ``datasets.Dataset`` of any supported schema to TRL-ready rows (see the module docstring).

    Schemas, by columns: verl (``prompt`` list of messages + ``reward_model``); problem/answer (``problem`` or
    ``problem_column``, with ``answer_column``, else the last ``\boxed{}`` of ``solution``); GSM8K (``question`` +
    ``answer`` ending in ``#### 42``: the answer becomes ``42``, the worked text goes to ``solution``). Rows whose
    ground truth is empty are dropped, with a warning. Missing columns raise ValueError.
    """
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        raise ValueError(f"{label}: expected a datasets.Dataset, but got {type(dataset).__name__}")
    cols = list(dataset.column_names)
    verl = "prompt" in cols and ("reward_model" in cols or answer_column in cols) and problem_column is None

    if verl:
        def convert(row: dict[str, Any]) -> dict[str, Any]:
            messages = row["prompt"]
            gold = row.get(answer_column) if answer_column in cols else None
            if gold is None or not str(gold).strip():
                rm = row.get("reward_model") or {}
                gold = rm.get("ground_truth") if isinstance(rm, dict) else None
            if (gold is None or not str(gold).strip()) and "solution" in cols:
                gold = _last_boxed(str(row["solution"] or ""))
            if isinstance(messages, str):
                messages = [{"role": "user", "content": messages}]
            content = messages[-1]["content"] if messages else ""
            problem = content[: -len(suffix) - 1] if suffix and content.endswith(" " + suffix) else content
            return {
                "_prompt": messages if chat else content,
                "_answer": "" if gold is None else str(gold).strip(),
                "_problem": str(row["problem"]) if "problem" in cols else problem,
            }

        mapped = _map(dataset, convert, cols)
        if suffix:
            lacking = sum(1 for p in mapped["prompt"] if not _prompt_text(p).rstrip().endswith(suffix))
            if lacking:
                logger.warning("%s: %d of %d verl prompts do not end with the suffix %r; they are kept as they are",
                               label, lacking, len(mapped), suffix)
    else:
        pcol = problem_column or next((c for c in ("problem", "question") if c in cols), "problem")
        missing = [c for c in (pcol,) if c not in cols]
        if answer_column not in cols and "solution" not in cols:
            missing.append(answer_column)
        if missing:
            raise _missing_columns_error(label, missing, cols)
        gsm8k = answer_column == "answer" and pcol == "question" and _looks_gsm8k(dataset)

        def convert(row: dict[str, Any]) -> dict[str, Any]:
            problem = str(row[pcol]).strip()
            if gsm8k:
                worked = str(row["answer"])
                gold, extra = extract_gsm8k_answer(worked), {"solution": worked}
            else:
                gold = row.get(answer_column) if answer_column in cols else None
                if isinstance(gold, dict):
                    gold = gold.get("ground_truth")
                gold = None if gold is None else str(gold).strip()
                if not gold and "solution" in cols:
                    gold = _last_boxed(str(row["solution"] or ""))
                extra = {}
            text = f"{problem} {suffix}" if suffix else problem
            return {"_prompt": [{"role": "user", "content": text}] if chat else text, "_answer": gold or "",
                    "_problem": problem, **extra}

        mapped = _map(dataset, convert, cols)
    empty = [i for i, a in enumerate(mapped["answer"]) if not a]
    if empty:
        logger.warning("%s: dropped %d of %d rows without a ground truth (first: row %d)", label, len(empty),
                       len(mapped), empty[0])
        keep = sorted(set(range(len(mapped))) - set(empty))
        mapped = mapped.select(keep, keep_in_memory=True)
    first = ["prompt", "answer", "problem"]
    return mapped.select_columns(first + [c for c in mapped.column_names if c not in first])


def _map(dataset, fn, columns: list[str]):
    """``dataset.map(fn)``, whose ``_prompt``/``_answer``/``_problem`` replace ``prompt``/``answer``/``problem``.

    (Writing the final names directly would not do: datasets keeps the feature type of a column that a map
    overwrites, so an integer ``answer`` would stay integer.)
    """
    mapped = dataset.map(fn, keep_in_memory=True)
    replaced = [c for c in ("prompt", "answer", "problem") if c in columns]
    if replaced:
        mapped = mapped.remove_columns(replaced)
    return mapped.rename_columns({"_prompt": "prompt", "_answer": "answer", "_problem": "problem"})


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "".join(m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user")


def _looks_gsm8k(dataset) -> bool:
    sample = dataset.select(range(min(20, len(dataset))))["answer"]
    return bool(sample) and all(isinstance(a, str) and "####" in a for a in sample)


def split_dataset(dataset, seed: int = 42, split_sizes: Sequence[float] = (0.6, 0.2, 0.2)):
    """Split one dataset into ``train``/``val``/``test`` the way the reference code split Math500.

    ``split_sizes`` are fractions summing to 1 or row counts (train, val, test). ``dataset.train_test_split(
    test_size=val+test, seed)`` gives ``train``; its held-out part is split again with ``test_size=val`` (relative):
    the first part is ``test``, the second ``val``. Deterministic for a given seed and row order; 500 rows give
    300/100/100 with the default fractions or with ``(300, 100, 100)``, the same rows either way.
    """
    from datasets import DatasetDict

    sizes = tuple(split_sizes)
    if len(sizes) != 3 or any(isinstance(x, bool) or not x > 0 for x in sizes):
        raise ValueError(f"split_sizes must be three positive numbers (train, val, test), but got {split_sizes!r}")
    n = len(dataset)
    if all(isinstance(x, int) for x in sizes):
        if sum(sizes) > n:
            raise ValueError(f"split_sizes {sizes} need {sum(sizes)} rows but the dataset has {n}; "
                             "give smaller sizes or fractions such as (0.6, 0.2, 0.2)")
        train_n, val_n, test_n = sizes
        first = dataset.train_test_split(test_size=val_n + test_n, train_size=train_n, seed=seed, shuffle=True,
                                         keep_in_memory=True)
        second = first["test"].train_test_split(test_size=val_n, seed=seed, shuffle=True, keep_in_memory=True)
    else:
        if abs(sum(sizes) - 1.0) > 1e-6:
            raise ValueError(f"split_sizes as fractions must sum to 1, but {sizes} sums to {sum(sizes)}")
        if n < 3:
            raise ValueError(f"cannot split {n} rows into train/val/test; give at least 3 rows")
        _, val_f, test_f = (float(x) for x in sizes)
        first = dataset.train_test_split(test_size=val_f + test_f, seed=seed, shuffle=True, keep_in_memory=True)
        second = first["test"].train_test_split(test_size=val_f / (val_f + test_f), seed=seed, shuffle=True,
                                                keep_in_memory=True)
    return DatasetDict({"train": first["train"], "val": second["test"], "test": second["train"]})


def _load_raw(source: str, subset: str | None, revision: str | None, cache_dir: str | None):
    """``datasets.load_dataset`` on a Hub name, a directory of per-split files or one file -> ``DatasetDict``."""
    from datasets import DatasetDict, load_dataset

    path = SHIPPED_DATASETS.get(source.lower()) or Path(source).expanduser()
    kwargs: dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
    if path.is_dir():
        files: dict[str, str] = {}
        fmt = None
        for f in sorted(path.iterdir()):
            if f.suffix in _FILE_FORMATS and f.is_file():
                split = _SPLIT_ALIASES.get(f.stem, f.stem)
                if split in files:
                    raise ValueError(f"{path} has two files for split {split!r}: {files[split]} and {f}")
                if fmt is not None and _FILE_FORMATS[f.suffix] != fmt:
                    raise ValueError(f"{path} mixes file formats; keep one format (parquet or jsonl) per directory")
                fmt = _FILE_FORMATS[f.suffix]
                files[split] = str(f)
        if not files:
            raise ValueError(f"{path} holds no .parquet/.jsonl/.json/.csv files (expected train/val/test.parquet)")
        return load_dataset(fmt, data_files=files, **kwargs)
    if path.is_file():
        fmt = _FILE_FORMATS.get(path.suffix)
        if fmt is None:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use {', '.join(sorted(_FILE_FORMATS))}")
        return DatasetDict({"data": load_dataset(fmt, data_files=str(path), split="train", **kwargs)})
    if source.startswith((".", "/", "~")) or source.endswith(tuple(_FILE_FORMATS)):
        raise FileNotFoundError(f"{source} does not exist (a local file or directory was expected)")
    ds = load_dataset(source, subset, revision=revision, **kwargs)
    return ds if isinstance(ds, DatasetDict) else DatasetDict({"data": ds})


def load_math_dataset(
    source: str,
    split: str | None = None,
    *,
    seed: int = 42,
    problem_column: str | None = None,
    answer_column: str = "answer",
    suffix: str | None = STEP_BY_STEP_SUFFIX,
    chat: bool = True,
    split_sizes: Sequence[float] = (0.6, 0.2, 0.2),
    val_size: int | float = 100,
    subset: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    system_prompt: str | None = None,
    few_shot: list[list[str]] | None = None,
):
    """A math dataset as TRL-ready ``train``/``val``/``test`` splits (a ``datasets.DatasetDict``).

    Parameters:
        source: ``math500`` (the shipped split, see :data:`SHIPPED_DATASETS`), a Hub name (``HuggingFaceH4/MATH-500``,
            ``DigitalLearningGmbH/MATH-lighteval``, ``openai/gsm8k`` with ``subset="main"``), a directory of
            per-split files (``train/val/test.parquet``; ``validation`` is read as ``val``), or one
            ``.parquet``/``.jsonl``/``.json``/``.csv`` file. A local directory named like a short name is read with
            an explicit path (``./math500``).
        split: return only this split (a ``datasets.Dataset``).
        seed: seed of the deterministic splits (42 as in the reference code).
        problem_column / answer_column: column names when they differ from ``problem``/``question`` and ``answer``.
        suffix: appended to the problem, after a space (None: nothing). verl prompts are kept as they are.
        chat: ``prompt`` as a chat-message list (True) or as plain text.
        split_sizes: train/val/test fractions (or row counts) for single-split sources (see :func:`split_dataset`).
        val_size: rows (int) or fraction (float) of ``train`` held out as ``val`` when the source has ``train`` and
            ``test`` but no validation split.
        subset / revision / cache_dir: passed to ``datasets.load_dataset``.
        system_prompt / few_shot: a system message and ``[[user, assistant], ...]`` example turns put before every
            chat prompt (:func:`moalign.data.prompts.add_context`).

    Splits are made *after* the rows are converted, so a Hub download and a local copy of the same data give the same
    rows in the same order.
    """
    from datasets import DatasetDict

    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a Hub name or a path, but got {source!r}")
    raw = _load_raw(source, subset, revision, cache_dir)
    raw = DatasetDict({_SPLIT_ALIASES.get(k, k): v for k, v in raw.items()})
    conv = DatasetDict({
        k: to_trl_rows(v, problem_column=problem_column, answer_column=answer_column, suffix=suffix, chat=chat,
                       label=f"{source} [{k}]")
        for k, v in raw.items()
    })
    if system_prompt or few_shot:
        from .prompts import add_context

        conv = DatasetDict({k: add_context(v, system_prompt, few_shot) for k, v in conv.items()})
    names = set(conv)
    if {"train", "val", "test"} <= names:
        out = DatasetDict({k: conv[k] for k in ("train", "val", "test")})
    elif len(conv) == 1:
        out = split_dataset(next(iter(conv.values())), seed=seed, split_sizes=split_sizes)
    elif {"train", "test"} <= names:
        if isinstance(val_size, bool) or not (val_size > 0):
            raise ValueError(f"val_size must be a positive int or fraction, but got {val_size!r}")
        parts = conv["train"].train_test_split(test_size=val_size, seed=seed, shuffle=True, keep_in_memory=True)
        out = DatasetDict({"train": parts["train"], "val": parts["test"], "test": conv["test"]})
    else:
        raise ValueError(
            f"{source} has splits {sorted(names)}; expected train/val/test, train/test, or a single split to divide"
        )
    if split is None:
        return out
    split = _SPLIT_ALIASES.get(split, split)
    if split not in out:
        raise ValueError(f"split={split!r} is not one of {', '.join(out)}")
    return out[split]

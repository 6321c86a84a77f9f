r"""Math datasets as TRL-ready rows: ``prompt`` (chat messages ending with the step-by-step suffix), ``answer``.

Sources (all loaded with ``datasets.load_dataset``):

=====================================  ========================================================================
``HuggingFaceH4/MATH-500``             Hub: a single ``test`` split of 500 problems (problem, solution, answer,
                                       subject, level, unique_id) -> split 300/100/100 (train/val/test) with a
                                       seeded permutation (``seed=42``), as in both papers.
``DigitalLearningGmbH/MATH-lighteval``  Hub: train/test with problem, level, type, solution; the answer is the
                                       solution's last ``\boxed{}``.
a directory of parquet files           verl schema (``prompt`` = chat messages, ``reward_model.ground_truth``,
                                       ``solution``, ``subject``, ``level``), one file per split, e.g. the
                                       shared ``math500/{train,val,test}.parquet``; prompts are kept as they are.
a local ``.jsonl``/``.json``/``.parquet``  ``problem`` and ``answer`` columns (names configurable); a single
                                       split is divided 300/100/100-style by ``split_sizes``.
=====================================  ========================================================================

Missing columns raise an error naming them, the columns found, and the argument that fixes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["STEP_BY_STEP_SUFFIX", "load_math_dataset", "to_trl_rows", "split_dataset"]

STEP_BY_STEP_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."
MATH500_SPLIT = (300, 100, 100)
_LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _require(columns: list[str], needed: list[str], source: str, fix: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(f"{source} lacks column(s) {missing}; columns found: {sorted(columns)}. {fix}")


def _boxed(text: str | None) -> str | None:
    from ..objectives.accuracy import last_boxed

    return last_boxed(text) if isinstance(text, str) else None


def to_trl_rows(ds, *, problem_column: str = "problem", answer_column: str | None = "answer", source: str = "dataset"):
    """Map a problem/answer dataset to ``prompt`` messages + ``answer`` (other columns are kept)."""
    columns = list(ds.column_names)
    fix = "Pass problem_column=/answer_column= to name your columns."
    if "prompt" in columns and ("reward_model" in columns or "answer" in columns) and problem_column not in columns:
        return _from_verl(ds, source)
    _require(columns, [problem_column], source, fix)
    if answer_column is None or answer_column not in columns:
        if "solution" not in columns:
            _require(columns, [answer_column or "answer"], source, fix + " (or provide a 'solution' with \\boxed{})")

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        answer = row.get(answer_column) if answer_column in row else None
        if answer is None or str(answer).strip() == "":
            answer = _boxed(row.get("solution"))
        return {
            "prompt": [{"role": "user", "content": f"{row[problem_column]} {STEP_BY_STEP_SUFFIX}"}],
            "answer": "" if answer is None else str(answer),
        }

    out = ds.map(convert, remove_columns=[c for c in ("prompt", "answer") if c in columns])
    return out.filter(lambda r: r["answer"] != "")


def _from_verl(ds, source: str):
    def convert(row: dict[str, Any]) -> dict[str, Any]:
        gold = row.get("answer") or (row.get("reward_model") or {}).get("ground_truth") or _boxed(row.get("solution"))
        return {"answer": "" if gold is None else str(gold)}

    out = ds.map(convert)
    bad = [i for i, a in enumerate(out["answer"]) if not a]
    if bad:
        raise ValueError(f"{source}: rows {bad[:5]} have no ground truth (reward_model.ground_truth / answer)")
    return out


def split_dataset(ds, sizes: tuple[int, int, int] = MATH500_SPLIT, seed: int = 42):
    """Seeded permutation of ``ds`` cut into train/val/test of the given sizes (as many as the data allows)."""
    from datasets import DatasetDict

    n = len(ds)
    if sum(sizes) > n:
        scale = n / sum(sizes)
        sizes = (n - 2 * int(sizes[1] * scale), int(sizes[1] * scale), int(sizes[2] * scale))
    shuffled = ds.shuffle(seed=seed)
    a, b = sizes[0], sizes[0] + sizes[1]
    return DatasetDict(
        train=shuffled.select(range(0, a)),
        val=shuffled.select(range(a, b)),
        test=shuffled.select(range(b, min(n, b + sizes[2]))),
    )


def load_math_dataset(
    source: str | Path,
    *,
    seed: int = 42,
    problem_column: str = "problem",
    answer_column: str = "answer",
    split_sizes: tuple[int, int, int] = MATH500_SPLIT,
    **load_kwargs: Any,
):
    """Load a math dataset (Hub name, verl parquet directory or local file) as a ``DatasetDict`` of TRL rows.

    >>> splits = load_math_dataset("../shared/data/math500")  # doctest: +SKIP
    >>> {k: len(v) for k, v in splits.items()}  # doctest: +SKIP
    {'train': 300, 'val': 100, 'test': 100}
    """
    from datasets import DatasetDict, load_dataset

    path = Path(source)
    if path.is_dir():
        files = {p.stem: str(p) for p in sorted(path.glob("*.parquet"))}
        if not files:
            raise ValueError(f"{path} holds no .parquet files; expected verl-style train/val/test.parquet")
        raw = load_dataset("parquet", data_files=files, **load_kwargs)
        return DatasetDict({k: to_trl_rows(v, problem_column=problem_column, answer_column=answer_column,
                                           source=f"{path}/{k}.parquet") for k, v in raw.items()})
    if path.suffix in _LOCAL_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"dataset file {path} does not exist")
        raw = load_dataset(_LOCAL_SUFFIXES[path.suffix], data_files=str(path), split="train", **load_kwargs)
        rows = to_trl_rows(raw, problem_column=problem_column, answer_column=answer_column, source=str(path))
        return split_dataset(rows, split_sizes, seed)
    name = str(source)
    if name == "HuggingFaceH4/MATH-500":
        raw = load_dataset(name, split="test", **load_kwargs)
        return split_dataset(to_trl_rows(raw, source=name), split_sizes, seed)
    raw = load_dataset(name, **load_kwargs)
    return DatasetDict({k: to_trl_rows(v, problem_column=problem_column, answer_column=answer_column,
                                       source=f"{name}[{k}]") for k, v in raw.items()})

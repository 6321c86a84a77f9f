"""Math dataset loading from local files (the Hub paths share the same mapping code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moalign.data import STEP_BY_STEP_SUFFIX, load_math_dataset

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500"


@pytest.fixture(scope="module")
def shared():
    if not MATH500.exists():
        pytest.skip(f"{MATH500} not present")
    return load_math_dataset(MATH500)


def test_verl_parquet_directory(shared):
    assert {k: len(v) for k, v in shared.items()} == {"train": 300, "val": 100, "test": 100}
    for split in shared.values():
        for row in split.select(range(10)):
            assert row["prompt"][-1]["role"] == "user"
            assert row["prompt"][-1]["content"].endswith(STEP_BY_STEP_SUFFIX)
            assert row["answer"].strip()
            assert {"solution", "subject", "level"} <= set(row)


def test_math500_hub_schema_is_split_300_100_100(tmp_path, shared):
    """A file with MATH-500's Hub columns (problem/solution/answer/...) is split deterministically (seed 42)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": f"What is {i}+1?", "solution": f"\\boxed{{{i + 1}}}", "answer": str(i + 1),
             "subject": "Algebra", "level": 1, "unique_id": f"u{i}"} for i in range(500)]
    path = tmp_path / "math500.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    a, b = load_math_dataset(path), load_math_dataset(path)
    assert {k: len(v) for k, v in a.items()} == {"train": 300, "val": 100, "test": 100}
    ids = {k: set(v["unique_id"]) for k, v in a.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert a["test"]["unique_id"] == b["test"]["unique_id"]
    assert load_math_dataset(path, seed=1)["test"]["unique_id"] != a["test"]["unique_id"]
    row = a["train"][0]
    assert row["prompt"][0]["content"] == f"{row['problem']} {STEP_BY_STEP_SUFFIX}"


def test_local_jsonl_with_custom_columns(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}", "final": str(i)}) for i in range(20)))
    splits = load_math_dataset(path, problem_column="question", answer_column="final", split_sizes=(10, 5, 5))
    assert [len(s) for s in splits.values()] == [10, 5, 5]
    assert splits["train"][0]["answer"] == str(int(splits["train"][0]["question"][1:]))


def test_answer_taken_from_solution_when_missing(tmp_path):
    path = tmp_path / "lighteval.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"p{i}", "solution": f"so \\boxed{{{i}}}", "type": "x"})
                              for i in range(10)))
    splits = load_math_dataset(path, split_sizes=(6, 2, 2))
    assert all(r["answer"] == r["problem"][1:] for r in splits["train"])


def test_missing_columns_error_names_them(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "hi"}) + "\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['problem'\]; columns found: \['text'\].*problem_column="):
        load_math_dataset(path)
    with pytest.raises(FileNotFoundError):
        load_math_dataset(tmp_path / "nope.jsonl")

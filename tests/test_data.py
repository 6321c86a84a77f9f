"""Math dataset loading: the shipped verl parquet split (``math500``), Hub-shaped files (the Hub call itself needs a
network), local jsonl/json/parquet files with problem/answer, GSM8K-style answers, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moalign.data import (
    MATH500_DIR,
    STEP_BY_STEP_SUFFIX,
    extract_gsm8k_answer,
    load_math_dataset,
    split_dataset,
    to_trl_rows,
)

MATH500 = MATH500_DIR
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    import datasets

    datasets.disable_progress_bars()
    return str(tmp_path_factory.mktemp("hf_cache"))


@pytest.fixture(scope="module")
def shipped_raw():
    import pyarrow.parquet as pq

    return {s: pq.read_table(MATH500 / f"{s}.parquet").to_pylist() for s in SPLITS}


@pytest.fixture(scope="module")
def shipped(shipped_raw, cache_dir):
    return load_math_dataset(str(MATH500), cache_dir=cache_dir)


def test_doctests():
    import doctest

    import moalign.data.math as math_module

    result = doctest.testmod(math_module)
    assert result.failed == 0 and result.attempted > 0


def test_verl_parquet_directory(shipped, shipped_raw):
    assert {k: len(v) for k, v in shipped.items()} == {"train": 300, "val": 100, "test": 100}
    for split in SPLITS:
        ds, raw = shipped[split], shipped_raw[split]
        assert ds["unique_id"] == [r["unique_id"] for r in raw]  # order kept
        for row, src in zip(ds, raw):
            assert row["prompt"] == src["prompt"]  # verl prompts are kept as they are...
            assert len(row["prompt"]) == 1 and row["prompt"][0]["role"] == "user"
            assert row["prompt"][0]["content"] == f"{row['problem']} {STEP_BY_STEP_SUFFIX}"  # ...and carry the suffix
            assert row["answer"] == src["reward_model"]["ground_truth"].strip() and row["answer"]
            assert row["solution"] == src["solution"] and row["subject"] == src["subject"]
            assert row["level"] == src["level"]


def test_short_name_is_the_shipped_copy(shipped, cache_dir, tmp_path, monkeypatch):
    """``math500`` (any case) reads the parquet files inside the package, whatever the working directory; a local
    directory of that name is still reachable with an explicit path."""
    import hashlib
    import re

    monkeypatch.chdir(tmp_path)
    by_name = load_math_dataset("Math500", cache_dir=cache_dir)
    assert all(by_name[s]["unique_id"] == shipped[s]["unique_id"] for s in SPLITS)
    assert all(by_name[s]["answer"] == shipped[s]["answer"] for s in SPLITS)
    (tmp_path / "math500").mkdir()
    (tmp_path / "math500" / "test.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    with pytest.raises(ValueError, match="cannot split 1 rows"):
        load_math_dataset("./math500", cache_dir=cache_dir)

    # The files are the ones the README next to them describes (checksums), and its MIT notice is there.
    readme = (MATH500 / "README.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\w+\.parquet)$", readme, re.M))
    assert set(listed) == {f"{s}.parquet" for s in SPLITS}
    for name, digest in listed.items():
        assert hashlib.sha256((MATH500 / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in readme and "Copyright (c) 2021 Dan Hendrycks" in readme


def _hub_rows_in_original_order(shipped_raw):
    """Undo the reference split with numpy alone: MATH-500 rows in their Hub order, with the Hub's columns.

    ``Dataset.train_test_split(test_size=t, seed=s)`` takes ``perm = np.random.default_rng(s).permutation(n)``, test =
    ``perm[:n_test]``, train = ``perm[n_test:]``; the reference split 500 -> 300 + 200, then 200 -> test 100 + val 100.
    """
    perm = np.random.default_rng(42).permutation(500)
    held, train_idx = perm[:200], perm[200:]
    perm2 = np.random.default_rng(42).permutation(200)
    val_idx, test_idx = held[perm2[:100]], held[perm2[100:]]
    original: list[dict | None] = [None] * 500
    for split, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        for pos, o in enumerate(idx):
            r = shipped_raw[split][pos]
            problem = r["prompt"][0]["content"][: -len(STEP_BY_STEP_SUFFIX) - 1]
            original[o] = {"problem": problem, "solution": r["solution"], "answer": r["reward_model"]["ground_truth"],
                           "subject": r["subject"], "level": r["level"], "unique_id": r["unique_id"]}
    assert all(r is not None for r in original)
    return original


def test_hub_shaped_math500_reproduces_the_shipped_split(tmp_path, shipped_raw, cache_dir):
    """MATH-500 in its Hub schema and order (a local parquet standing in for ``load_dataset("HuggingFaceH4/MATH-500")``,
    which has only a 500-row ``test`` split) is split exactly like the shipped verl files: same rows, same order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _hub_rows_in_original_order(shipped_raw)
    assert rows[0]["unique_id"] == "test/precalculus/807.json"  # MATH-500's first problem on the Hub
    path = tmp_path / "MATH-500-test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)

    splits = load_math_dataset(str(path), cache_dir=cache_dir)
    for split in SPLITS:
        assert splits[split]["unique_id"] == [r["unique_id"] for r in shipped_raw[split]], split
        assert splits[split]["prompt"] == [r["prompt"] for r in shipped_raw[split]], split
        assert splits[split]["answer"] == [r["reward_model"]["ground_truth"] for r in shipped_raw[split]], split
    ids = {k: set(v["unique_id"]) for k, v in splits.items()}
    assert len(ids["train"] | ids["val"] | ids["test"]) == 500

    counts = load_math_dataset(str(path), split_sizes=(300, 100, 100), cache_dir=cache_dir)
    assert all(counts[s]["unique_id"] == splits[s]["unique_id"] for s in SPLITS)
    again = load_math_dataset(str(path), split="test", cache_dir=cache_dir)
    assert again["unique_id"] == splits["test"]["unique_id"]
    other = load_math_dataset(str(path), seed=1, cache_dir=cache_dir)
    assert other["test"]["unique_id"] != splits["test"]["unique_id"]
    assert {k: len(v) for k, v in other.items()} == {"train": 300, "val": 100, "test": 100}


def test_hub_name_goes_through_load_dataset(monkeypatch, shipped_raw):
    """No network in tests: stand in for the Hub with the same rows and check what the loader asks for."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(_hub_rows_in_original_order(shipped_raw))})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_math_dataset("HuggingFaceH4/MATH-500", revision="main")
    assert calls == [("HuggingFaceH4/MATH-500", None, {"revision": "main"})]
    assert all(splits[s]["unique_id"] == [r["unique_id"] for r in shipped_raw[s]] for s in SPLITS)


def test_local_jsonl_problem_answer(tmp_path, cache_dir):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"What is {i} + 1?", "answer": i + 1, "level": i % 5})
                              for i in range(20)))
    splits = load_math_dataset(str(path), cache_dir=cache_dir)
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "val": 4, "test": 4}
    for row in splits["train"]:
        n = int(row["problem"].split()[2])
        assert row["answer"] == str(n + 1)
        assert row["prompt"] == [{"role": "user", "content": f"What is {n} + 1? {STEP_BY_STEP_SUFFIX}"}]
        assert "level" in row
    plain = load_math_dataset(str(path), split="val", chat=False, suffix=None, cache_dir=cache_dir)
    assert plain[0]["prompt"] == plain[0]["problem"]


def test_custom_column_names_and_json_file(tmp_path, cache_dir):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"q": f"q{i}", "final": i, "problem": "other", "answer": "x"} for i in range(10)]))
    splits = load_math_dataset(str(path), problem_column="q", answer_column="final", split_sizes=(6, 2, 2),
                               cache_dir=cache_dir)
    assert [len(splits[s]) for s in SPLITS] == [6, 2, 2]
    assert all(r["answer"] == r["q"][1:] == str(r["final"]) and r["problem"] == r["q"] for s in SPLITS
               for r in splits[s])


def test_answer_from_solution_and_train_test_directory(tmp_path, cache_dir):
    """MATH-lighteval's schema: problem/level/type/solution, answer = the solution's last \\boxed{}; train + test
    splits get a val split cut from train."""
    for split, n in (("train", 30), ("test", 10)):
        rows = [{"problem": f"p{i}", "level": "Level 1", "type": "Algebra",
                 "solution": f"First $\\boxed{{0}}$, then $x = \\boxed{{\\frac{{{i}}}{{2}}}}$."} for i in range(n)]
        rows.append({"problem": "no answer", "level": "Level 1", "type": "Algebra", "solution": "no box"})
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    splits = load_math_dataset(str(tmp_path), val_size=5, cache_dir=cache_dir)
    # the unanswered row of each file is dropped
    assert {k: len(v) for k, v in splits.items()} == {"train": 25, "val": 5, "test": 10}
    assert all(r["answer"] == f"\\frac{{{r['problem'][1:]}}}{{2}}" for s in SPLITS for r in splits[s])
    assert set(splits["train"]["problem"]).isdisjoint(splits["val"]["problem"])


def test_gsm8k_style_answers(tmp_path, cache_dir):
    rows = [{"question": f"Q{i}?", "answer": f"It is {i}*1000 = {i * 1000}.\n#### {i * 1000:,}"} for i in range(10)]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    splits = load_math_dataset(str(path), cache_dir=cache_dir)
    row = splits["train"][0]
    i = int(row["problem"][1:-1])
    assert row["answer"] == str(i * 1000) and row["solution"].startswith("It is")
    assert extract_gsm8k_answer("x\n#### -3.5 ") == "-3.5" and extract_gsm8k_answer("no marker") is None


def test_rows_feed_accuracy(shipped):
    """The loaded rows are what the objectives read: ``answer`` (and the kept ``solution``)."""
    from moalign.objectives import Accuracy

    val = shipped["val"]
    columns = {k: val[k] for k in ("answer", "solution")}
    completions = [[{"role": "assistant", "content": s}] for s in val["solution"]]
    assert Accuracy()(completions, prompts=val["prompt"], **columns) == [1.0] * len(val)


def test_missing_columns_error_names_them_and_the_fix(tmp_path, cache_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "hi", "label": 1}) + "\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['problem', 'answer'\]; columns found: \['label', "
                                         r"'text'\].*problem_column=.*answer_column="):
        load_math_dataset(str(path), cache_dir=cache_dir)
    path.write_text(json.dumps({"problem": "hi", "label": 1}) + "\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['answer'\]"):
        load_math_dataset(str(path), cache_dir=cache_dir)
    path.write_text(json.dumps({"problem": "hi", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['question_text'\]; columns found: \['answer', 'prob"):
        load_math_dataset(str(path), problem_column="question_text", cache_dir=cache_dir)


def test_other_errors(tmp_path, shipped, cache_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_math_dataset(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="split='dev2' is not one of train, val, test"):
        load_math_dataset(str(MATH500), split="dev2", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="holds no .parquet"):
        load_math_dataset(str(tmp_path))
    with pytest.raises(ValueError, match="split_sizes"):
        split_dataset(shipped["train"], split_sizes=(0.5, 0.5))
    with pytest.raises(ValueError, match="need 600 rows but the dataset has 300"):
        split_dataset(shipped["train"], split_sizes=(400, 100, 100))
    with pytest.raises(ValueError, match="expected a datasets.Dataset"):
        to_trl_rows([{"problem": "x", "answer": "1"}])

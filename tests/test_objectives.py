"""Objectives: accuracy on the real Math500 split, bounded time, threads/processes, conciseness, clarity, registry."""

from __future__ import annotations

import concurrent.futures as cf
import doctest
import json
import multiprocessing as mp
import pickle
import threading
import time
from pathlib import Path

import pytest

import moalign.objectives.accuracy as accuracy_module
import moalign.objectives.base as base_module
import moalign.objectives.clarity as clarity_module
import moalign.objectives.conciseness as conciseness_module
from moalign.objectives import (
    Accuracy,
    Clarity,
    Conciseness,
    as_objective,
    available_objectives,
    build_objective,
    count_step_markers,
    last_boxed,
    register_objective,
)

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500"


@pytest.fixture(scope="module")
def math500_rows():
    import pyarrow.parquet as pq

    if not MATH500.exists():
        pytest.skip(f"{MATH500} not present")
    rows = []
    for split in ("train", "val", "test"):
        rows.extend(pq.read_table(MATH500 / f"{split}.parquet").to_pylist())
    assert len(rows) == 500
    return rows


@pytest.mark.parametrize("module", [accuracy_module, clarity_module, conciseness_module, base_module])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_math500_reference_solution_scores_one_and_other_answer_zero(math500_rows):
    acc = Accuracy()
    gold = [r["reward_model"]["ground_truth"] for r in math500_rows]
    own = acc([[{"role": "assistant", "content": "Reasoning...\n" + r["solution"]}] for r in math500_rows],
              reward_model=[r["reward_model"] for r in math500_rows])
    failed = [(i, gold[i], last_boxed(math500_rows[i]["solution"])) for i, s in enumerate(own) if s != 1.0]
    assert not failed, f"{len(failed)} reference solutions did not verify: {failed[:5]}"

    # Another problem's different answer: the next problem whose gold answer is not equal to this one.
    others = []
    for i in range(len(gold)):
        j = (i + 1) % len(gold)
        while accuracy_module._normalise(gold[j]) == accuracy_module._normalise(gold[i]) or (
            accuracy_module._fast_compare(gold[i], gold[j]) is True
        ):
            j = (j + 1) % len(gold)
        others.append(f"So the answer is $\\boxed{{{gold[j]}}}$.")
    wrong = acc(others, answer=gold)
    mismatched = [(i, gold[i], others[i]) for i, s in enumerate(wrong) if s != 0.0]
    assert not mismatched, f"{len(mismatched)} different answers scored as correct: {mismatched[:5]}"


PATHOLOGICAL = [
    "x" * 50_000 + r"\boxed{3}",
    r"\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    r"\boxed{9^{9^{9^{9^{9}}}}}",
    r"\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
    r"\boxed{\frac{1}{" * 200 + "}" * 400,
    "\\boxed{" + "1+" * 400 + "1}",
]


@pytest.mark.parametrize("text", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_inputs_are_bounded(text):
    acc = Accuracy(timeout_s=2.0)
    acc(["\\boxed{1}"], answer=["1"])  # start the worker outside the timed region
    start = time.perf_counter()
    out = acc([text], answer=["7"])
    assert time.perf_counter() - start < 6.0
    assert out == [0.0]


def _score_in_thread(results):
    results.append(Accuracy()([r"\boxed{\frac{2}{4}}", r"\boxed{\sqrt{4}}"], answer=["0.5", "2"]))


def test_works_off_the_main_thread():
    results = []
    t = threading.Thread(target=_score_in_thread, args=(results,))
    t.start()
    t.join(60)
    assert results == [[1.0, 1.0]]


def _score_in_process(_):
    return Accuracy()([r"\boxed{\frac{2}{4}}", r"\boxed{9^{9^{9^{9^{9}}}}}"], answer=["1/2", "3"])


def test_works_in_worker_processes():
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        assert list(pool.map(_score_in_process, [0])) == [[1.0, 0.0]]


def test_works_in_daemonic_pool_workers():
    with mp.get_context("spawn").Pool(1) as pool:  # daemonic: cannot start the verifier process, runs inline
        assert pool.map(_score_in_process, [0]) == [[1.0, 0.0]]


def test_accuracy_gold_sources_and_unscorable():
    acc = Accuracy()
    assert acc(["\\boxed{4}"], reward_model=[{"ground_truth": "4"}]) == [1.0]
    assert acc(["\\boxed{4}"], solution=["so \\boxed{4}"]) == [1.0]
    assert acc(["\\boxed{4}"], other=["x"]) == [None]
    assert acc(["no answer"], answer=["4"]) == [0.0]
    assert acc([[{"role": "assistant", "content": "\\boxed{1,000}"}]], answer=["1000"]) == [1.0]


def test_conciseness_running_mean_by_hand():
    c = Conciseness()
    assert c(["a", "b"], completion_ids=[[1] * 4, [1] * 8]) == [1.0, 0.0]  # mean 6
    assert c(["a", "b"], completion_ids=[[1] * 5, [1] * 7]) == [1.0, 0.0]  # mean (12+12)/4 = 6
    assert c(["a"], completion_ids=[[1] * 6]) == [0.0]  # mean 30/5 = 6: strictly below required
    c.training = False
    assert c(["a"], completion_ids=[[1] * 1]) == [1.0] and c.state_dict() == {"total_tokens": 30, "count": 5}
    d = Conciseness()
    d.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert d.mean_length == 6.0


def test_conciseness_with_tokenizer_and_error():
    from moalign.tiny import char_tokenizer

    c = Conciseness(tokenizer=char_tokenizer())
    assert c(["ab", "abcdef"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="completion_ids=.*or build it with"):
        Conciseness()(["ab"])


@pytest.mark.parametrize(
    "text,markers",
    [
        ("First, add 2 and 3.\nThen subtract 1.", 2),
        ("1. add\n2. subtract\n3) divide", 3),
        ("Step 1: add\nStep 2: subtract", 2),
        ("(1) a\n(2) b", 2),
        ("- add the numbers\n- subtract", 2),
        ("Next, we do x. Finally, y.", 2),
        ("5 - 3 = 2 and 7 - 1 = 6", 0),  # minus signs are not bullets
        ("if x > 0 then y, and then z", 0),  # mid-sentence 'then'
        ("1.5 + 2.5 = 4\n3.25 is a decimal", 0),  # decimals are not enumerators
        ("Step one: think", 0),  # 'Step' without a number
        ("-\n-5 is negative", 0),  # lone dash, negative number
    ],
)
def test_step_markers(text, markers):
    assert count_step_markers(text) == markers


def test_clarity_positive_and_negative():
    cl = Clarity()
    assert cl(["First, 2+3=5.\nThen 5-1=4.\nSo \\boxed{4}"]) == [1.0]
    assert cl(["First, 2+3=5. So \\boxed{4}"]) == [0.0]  # one marker
    assert cl(["First, a.\nThen b.\n\\boxed{ }"]) == [0.0]  # empty box
    assert cl(["First, a.\nThen b. No box"]) == [0.0]
    assert cl(["5 - 3 - 1 = 1 - 0 \\boxed{1}"]) == [0.0]


def test_registry_and_user_objectives():
    assert {"accuracy", "conciseness", "clarity"} <= set(available_objectives())
    with pytest.raises(ValueError, match="unknown objective 'beauty'; valid names: accuracy"):
        build_objective("beauty")

    def brevity(completions, **kw):
        return [float(len(c) < 5) for c in completions]

    obj = as_objective(brevity, maximize=True)
    assert obj.name == "brevity" and obj(["ab", "abcdef"]) == [1.0, 0.0]
    if "brevity_test" not in available_objectives():
        register_objective("brevity_test")(brevity)
    assert build_objective("brevity_test")(["abc"]) == [1.0]
    assert build_objective("moalign.objectives.clarity:Clarity").name == "clarity"
    with pytest.raises(ValueError, match="cannot import objective"):
        build_objective("no_such_module:thing")


@pytest.mark.parametrize("obj", [Accuracy(), Conciseness(), Clarity()], ids=lambda o: o.name)
def test_objectives_pickle_and_have_trl_names(obj):
    clone = pickle.loads(pickle.dumps(obj))
    assert clone.name == obj.name and clone.__name__ == obj.name and clone.maximize

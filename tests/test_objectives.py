"""Objectives: accuracy on the real Math500 problems, bounded time in threads and processes, conciseness running-mean
semantics, clarity markers, the registry, TRL compatibility and pickling."""

from __future__ import annotations

import concurrent.futures as cf
import doctest
import functools
import json
import multiprocessing as mp
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import moalign.objectives._verifier as verifier_module
import moalign.objectives.accuracy as accuracy_module
import moalign.objectives.base as base_module
import moalign.objectives.clarity as clarity_module
import moalign.objectives.conciseness as conciseness_module
from moalign.data import MATH500_DIR
from moalign.objectives import (
    OBJECTIVES,
    Accuracy,
    Clarity,
    Conciseness,
    FunctionObjective,
    Objective,
    answers_match,
    as_objective,
    available_objectives,
    build_objective,
    completion_text,
    count_step_markers,
    get_objective,
    ground_truth,
    last_boxed,
    register_objective,
    sanitize_scores,
)

MATH500 = MATH500_DIR  # the split shipped inside the package
TOWER = r"\boxed{9^{9^{9^{9^9}}}}"  # sympy computes this power inside one C call: only killing a process stops it


@pytest.fixture(scope="module")
def math500_rows():
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "val", "test"):
        rows.extend(pq.read_table(MATH500 / f"{split}.parquet").to_pylist())
    assert len(rows) == 500
    return rows


@pytest.fixture(scope="module", autouse=True)
def _warm_worker():
    assert Accuracy.warmup()  # start the math-verify worker outside the timed regions


@pytest.mark.parametrize("module", [base_module, accuracy_module, conciseness_module, clarity_module])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------------------------------------------------
# Accuracy on real data


def _independent_verify(gold: str, pred: str) -> bool:
    """math-verify called directly, in this process (main thread: its own signal timeouts work here)."""
    from math_verify import parse, verify

    return bool(verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{pred}}}")))


def test_math500_reference_solutions_score_one(math500_rows):
    """Every Math500 reference solution ends with its boxed answer; it verifies against the ground truth, whichever
    column the ground truth comes from (verl's reward_model, an answer column, the solution itself)."""
    acc = Accuracy()
    completions = [[{"role": "assistant", "content": "Let me think.\n\n" + r["solution"]}] for r in math500_rows]
    gold = [r["reward_model"]["ground_truth"] for r in math500_rows]
    for columns in ({"reward_model": [r["reward_model"] for r in math500_rows]}, {"answer": gold},
                    {"solution": [r["solution"] for r in math500_rows]}):
        scores = acc(completions, prompts=[r["prompt"] for r in math500_rows], **columns)
        failed = [(i, gold[i], last_boxed(math500_rows[i]["solution"])) for i, s in enumerate(scores) if s != 1.0]
        assert not failed, f"{len(failed)} reference solutions did not verify ({sorted(columns)}): {failed[:5]}"


def test_math500_reference_answers_verify_in_the_worker_too(math500_rows):
    """The test above is decided by the textual fast path; math-verify itself (in the worker) agrees on all 500."""
    pairs = [(r["reward_model"]["ground_truth"], last_boxed(r["solution"])) for r in math500_rows]
    assert verifier_module.get_verifier().verify_many(pairs, timeout_s=5.0) == [True] * 500


def test_math500_equivalent_forms_verify_through_math_verify(math500_rows):
    """Integer answers written as an unreduced fraction (not textually equal: this goes through the worker)."""
    ints = [r["reward_model"]["ground_truth"] for r in math500_rows
            if r["reward_model"]["ground_truth"].lstrip("-").isdigit()]
    assert len(ints) > 200
    completions = [f"So the answer is $\\boxed{{\\frac{{{2 * int(g)}}}{{2}}}}$." for g in ints]
    assert Accuracy()(completions, answer=ints) == [1.0] * len(ints)


def test_math500_other_problems_answers_score_zero(math500_rows):
    """Each problem gets the next problem's answer that math-verify itself (called directly) says is different."""
    gold = [r["reward_model"]["ground_truth"] for r in math500_rows]
    wrong = []
    for i in range(len(gold)):
        j = (i + 1) % len(gold)
        while gold[j] == gold[i] or _independent_verify(gold[i], gold[j]):
            j = (j + 1) % len(gold)
        wrong.append(gold[j])
    scores = Accuracy()([f"Thus the answer is $\\boxed{{{w}}}$." for w in wrong], answer=gold)
    accepted = [(i, gold[i], wrong[i]) for i, s in enumerate(scores) if s != 0.0]
    assert not accepted, f"{len(accepted)} different answers scored as correct: {accepted[:5]}"


# ---------------------------------------------------------------------------------------------------------------------
# Accuracy: extraction, ground truth, unscorable rows


@pytest.mark.parametrize(
    "text,expected",
    [
        (r"The answer is \boxed{42}.", "42"),
        (r"\boxed{1} no wait \boxed{2}", "2"),
        (r"\boxed {\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\fbox{7}", "7"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\left\{ x \right.}", r"\left\{ x \right."),
        (r"$\boxed{ \begin{pmatrix} 1 \\ 2 \end{pmatrix} }$", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"\boxed{}", ""),
        (r"\boxed{3} then cut off \boxed{4", None),  # only the last box counts, and it is not closed
        (r"\boxedfoo{3}", None),
        (r"\boxed 5", None),
        ("no box at all", None),
        ("\\boxed{" + "{" * 40 + "1" + "}" * 41, None),  # deeper than MAX_BRACE_DEPTH
        ("\\boxed{" + "1" * 2000 + "}", None),  # longer than MAX_ANSWER_CHARS
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_ground_truth_sources_and_order():
    cols = {"answer": ["1", "", None], "reward_model": [{"ground_truth": "2"}] * 3,
            "solution": [r"\boxed{3}"] * 3}
    assert [ground_truth(cols, i) for i in range(3)] == ["1", "2", "2"]
    assert ground_truth({"solution": [r"so $\boxed{3}$."]}, 0) == "3"
    assert ground_truth({"final": ["$5$"]}, 0, answer_column="final") == "5"
    assert ground_truth({"answer": [r"\boxed{6}"]}, 0) == "6"
    assert ground_truth({"other": ["x"]}, 0) is None


def test_accuracy_columns_formats_and_unscorable():
    acc = Accuracy()
    assert acc([r"\boxed{4}"], reward_model=[{"ground_truth": "4", "style": "rule"}]) == [1.0]
    assert acc([r"\boxed{4}"], solution=[r"2+2=\boxed{4}"]) == [1.0]
    assert Accuracy(answer_column="final")([r"\boxed{4}", r"\boxed{5}"], final=["4", "4"]) == [1.0, 0.0]
    assert acc([r"\boxed{4}"], prompts=["p"]) == [None]  # no ground truth: unscorable
    assert acc(["I think 4", r"\boxed{}", None], answer=["4", "4", "4"]) == [0.0, 0.0, 0.0]
    assert acc([[{"role": "assistant", "content": r"\boxed{1,000}"}]], answer=["1000"]) == [1.0]
    equivalent = [r"\boxed{\dfrac{3}{6}}", r"\boxed{x+1}", r"\boxed{(1,2)}"]
    assert acc(equivalent, answer=["0.5", "1+x", "(1, 2)"]) == [1.0] * 3
    assert acc([r"\boxed{3, 4}", r"\boxed{-4}"], answer=["3", "4"]) == [0.0, 0.0]
    assert acc([], answer=[]) == []
    with pytest.raises(ValueError, match="column 'answer' has 2 values for 1 completions"):
        acc(["x"], answer=["1", "2"])
    with pytest.raises(ValueError, match="timeout_s must be positive, but got 0"):
        Accuracy(timeout_s=0)


def test_accuracy_accepts_everything_trl_passes():
    """The exact keyword arguments of GRPOTrainer._calculate_rewards in TRL 1.16."""
    acc = Accuracy()
    out = acc(prompts=[[{"role": "user", "content": "2+2?"}]] * 2,
              completions=[[{"role": "assistant", "content": r"\boxed{4}"}], [{"role": "assistant", "content": "5"}]],
              completion_ids=[[1, 2, 3], [4]], answer=["4", "4"], trainer_state=object(),
              log_extra=lambda *a: None, log_metric=lambda *a: None)
    assert out == [1.0, 0.0]
    assert acc.__name__ == "accuracy" and type(acc).__name__ == "Accuracy"


# ---------------------------------------------------------------------------------------------------------------------
# Accuracy: bounded time in every context

PATHOLOGICAL = {
    "50KB completion": "x" * 50_000 + r"\boxed{3}",
    "50KB without a box": "\\boxed" + "y" * 50_000,
    "5000 nested braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "power tower": TOWER,
    "300 nested parentheses": "\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
    "30 nested fractions": "\\boxed{" + "\\frac{1}{" * 30 + "2" + "}" * 31,
    "huge factorial": r"\boxed{100000!}",
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_inputs_score_zero_quickly_on_the_main_thread(name):
    start = time.perf_counter()
    out = Accuracy(timeout_s=2.0)([PATHOLOGICAL[name]], answer=["7"])
    elapsed = time.perf_counter() - start
    assert out == [0.0]
    assert elapsed < 5.0, f"{name}: {elapsed:.1f} s"


def test_one_slow_item_does_not_spoil_its_batch():
    """Per-item budget: the worker is killed on the slow item, a new one takes the rest of the batch."""
    acc = Accuracy(timeout_s=1.0)
    texts = [r"\boxed{\frac{4}{2}}", TOWER, r"\boxed{\sqrt{4}}", r"\boxed{9^{9^{9}}}", r"\boxed{2.0}"]
    restarts = verifier_module.get_verifier().restarts
    start = time.perf_counter()
    assert acc(texts, answer=["2", "11", "2", "12", "2"]) == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert time.perf_counter() - start < 8.0
    assert verifier_module.get_verifier().restarts == restarts + 2
    # memoised: the same pairs again cost no time and no restart
    start = time.perf_counter()
    assert acc(texts, answer=["2", "11", "2", "12", "2"]) == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert time.perf_counter() - start < 0.5 and verifier_module.get_verifier().restarts == restarts + 2


def _score_in_thread(results):
    acc = Accuracy(timeout_s=1.0)
    start = time.perf_counter()
    results.append(acc([r"\boxed{\frac{2}{4}}", r"\boxed{\sqrt{4}}", TOWER], answer=["0.5", "2", "13"]))
    results.append(time.perf_counter() - start)


def test_works_off_the_main_thread():
    results: list = []
    t = threading.Thread(target=_score_in_thread, args=(results,))
    t.start()
    t.join(60)
    assert results[0] == [1.0, 1.0, 0.0] and results[1] < 5.0


def _score_in_process(gold_for_tower):
    start = time.perf_counter()
    scores = Accuracy(timeout_s=1.0)([r"\boxed{\frac{2}{4}}", TOWER], answer=["1/2", gold_for_tower])
    return scores, time.perf_counter() - start


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_works_in_process_pool_workers(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    # "fork" copies this process with its worker handle and reader thread: the child must start its own worker.
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context(method)) as pool:
        scores, elapsed = pool.submit(_score_in_process, "14").result(timeout=120)
    assert scores == [1.0, 0.0]
    assert elapsed < 10.0  # includes starting math-verify's worker in the fresh process


def test_works_in_daemonic_pool_workers():
    """multiprocessing.Pool workers are daemonic and may not start multiprocessing children; ours is a subprocess."""
    with mp.get_context("spawn").Pool(1) as pool:
        scores, elapsed = pool.apply_async(_score_in_process, ("15",)).get(timeout=120)
    assert scores == [1.0, 0.0] and elapsed < 10.0


def test_in_process_fallback_when_no_worker_can_start(monkeypatch):
    fallback = verifier_module.Verifier()
    fallback._unavailable = True
    monkeypatch.setattr(verifier_module, "_VERIFIER", fallback)
    monkeypatch.setattr(accuracy_module, "_CACHE", {})
    acc = Accuracy(timeout_s=1.0)
    start = time.perf_counter()
    assert acc([r"\boxed{\frac{6}{3}}", TOWER, r"\boxed{3}"], answer=["2", "16", "4"]) == [1.0, 0.0, 0.0]
    results: list = []
    t = threading.Thread(target=lambda: results.append(acc([r"\boxed{\sqrt{9}}", TOWER], answer=["3", "17"])))
    t.start()
    t.join(30)
    assert results == [[1.0, 0.0]]
    assert time.perf_counter() - start < 10.0
    assert fallback._proc is None


def test_worker_that_died_is_replaced():
    v = verifier_module.get_verifier()
    assert v.warmup()
    v._proc.kill()
    v._proc.wait()
    assert answers_match("x^2 - 1", "(x-1)(x+1)")


def test_core_imports_without_trl_transformers_accelerate():
    code = (
        "import sys\n"
        "for m in ('trl', 'transformers', 'accelerate', 'datasets'):\n"
        "    sys.modules[m] = None\n"
        "import moalign.objectives as o\n"
        "print(o.Accuracy()(['\\\\boxed{\\\\frac{1}{2}}'], answer=['0.5']), o.Clarity()(['x']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1.0] [0.0]"


# ---------------------------------------------------------------------------------------------------------------------
# Conciseness


def test_conciseness_running_mean_by_hand():
    c = Conciseness()
    # batch 1: lengths 4, 8 -> S=12, C=2, mean 6
    assert c(["a", "b"], completion_ids=[[0] * 4, [0] * 8]) == [1.0, 0.0]
    # batch 2: lengths 2, 10, 6 -> S=30, C=5, mean 6; 6 is not strictly below
    assert c(["a", "b", "c"], completion_ids=[[0] * 2, [0] * 10, [0] * 6]) == [1.0, 0.0, 0.0]
    # batch 3: lengths 13, 13 -> S=56, C=7, mean 8 (the batch itself raised the mean above 6)
    assert c(["a", "b"], completion_ids=[[0] * 13, [0] * 13]) == [0.0, 0.0]
    assert c.state_dict() == {"total_tokens": 56, "count": 7} and c.mean_length == 8.0
    # evaluation: compared with the running mean, which does not move
    c.training = False
    assert c(["a", "b"], completion_ids=[[0] * 7, [0] * 8]) == [1.0, 0.0]
    assert c.state_dict() == {"total_tokens": 56, "count": 7}
    # evaluation before any training batch: the batch's own mean
    fresh = Conciseness()
    fresh.training = False
    assert fresh(["a", "b"], completion_ids=[[0] * 2, [0] * 4]) == [1.0, 0.0] and fresh.count == 0
    assert Conciseness()(["a"], completion_ids=[[0] * 5]) == [0.0]  # alone: equal to the mean
    assert Conciseness()([], completion_ids=[]) == []


def test_conciseness_state_round_trip_continues_like_an_uninterrupted_run():
    rng = np.random.default_rng(0)
    batches = [rng.integers(1, 50, size=8).tolist() for _ in range(6)]
    full, first = Conciseness(), Conciseness()
    outs_full = [full(["x"] * 8, completion_ids=[[0] * n for n in b]) for b in batches]
    for b in batches[:3]:
        first(["x"] * 8, completion_ids=[[0] * n for n in b])
    resumed = Conciseness()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    outs_resumed = [resumed(["x"] * 8, completion_ids=[[0] * n for n in b]) for b in batches[3:]]
    assert outs_resumed == outs_full[3:]
    assert resumed.state_dict() == full.state_dict()
    with pytest.raises(ValueError, match=r"lacks \['count'\]"):
        resumed.load_state_dict({"total_tokens": 3})
    with pytest.raises(ValueError, match="non-negative"):
        resumed.load_state_dict({"total_tokens": -1, "count": 2})


class _WordEncoder:
    """A duck-typed tokenizer: only ``encode``."""

    def encode(self, text, add_special_tokens=True):
        return text.split() + (["</s>"] if add_special_tokens else [])


class _HFStyle:
    """A duck-typed Hugging Face tokenizer: ``__call__`` returning a mapping with ``input_ids``."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(ch) for ch in text] + ([0] if add_special_tokens else [])}


def _wordlevel_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from tokenizers.processors import TemplateProcessing

    tok = Tokenizer(WordLevel({"[UNK]": 0, "</s>": 1, "a": 2, "b": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok


@pytest.mark.parametrize("tokenizer", [_WordEncoder(), _HFStyle(), "wordlevel"],
                         ids=["encode", "hf-call", "tokenizers"])
def test_conciseness_with_a_tokenizer(tokenizer):
    if tokenizer == "wordlevel":
        tokenizer = _wordlevel_tokenizer()
        texts, lengths = ["a b", "a b a b a b", [{"role": "assistant", "content": "a b c d"}]], [2, 6, 4]
    elif isinstance(tokenizer, _HFStyle):
        texts, lengths = ["ab", "abcdef", [{"role": "assistant", "content": "abcd"}]], [2, 6, 4]
    else:
        texts, lengths = ["a b", "a b c d e f", [{"role": "assistant", "content": "a b c d"}]], [2, 6, 4]
    c = Conciseness(tokenizer=tokenizer)
    assert c.lengths(texts) == lengths  # no special tokens counted
    assert c(texts) == [1.0, 0.0, 0.0]  # mean 4
    assert c(texts, completion_ids=[[0], [0], [0] * 9]) == [1.0, 1.0, 0.0]  # completion_ids win: mean (12+11)/6


def test_conciseness_without_token_counts_says_how_to_fix():
    with pytest.raises(ValueError, match=r"completion_ids=\[...\].*Conciseness\(tokenizer=your_tokenizer\)"):
        Conciseness()(["some text"])
    with pytest.raises(ValueError, match="got 1 completion_ids for 2 completions"):
        Conciseness()(["a", "b"], completion_ids=[[1]])


# ---------------------------------------------------------------------------------------------------------------------
# Clarity

MARKER_TABLE = [
    # positives
    ("First, add 2 and 3.\nThen subtract 1.", 2),
    ("First we add. Second we subtract. Finally we divide.", 3),
    ("1. add\n2. subtract\n3) divide", 3),
    ("Step 1: add\nStep 2: subtract", 2),
    ("**Step 1:** add\n## Step 2\nsubtract", 2),
    ("(1) a\n(2) b", 2),
    ("- add the numbers\n- subtract them\n* divide", 3),
    ("Next, we do x. Lastly, y.", 2),
    ("  1. indented\n  2. list", 2),
    ("x = 3.\nthen y = 4", 2 - 1),  # "then" at a line start counts; "x = 3." is not an enumerator
    # distinct keys
    ("Then a. Then b. Then c.", 1),
    ("1. a\nStep 1: again", 1),
    # negatives: over-permissive patterns of the reference code
    ("5 - 3 = 2 and 7 - 1 = 6", 0),  # minus signs
    ("x\n- 3 = -3\n-5 is negative\n-\n* * *", 0),  # a dash before a number, a negative number, lone dash, rule
    ("if x > 0 then y, and then z", 0),  # mid-sentence 'then'
    ("the first term and the second term", 0),
    ("1.5 + 2.5 = 4\n3.25 is a decimal\n2024. was a year", 0),  # decimals and long numbers
    ("Step one: think. Step 1.5 is odd", 0),  # 'Step' without a number, or with a decimal
    ("Firstly, a.\nNextly b.", 0),  # only the listed words
    ("First-order terms vanish.", 0),
]


@pytest.mark.parametrize("text,expected", MARKER_TABLE)
def test_step_markers(text, expected):
    assert count_step_markers(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("First, 2+3=5.\nThen 5-1=4.\nSo \\boxed{4}", 1.0),
        ("1. Add: 2+3=5\n2. Subtract: 5-1=4\n\\boxed{4}", 1.0),
        ("First, 2+3=5. So \\boxed{4}", 0.0),  # one marker
        ("First, a.\nThen b.\n\\boxed{ }", 0.0),  # empty box
        ("First, a.\nThen b. No box", 0.0),
        ("5 - 3 - 1 = 1 - 0 \\boxed{1}", 0.0),
        ("Then a. Then b. \\boxed{2}", 0.0),  # one distinct marker
    ],
)
def test_clarity(text, expected):
    assert Clarity()([text]) == [expected]
    assert Clarity()([[{"role": "assistant", "content": text}]]) == [expected]


def test_clarity_min_steps():
    text = "First a.\nThen b.\nFinally c. \\boxed{1}"
    assert Clarity(min_steps=3)([text]) == [1.0] and Clarity(min_steps=4)([text]) == [0.0]
    with pytest.raises(ValueError, match="min_steps must be a positive integer, but got 0"):
        Clarity(min_steps=0)


# ---------------------------------------------------------------------------------------------------------------------
# Base, registry, helpers


def test_completion_text():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "x"},
                            {"role": "assistant", "content": "b"}]) == "ab"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}]) == "hi"
    assert completion_text(None) == ""


def test_sanitize_scores():
    values = [1, None, float("nan"), float("inf"), "x", np.float32(0.5), True]
    assert sanitize_scores(values, 7, "mine") == ([1.0, None, None, None, None, 0.5, 1.0], 3)
    with pytest.raises(ValueError, match="objective 'mine' returned 2 scores for 3 completions"):
        sanitize_scores([1, 2], 3, "mine")


def brevity(completions, **kwargs):
    """A user reward function (module level, so it pickles)."""
    return [float(len(completion_text(c)) < 5) for c in completions]


class Politeness:
    """A user reward class with parameters, a name and state."""

    name = "politeness"
    maximize = True

    def __init__(self, word: str = "please"):
        self.word, self.calls = word, 0

    def __call__(self, completions, **kwargs):
        self.calls += 1
        return [float(self.word in completion_text(c)) for c in completions]

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def test_registry():
    assert {"accuracy", "conciseness", "clarity"} <= set(available_objectives())
    assert available_objectives() == sorted(OBJECTIVES)
    with pytest.raises(ValueError, match="unknown objective 'beauty'; valid names: .*accuracy.*clarity.*conciseness"):
        build_objective("beauty")
    with pytest.raises(ValueError, match=r"objective 'clarity' does not accept \['steps'\].*parameters are: min_steps"):
        get_objective("clarity", steps=3)
    assert get_objective("accuracy", timeout_s=1.5).timeout_s == 1.5
    assert build_objective("conciseness").name == "conciseness"
    assert isinstance(build_objective("moalign.objectives.clarity:Clarity", min_steps=3), Clarity)
    assert isinstance(build_objective("moalign.objectives.Clarity"), Clarity)
    user = build_objective("test_objectives:brevity")
    assert isinstance(user, FunctionObjective) and user.name == "brevity" and user(["ab", "abcdef"]) == [1.0, 0.0]
    assert build_objective("test_objectives:Politeness", word="thanks")(["thanks!"]) == [1.0]
    with pytest.raises(ValueError, match="cannot import objective 'no_such_module:thing'"):
        build_objective("no_such_module:thing")
    with pytest.raises(ValueError, match="takes no parameters"):
        build_objective("test_objectives:brevity", x=1)

    register_objective("brevity_test")(brevity)
    try:
        assert build_objective("brevity_test")(["abc"]) == [1.0]
        register_objective("brevity_test")(brevity)  # the same object again: fine
        with pytest.raises(ValueError, match="already registered"):
            register_objective("brevity_test")(Politeness)
    finally:
        del OBJECTIVES["brevity_test"]
    with pytest.raises(ValueError, match="identifiers"):
        register_objective("no spaces")


def test_as_objective():
    obj = as_objective(brevity)
    assert (obj.name, obj.maximize, obj.__name__) == ("brevity", True, "brevity")
    assert as_objective(brevity, name="short", maximize=False).maximize is False
    pol = as_objective(Politeness())
    assert pol.name == "politeness" and pol([[{"role": "assistant", "content": "please"}]]) == [1.0]
    assert pol.state_dict() == {"calls": 1}
    pol.load_state_dict({"calls": 5})
    assert pol.fn.calls == 5
    assert as_objective(functools.partial(brevity)).name == "partial"
    clarity = Clarity()
    assert as_objective(clarity) is clarity
    with pytest.raises(ValueError, match="cannot be renamed"):
        as_objective(clarity, name="other")
    with pytest.raises(ValueError, match="must be callable"):
        as_objective(3)
    bad = as_objective(lambda completions, **kw: [1.0])
    with pytest.raises(ValueError, match="produced 1 scores for 2 completions"):
        bad(["a", "b"])


def test_eval_metric_attributes():
    assert (Accuracy.eval_metric, Clarity.eval_metric) == (None, None)  # reported under their own names
    assert Conciseness.eval_metric == "length"
    assert not hasattr(Conciseness, "eval_values") and not hasattr(Conciseness, "eval_maximize")  # removed: unused


@pytest.mark.parametrize(
    "make", [Accuracy, Conciseness, Clarity, lambda: as_objective(brevity), lambda: as_objective(Politeness())],
    ids=["accuracy", "conciseness", "clarity", "function", "callable-class"],
)
def test_objectives_pickle_and_have_trl_names(make):
    obj = make()
    if isinstance(obj, Conciseness):
        obj(["a"], completion_ids=[[1, 2, 3]])
    clone = pickle.loads(pickle.dumps(obj))
    assert isinstance(clone, Objective)
    assert clone.name == obj.name and clone.__name__ == obj.name and clone.maximize is True
    assert clone.state_dict() == obj.state_dict()
    assert json.loads(json.dumps(clone.state_dict())) == obj.state_dict()
    assert repr(clone) == repr(obj)

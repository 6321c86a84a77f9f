"""The synthetic arithmetic task, checked against an independent parse of each problem and solution."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from moalign.data.synthetic import (
    DIFFICULTIES,
    STYLES,
    SyntheticConfig,
    classify_style,
    count_step_markers,
    generate_problem,
    load_synthetic,
    render_solution,
    sft_examples,
)

EXPR = re.compile(r"^(\d+(?:[+-]\d+)+)=\?$")
BOXED = re.compile(r"\\boxed\{(-?\d+)\}$")
STEP_LINE = re.compile(r"^(First|Then|Next), (\d+)([+-])(\d+)=(-?\d+)\.$")


def evaluate(problem: str) -> tuple[int, list[int]]:
    """Left-to-right value of ``"12+7-4=?"`` and its operands, computed without the generator's code."""
    m = EXPR.match(problem)
    assert m, problem
    tokens = re.findall(r"[+-]|\d+", m.group(1))
    operands = [int(t) for t in tokens[::2]]
    value = operands[0]
    for op, b in zip(tokens[1::2], operands[1:]):
        value = value + b if op == "+" else value - b
    return value, operands


def final_answer(text: str) -> int:
    m = BOXED.search(text)
    assert m, f"no final \\boxed{{integer}} in {text!r}"
    return int(m.group(1))


def style_of(text: str) -> str:
    """Independent classifier for the generator's own formats."""
    if text.startswith("First, "):
        return "steps"
    if BOXED.fullmatch(text) or re.fullmatch(r"\\boxed\{-?\d+\}", text):
        return "direct"
    return "verbose"


@pytest.fixture(scope="module")
def splits():
    return load_synthetic(seed=3, n_train=600, n_val=100, n_test=100)


def test_columns_and_prompt_format(splits):
    assert set(splits) == {"train", "val", "test"}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [600, 100, 100]
    row = splits["train"][0]
    assert splits["train"].column_names == ["prompt", "answer", "problem", "solution", "n_operands"]
    assert row["prompt"] == [{"role": "user", "content": row["problem"]}]
    assert isinstance(row["answer"], str)


def test_answers_recomputed_independently(splits):
    for split in splits.values():
        for row in split:
            value, operands = evaluate(row["problem"])
            assert row["answer"] == str(value)
            assert row["n_operands"] == len(operands)
            assert value >= 0


@pytest.mark.parametrize("difficulty", sorted(DIFFICULTIES))
def test_difficulty_sets_operand_ranges(difficulty):
    lo, hi, first, rest = DIFFICULTIES[difficulty]
    ds = load_synthetic(seed=0, n_train=300, n_val=0, n_test=0, difficulty=difficulty)["train"]
    counts = set()
    for row in ds:
        _, operands = evaluate(row["problem"])
        counts.add(len(operands))
        assert 1 <= operands[0] <= first and all(1 <= b <= rest for b in operands[1:])
    assert counts == set(range(lo, hi + 1))


def test_explicit_ranges_override_difficulty():
    ds = load_synthetic(seed=0, n_train=200, n_val=0, n_test=0, difficulty=1, max_operands=5, min_operands=5)
    assert set(ds["train"]["n_operands"]) == {5}


def test_splits_deterministic_and_disjoint(splits):
    again = load_synthetic(seed=3, n_train=600, n_val=100, n_test=100)
    for s in splits:
        assert splits[s]["problem"] == again[s]["problem"]
    problems = {s: splits[s]["problem"] for s in splits}
    for s, texts in problems.items():
        assert len(set(texts)) == len(texts), f"duplicate problems within {s}"
    assert not set(problems["train"]) & set(problems["val"])
    assert not set(problems["train"]) & set(problems["test"])
    assert not set(problems["val"]) & set(problems["test"])
    other = load_synthetic(seed=4, n_train=600, n_val=100, n_test=100)
    assert other["train"]["problem"] != splits["train"]["problem"]


def test_growing_train_keeps_val_and_test(splits):
    bigger = load_synthetic(seed=3, n_train=900, n_val=100, n_test=100)
    assert bigger["val"]["problem"] == splits["val"]["problem"]
    assert bigger["test"]["problem"] == splits["test"]["problem"]
    assert bigger["train"]["problem"][:600] == splits["train"]["problem"]


def test_reference_solutions_are_correct_steps(splits):
    for row in splits["val"]:
        sol = row["solution"]
        lines = sol.split("\n")
        assert count_step_markers(sol) >= 2
        assert final_answer(sol) == int(row["answer"])
        value, operands = evaluate(row["problem"])
        assert len(lines) == len(operands)  # one line per operation, then the boxed answer
        for line in lines[:-1]:
            m = STEP_LINE.match(line)
            assert m, line
            a, op, b, v = int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
            assert v == (a + b if op == "+" else a - b)


def test_render_styles():
    cfg = SyntheticConfig(difficulty=2)
    rng = random.Random(0)
    for _ in range(200):
        prob = generate_problem(rng, cfg)
        steps, direct, verbose = (render_solution(prob, s) for s in STYLES)
        assert count_step_markers(steps) >= 2 and classify_style(steps) == "steps"
        assert count_step_markers(direct) == 0 and direct == f"\\boxed{{{prob['answer']}}}"
        assert count_step_markers(verbose) == 0 and classify_style(verbose) == "verbose"
        assert len(direct) < len(steps) and len(direct) < len(verbose)
        for text in (steps, direct, verbose):
            assert final_answer(text) == int(prob["answer"])
        slipped = render_solution(prob, "steps", slip=(0, 1))
        assert final_answer(slipped) == int(prob["answer"]) + 1


@pytest.mark.parametrize("seed", [0, 1])
def test_sft_examples_shares(seed):
    cfg = SyntheticConfig(
        seed=seed,
        style_mix={"steps": 0.5, "direct": 0.3, "verbose": 0.2},
        wrong_share={"steps": 0.1, "direct": 0.4, "verbose": 0.25},
    )
    n = 2000
    ex = sft_examples(cfg, n, seed=seed)
    assert len(ex) == n
    styles = Counter()
    wrong = Counter()
    for e in ex:
        assert e["prompt"][0]["role"] == "user" and len(e["prompt"]) == 1
        assert e["completion"][0]["role"] == "assistant" and len(e["completion"]) == 1
        text = e["completion"][0]["content"]
        style = style_of(text)
        assert classify_style(text) == style
        styles[style] += 1
        value, _ = evaluate(e["prompt"][0]["content"])
        wrong[style] += final_answer(text) != value
        if style == "steps":
            assert count_step_markers(text) >= 2
            bad_lines = 0
            for line in text.split("\n")[:-1]:
                m = STEP_LINE.match(line)
                assert m, line
                a, op, b, v = int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
                bad_lines += v != (a + b if op == "+" else a - b)
            assert bad_lines == (final_answer(text) != value)  # a wrong solution has exactly one slip
        else:
            assert count_step_markers(text) == 0
    for style, share in cfg.style_mix.items():
        assert abs(styles[style] / n - share) <= 0.01, (seed, style, styles)
        assert abs(wrong[style] / styles[style] - cfg.wrong_share[style]) <= 0.01, (seed, style, wrong)


def test_sft_examples_deterministic_and_held_out():
    cfg = SyntheticConfig(seed=5, difficulty=1, n_val=100, n_test=100)
    a = sft_examples(cfg, 500, seed=1)
    assert a == sft_examples(cfg, 500, seed=1)
    assert a != sft_examples(cfg, 500, seed=2)
    splits = load_synthetic(**{**cfg.to_dict(), "n_train": 0})
    held_out = set(splits["val"]["problem"]) | set(splits["test"]["problem"])
    assert not {e["prompt"][0]["content"] for e in a} & held_out


def test_prompt_template():
    ds = load_synthetic(seed=0, n_train=5, n_val=0, n_test=0, prompt_template="Compute {expr}.")
    assert all(re.fullmatch(r"Compute \d+([+-]\d+)+\.", p) for p in ds["train"]["problem"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"difficulty": 9}, "difficulty"),
        ({"style_mix": {"steps": 1.0, "bullet": 0.5}}, "unknown styles"),
        ({"wrong_share": {"direct": 1.5}}, "wrong_share"),
        ({"min_operands": 1}, "min_operands"),
        ({"prompt_template": "no placeholder"}, "prompt_template"),
        ({"n_train": 100_000, "difficulty": 1}, "distinct train problems"),
        ({"colour": "red"}, "unknown synthetic-task options"),
    ],
)
def test_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_synthetic(**{"n_val": 10, "n_test": 10, **kwargs})


def test_step_markers_and_style_classifier():
    assert count_step_markers("1. add\n2) subtract\nStep 3: done") == 3
    assert count_step_markers("Ok. Then add. finally stop") == 2
    assert count_step_markers("12 plus 3 is 15, then 15.5 and 3. no") == 0
    assert classify_style("  \\boxed{7} ") == "direct"
    assert classify_style("\\boxed{7} because") == "verbose"
    assert classify_style("Next, \\boxed{7}") == "steps"


def test_clarity_objective_agrees_with_styles():
    objectives = pytest.importorskip("moalign.objectives")
    clarity = objectives.Clarity()
    prob = generate_problem(random.Random(0), SyntheticConfig())
    texts = [render_solution(prob, s) for s in STYLES]
    assert clarity(texts) == [1.0, 0.0, 0.0]

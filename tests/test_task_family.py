"""The synthetic task family: the default member unchanged, the ``async`` member's habits independent of each other
(checked by an independent parse and by the project's own objectives), its shipped warm start, task selection."""

from __future__ import annotations

import hashlib
import json
import random
import re

import numpy as np
import pytest

from moalign.data.synthetic import (
    ASYNC_FILLER,
    VARIANTS,
    SyntheticConfig,
    async_habits,
    load_synthetic,
    render_async_solution,
    sft_examples,
)
from moalign.objectives import Accuracy, Clarity, Conciseness
from moalign.warmstart import SHIPPED, WarmStartConfig, warm_start

LINE = re.compile(r"^(?:(\d)\. |-> )(\d+)([+-])(\d+)=(\d+)$")


# ----------------------------------------------------------------------------------------------- default unchanged
def test_default_member_is_bit_for_bit_the_task_before_the_family():
    """Digests and examples recorded from the code before ``variant`` existed (commit 7f01475)."""
    ex = sft_examples(SyntheticConfig(), n=300, seed=0)
    assert [e["prompt"][0]["content"] for e in ex[:4]] == ["7-5-1+1=?", "19+9+9-1=?", "11+5-9+3=?", "2+5+6-4=?"]
    assert [e["completion"][0]["content"] for e in ex[:4]] == [
        "\\boxed{2}", "19 plus 9 is 28, plus 9 is 37, minus 1 is 36, so \\boxed{36}",
        "11 plus 5 is 16, minus 9 is 7, plus 3 is 10, so \\boxed{10}",
        "First, 2+5=7.\nThen, 7+6=13.\nNext, 13-4=9.\n\\boxed{9}"]
    digest = hashlib.sha256(json.dumps(ex, sort_keys=True).encode()).hexdigest()
    assert digest == "f16bdf0aa24faa9c43121ad33a935b284f23d8320b9938e5fde2b9053b71c72e"
    ds = load_synthetic(seed=0, n_train=100, n_val=20, n_test=20)
    blob = {k: ds[k].to_dict() for k in ("train", "val", "test")}
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
    assert digest == "2d731864988269c3814b4eb22b2a3df8165b889dc24937ef5cd8117e4a8a1fc6"
    # the shipped warm start keeps its key, so `moalign demo` still finds it
    assert WarmStartConfig().cache_key() == "6bd3419a8db3615b"
    assert WarmStartConfig(task=SyntheticConfig(variant="coupled")).cache_key() == "6bd3419a8db3615b"
    assert WarmStartConfig(task=SyntheticConfig(variant="async")).cache_key() != "6bd3419a8db3615b"


def test_members_share_problems_and_splits():
    a = load_synthetic(seed=5, n_train=50, n_val=10, n_test=10)
    b = load_synthetic(seed=5, n_train=50, n_val=10, n_test=10, variant="async")
    for split in ("train", "val", "test"):
        assert a[split]["problem"] == b[split]["problem"] and a[split]["answer"] == b[split]["answer"]
    # the async reference solution: numbered lines, no slip, no filler
    for sol, ans in zip(b["test"]["solution"], b["test"]["answer"]):
        assert async_habits(sol) == {"numbered": True, "filler": False}
        assert sol.endswith(f"\\boxed{{{ans}}}")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"variant": "nope"}, "variant must be one of coupled, async"),
    ({"marker_share": 0.2}, "only apply to variant='async'"),
    ({"variant": "async", "style_mix": {"steps": 1.0}}, "only apply to variant='coupled'"),
    ({"variant": "async", "carry_slip": 1.5}, r"carry_slip must be a number in \[0, 1\]"),
])
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


# ------------------------------------------------------------------------------------------- the async member's data
def parse(text: str):
    """Independent parse of an async solution: (numbered, filler, [(a, op, b, written)], boxed)."""
    lines = text.split("\n")
    filler = lines[-1] == ASYNC_FILLER
    if filler:
        lines = lines[:-1]
    boxed = int(re.fullmatch(r"\\boxed\{(\d+)\}", lines[-1]).group(1))
    ops, numbers = [], []
    for line in lines[:-1]:
        m = LINE.match(line)
        assert m, line
        numbers.append(m.group(1))
        ops.append((int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))))
    numbered = numbers[0] is not None
    assert all((n is not None) == numbered for n in numbers)
    if numbered:
        assert numbers == [str(i + 1) for i in range(len(numbers))]
    return numbered, filler, ops, boxed


def test_async_examples_independent_parse():
    cfg = SyntheticConfig(variant="async", seed=1)
    ex = sft_examples(cfg, n=4000, seed=2)
    held_out = set(load_synthetic(seed=1, n_train=0, variant="async")["val"]["problem"])
    carries = slips = 0
    flags = []
    for e in ex:
        problem = e["prompt"][0]["content"]
        assert problem not in held_out
        numbered, filler, ops, boxed = parse(e["completion"][0]["content"])
        flags.append((numbered, filler))
        tokens = re.findall(r"[+-]|\d+", problem[:-2])
        assert [o[1] for o in ops] == tokens[1::2] and [o[2] for o in ops] == [int(t) for t in tokens[2::2]]
        running = int(tokens[0])
        for a, op, b, written in ops:
            assert a == running  # each line starts from the previous line's written result
            right = a + b if op == "+" else a - b
            carry = (a % 10 + b % 10 >= 10) if op == "+" else (a % 10 < b % 10)
            carries += carry
            if written != right:  # only a forgotten carry (-10) or borrow (+10)
                assert carry and written == right + (-10 if op == "+" else 10)
                slips += 1
            assert written >= 0
            running = written
        assert boxed == running
    n = len(ex)
    assert sum(f[0] for f in flags) == round(n * cfg.marker_share)
    assert sum(f[1] for f in flags) == round(n * cfg.filler_share)
    # habits drawn independently: the joint share is the product of the marginals (within binomial noise)
    both = sum(f[0] and f[1] for f in flags) / n
    assert abs(both - cfg.marker_share * cfg.filler_share) < 4 * np.sqrt(0.24 * 0.76 / n)
    # a slip is only skipped where it would make a later result negative, so the rate is just under carry_slip
    assert carries > 1000 and 0.7 < slips / carries <= cfg.carry_slip + 3 * np.sqrt(0.16 / carries)


def test_render_async_solution_by_hand():
    p = {"operands": [17, 5, 4], "ops": ["+", "-"], "values": [22, 18]}
    assert render_async_solution(p) == "1. 17+5=22\n2. 22-4=18\n\\boxed{18}"
    # 17+5 forgets the carry (12); 12-4 then needs no borrow
    assert render_async_solution(p, numbered=False, forget={0}) == "-> 17+5=12\n-> 12-4=8\n\\boxed{8}"
    # 13-5 forgets the borrow: 18
    q = {"operands": [13, 5, 2], "ops": ["-", "+"], "values": [8, 10]}
    assert render_async_solution(q, forget={0}, filler=True) == "1. 13-5=18\n2. 18+2=20\n\\boxed{20}\n" + ASYNC_FILLER
    # 6+6-7: forgetting the carry (2) would make 2-7 negative, so it is not forgotten
    r = {"operands": [6, 6, 7], "ops": ["+", "-"], "values": [12, 5]}
    assert render_async_solution(r, forget={0}) == "1. 6+6=12\n2. 12-7=5\n\\boxed{5}"


def _scores(ex, answers):
    texts = [e["completion"][0]["content"] for e in ex]
    acc = np.array(Accuracy()(texts, answer=answers))
    clar = np.array(Clarity()(texts))
    conc = np.array(Conciseness()(texts, completion_ids=[list(t) for t in texts]))  # one token per character
    return {"accuracy": acc, "conciseness": conc, "clarity": clar}


def _answers(ex):
    out = []
    for e in ex:
        tokens = re.findall(r"[+-]|\d+", e["prompt"][0]["content"][:-2])
        value = int(tokens[0])
        for op, b in zip(tokens[1::2], tokens[2::2]):
            value = value + int(b) if op == "+" else value - int(b)
        out.append(str(value))
    return out


def test_objectives_vary_independently_on_async_but_not_on_coupled():
    """Scored by the demo's own objectives: on the async warm-start data every combination of the three binary
    rewards occurs and no pair is strongly correlated; on the coupled data clarity and conciseness are tied."""
    corr = {}
    for variant in VARIANTS:
        ex = sft_examples(SyntheticConfig(variant=variant), n=1500, seed=0)
        s = _scores(ex, _answers(ex))
        corr[variant] = {(a, b): np.corrcoef(s[a], s[b])[0, 1] for a in s for b in s if a < b}
        if variant == "async":
            combos = {tuple(int(s[k][i]) for k in s) for i in range(len(ex))}
            assert len(combos) == 8
            rates = {k: v.mean() for k, v in s.items()}
            assert 0.2 < rates["accuracy"] < 0.6 and 0.65 < rates["clarity"] < 0.85 and 0.3 < rates["conciseness"] < 0.6
    assert max(abs(c) for c in corr["async"].values()) < 0.25, corr["async"]
    assert corr["coupled"][("clarity", "conciseness")] < -0.5, corr["coupled"]


# ------------------------------------------------------------------------------------------------------ warm starts
def test_async_warm_start_is_shipped_and_loads():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = WarmStartConfig(task=SyntheticConfig(variant="async"))
    path = warm_start(cfg, progress=False)
    assert path == SHIPPED / cfg.cache_key()
    meta = json.loads((path / "warmstart.json").read_text())
    # built with num_threads 1 (not part of the key: the weights do not depend on it)
    assert WarmStartConfig.from_dict(meta["config"]).cache_key() == meta["cache_key"] == cfg.cache_key()
    habits = meta["calibration"]["sampled"]["habits"]
    assert 0.6 < habits["numbered"] < 0.9 and 0.4 < habits["filler"] < 0.8
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "12+7-4=?"}], tokenize=False,
                                     add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=64, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    numbered, filler, ops, boxed = parse(text)  # greedy output has the async format
    assert len(ops) == 2 and ops[0][:3] == (12, "+", 7)


def test_demo_and_bench_configs_select_the_task():
    from moalign.bench import BenchConfig
    from moalign.demo import DemoConfig

    assert DemoConfig(task="async").task == "async" and BenchConfig(task="async").task == "async"
    with pytest.raises(ValueError, match="unknown task 'nope'; choose from coupled, async"):
        DemoConfig(task="nope")
    with pytest.raises(ValueError, match="unknown task"):
        BenchConfig(task="nope")


def test_train_config_selects_the_task_through_dataset_kwargs():
    from moalign.loading import DataArguments, build_datasets

    train, val = build_datasets(DataArguments(dataset="synthetic", dataset_kwargs={"variant": "async", "n_train": 8,
                                                                                   "n_val": 4, "n_test": 4}))
    assert async_habits(train["solution"][0]) == {"numbered": True, "filler": False}
    assert len(val) == 4


def test_random_seed_not_consumed_by_members():
    """Generating one member's data does not change the other's (separate seeded streams)."""
    state = random.getstate()
    a1 = sft_examples(SyntheticConfig(), n=20, seed=3)
    sft_examples(SyntheticConfig(variant="async"), n=20, seed=3)
    assert sft_examples(SyntheticConfig(), n=20, seed=3) == a1
    assert random.getstate() == state


# ------------------------------------------------------------------------------------------------------------ bench
@pytest.mark.parametrize("task", [v for v in VARIANTS if v != "habits"])  # habits: its own K-objective bench
def test_new_bench_methods_combine_with_every_task(task, tmp_path):
    from moalign.bench import METHOD_TRAINER_ARGS, BenchConfig, _jobs, bench_methods
    from moalign.trainer import MOGRPOConfig

    new = [m for m in ("gdpo", "saw", "mo-grpo") if m in {x[0] for x in bench_methods()}]
    cfg = BenchConfig(task=task, methods=new, seeds=[7])
    jobs = _jobs(cfg, tmp_path / "model", tmp_path)
    assert {j["label"] for j in jobs} == set(new)
    for job in jobs:
        assert BenchConfig(**job["cfg"]).task == task
        args = MOGRPOConfig(output_dir=str(tmp_path / "o"), objectives=["accuracy", "conciseness", "clarity"],
                            strategy=job["strategy"], strategy_params=job["params"], use_cpu=True, report_to="none",
                            **METHOD_TRAINER_ARGS.get(job["label"], {}))
        if job["label"] == "gdpo":
            assert args.multi_objective_aggregation == "normalize_then_sum"
            assert job["strategy"] == "fixed" and job["params"] == {"preset": "balanced"}


def test_bench_cli_task_async_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from moalign.cli import app

    out = tmp_path / "bench"
    args = ["bench", "--quick", "--task", "async", "--seeds", "3", "--methods", "fixed-balanced,gdpo", "--workers", "1",
            "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    assert data["config"]["task"] == "async"
    assert {row["method"] for row in data["estimators"]["grpo"]["table3"]} == {"fixed-balanced", "gdpo"}
    gdpo = json.loads((out / "grpo" / "gdpo-seed3" / "run.json").read_text())
    fixed = json.loads((out / "grpo" / "fixed-balanced-seed3" / "run.json").read_text())
    assert gdpo["task"] == fixed["task"] == "async"
    assert gdpo["config"]["multi_objective_aggregation"] == "normalize_then_sum"
    assert fixed["config"]["multi_objective_aggregation"] == "sum_then_normalize"
    # the runs trained on the async member: its warm start writes `-> ` or numbered lines, never `First,`
    evals = [json.loads(x) for x in (out / "grpo" / "gdpo-seed3" / "evals.jsonl").read_text().splitlines()]
    assert evals and evals[-1]["step"] == 4
    # the same --out with another task is refused instead of mixing runs of two tasks
    wrong = CliRunner().invoke(app, [*args[:3], "coupled", *args[4:]])
    assert wrong.exit_code != 0 and "another task" in wrong.output

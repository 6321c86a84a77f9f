"""Sampled evaluations (``mo_eval_temperature`` > 0): the draws follow softmax(logits / T) with no top-k/top-p cut, are
reproducible from their seed, leave the training's random stream alone, and ``moalign eval`` repeats them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from moalign.data.synthetic import load_synthetic
from moalign.demo import task_warm_start, train_synthetic_run
from moalign.evaluation import eval_seed, evaluate_policy
from moalign.objectives import build_objective


@pytest.fixture(scope="module")
def warm():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = task_warm_start("coupled", progress=False)  # shipped: loads, trains nothing
    return path, AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _same_row(n: int):
    return [dict(load_synthetic(n_train=0, n_val=0, n_test=1)["test"][0])] * n


def _rows(n: int):
    return [dict(r) for r in load_synthetic(n_train=0, n_val=0, n_test=n)["test"]]


def test_sampled_first_tokens_follow_the_tempered_softmax(warm):
    """Independent check: the first generated token's frequencies over 800 draws match softmax(logits / T) from one
    forward pass, at T = 2 (where they differ from T = 1's), tokens outside the top 50 included."""
    _, model, tok = warm
    rows = _same_row(800)
    prompt = tok.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        logits = model(**tok(prompt, return_tensors="pt", add_special_tokens=False)).logits[0, -1].double()
    p2, p1 = torch.softmax(logits / 2.0, -1).numpy(), torch.softmax(logits, -1).numpy()
    out = evaluate_policy(model, tok, rows, [build_objective("accuracy")], max_new_tokens=1, batch_size=200,
                          temperature=2.0, seed=11)
    first = [tok(t, add_special_tokens=False)["input_ids"][:1] for t in out["completions"]]
    ids = np.array([f[0] if f else tok.eos_token_id for f in first])
    freq = np.bincount(ids, minlength=len(p2))[: len(p2)] / len(ids)
    top = np.argsort(-p2)[:4]
    for t in top:
        assert abs(freq[t] - p2[t]) < 4 * math.sqrt(p2[t] * (1 - p2[t]) / len(ids)) + 1e-3, (t, freq[t], p2[t])
    assert abs(freq[top[0]] - p1[top[0]]) > 4 * math.sqrt(p1[top[0]] * (1 - p1[top[0]]) / len(ids))  # T applied
    tail = np.argsort(-p2)[50:]
    assert freq[tail].sum() == pytest.approx(p2[tail].sum(), abs=max(0.02, 4 * math.sqrt(p2[tail].sum() / len(ids))))


def test_sampling_is_reproducible_and_leaves_the_global_stream_alone(warm):
    _, model, tok = warm
    rows, objectives = _rows(24), [build_objective("accuracy")]
    torch.manual_seed(5)
    a = evaluate_policy(model, tok, rows, objectives, max_new_tokens=40, batch_size=8, temperature=1.0, seed=3)
    after = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(4))  # the evaluation consumed nothing of the caller's stream
    b = evaluate_policy(model, tok, rows, objectives, max_new_tokens=40, batch_size=8, temperature=1.0, seed=3)
    c = evaluate_policy(model, tok, rows, objectives, max_new_tokens=40, batch_size=8, temperature=1.0, seed=4)
    g = evaluate_policy(model, tok, rows, objectives, max_new_tokens=40, batch_size=8)
    assert a["completions"] == b["completions"]
    assert a["completions"] != c["completions"]
    assert a["completions"] != g["completions"]
    assert g["completions"] == evaluate_policy(model, tok, rows, objectives, max_new_tokens=40, batch_size=8,
                                               seed=99)["completions"]  # greedy ignores the seed


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_temperature_is_a_clear_error(warm, bad):
    from moalign.mo_config import MOGRPOConfig

    _, model, tok = warm
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        evaluate_policy(model, tok, _rows(2), [], max_new_tokens=4, temperature=bad)
    with pytest.raises(ValueError, match="mo_eval_temperature must be >= 0"):
        MOGRPOConfig(output_dir="unused", mo_eval_temperature=bad)


def test_sampled_evaluations_do_not_change_training_and_moalign_eval_repeats_them(warm, tmp_path):
    """Two 2-step runs that differ only in mo_eval_temperature train identically (same rewards and weights every
    step); the sampled run's step-0 evaluation is the initial policy's draw from eval_seed(seed, 0), which
    ``moalign eval`` repeats."""
    path, model, tok = warm
    splits = load_synthetic(n_train=64, n_val=8, n_test=16)
    torch.set_num_threads(1)
    runs = {}
    for temperature in (0.0, 1.0):
        run_dir = tmp_path / f"t{temperature}"
        train_synthetic_run(
            label="fixed-balanced", strategy="fixed", params={"preset": "balanced"}, estimator="grpo", seed=7,
            model_dir=path, splits=splits, run_dir=run_dir, steps=2, eval_every=1, eval_size=16, validation_size=8,
            prompts_per_step=2, generations=4, learning_rate=1e-4, max_completion_length=48,
            eval_temperature=temperature)
        runs[temperature] = run_dir
    steps = {t: [json.loads(x) for x in (d / "steps.jsonl").read_text().splitlines()] for t, d in runs.items()}
    for greedy, sampled in zip(steps[0.0], steps[1.0]):
        assert greedy["weights"] == sampled["weights"]
        assert greedy["rewards"] == sampled["rewards"]
    evals = [json.loads(x) for x in (runs[1.0] / "evals.jsonl").read_text().splitlines()]
    greedy_evals = [json.loads(x) for x in (runs[0.0] / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert evals[0]["metrics"] != greedy_evals[0]["metrics"]
    assert json.loads((runs[1.0] / "run.json").read_text())["config"]["mo_eval_temperature"] == 1.0
    rows = [dict(r) for r in splits["test"]]
    objectives = [build_objective(n) for n in ("accuracy", "conciseness", "clarity")]
    again = evaluate_policy(model, tok, rows, objectives, max_new_tokens=48, batch_size=16, temperature=1.0,
                            seed=eval_seed(7, 0))
    for key in ("accuracy", "length", "clarity"):
        assert again[key] == pytest.approx(evals[0]["metrics"][key])

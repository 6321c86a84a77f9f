"""benchmarks/gpu_check.py: its --dry-run (the GPU check's code path on CPU with a tiny model) prints one sane JSON
line; its statistics match hand-worked values; its model is Qwen3-1.7B-shaped and its padded tokenizer round-trips."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dry_run(*flags: str, timeout: int) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", *flags], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}:\n{proc.stdout[-2000:]}"
    result = json.loads(lines[0])
    assert proc.returncode == 0 and result["ok"], f"errors {result['errors']}\n{proc.stderr[-4000:]}"
    assert "[gpu_check" in proc.stderr  # progress goes to stderr
    return result


def _check(result: dict, rounds: int, steps: int, warmup: int) -> None:
    assert result["mode"] == "dry-run" and result["device"]["type"] == "cpu"
    settings = result["settings"]
    assert settings["bf16"] is False  # fp32 on CPU
    assert (settings["rounds"], settings["timed_steps_per_run"], settings["warmup_steps_per_run"]) == (
        rounds, steps, warmup)
    runs = result["runs"]
    for kind in ("grpo_trl", "mogrpo_fixed", "mogrpo_gradient"):
        entry = runs[kind]
        assert entry["runs"] == rounds
        assert entry["step_s"]["n"] == len(entry["steps"]) == rounds * steps
        assert len(entry["warmup_steps"]) == rounds * warmup
        assert all(math.isfinite(t) and t > 0 for t in entry["steps"])
        assert entry["model_dtype"] == ["float32"]
        # every completion forced to the full length; every objective scored
        assert entry["completion_length"] == settings["completion_tokens"]
        assert set(entry["reward_means"]) == set(settings["objectives"])
        assert entry["peak_memory_gib"] is None  # no CUDA
    for kind in ("mogrpo_fixed", "mogrpo_gradient"):
        phases = runs[kind]["phases_s"]
        assert set(phases) >= {"generate", "strategy", "update"}
        assert sum(phases.values()) <= 1.5 * max(runs[kind]["steps"])  # the phases are parts of a step
        assert runs[kind]["skipped_steps"] == 0
    # odd_length varies, so the gradient strategy's Gram is not all zero and its weights move off uniform
    assert any(max(w.values()) - min(w.values()) > 0 for w in runs["mogrpo_gradient"]["final_weights"])
    assert all(set(w.values()) == {0.25} for w in runs["mogrpo_fixed"]["final_weights"])
    assert runs["mogrpo_hypervolume"]["step_s"]["n"] == 1

    for name in ("fixed_vs_trl", "gradient_vs_fixed", "hypervolume_vs_fixed"):
        ratio = result["ratios"][name]
        values = [ratio[k] for k in ("median", "q1", "q3", "min", "max")]
        assert all(math.isfinite(v) and v > 0 for v in values), (name, ratio)
        assert ratio["min"] <= ratio["q1"] <= ratio["median"] <= ratio["q3"] <= ratio["max"]
    for name in ("fixed_vs_trl", "gradient_vs_fixed"):
        assert result["ratios"][name]["n"] == rounds * steps
    # the ratio of each pair recomputed from the runs' own step times
    pairs = [a / b for a, b in zip(runs["mogrpo_gradient"]["steps"], runs["mogrpo_fixed"]["steps"])]
    assert result["ratios"]["gradient_vs_fixed"]["median"] == pytest.approx(statistics.median(pairs))

    probe = result["gram_probe"]
    assert probe["passes"] == rounds * (warmup + steps)  # one Gram pass per gradient step
    assert probe["peak_memory_gib"] is None and "CPU" in probe["note"]
    assert result["host_peak_rss_mib"] > 0
    assert result["vllm"]["status"] == "skipped" and "CPU" in result["vllm"]["reason"]
    # the verl step runs where verl imports (tests/verl/test_verl_cpu.py runs it in .venv-verl)
    spec = importlib.util.find_spec("verl")  # tests/ is on sys.path here: tests/verl is a namespace "verl"
    if spec is None or spec.origin is None:
        assert result["verl"] == {"status": "skipped", "reason": "verl is not installed (pip install -e '.[verl]')"}
    else:
        assert result["verl"]["status"] == "ran"
    assert result["model"]["shape"] == "tiny" and result["model"]["dtype"] == "float32"


def test_dry_run_prints_one_sane_json_line():
    """The CI variant: two rounds of one timed step after one warm-up step."""
    _check(_dry_run("--rounds", "2", "--steps", "1", timeout=240), rounds=2, steps=1, warmup=1)


@pytest.mark.slow
def test_dry_run_defaults_time_five_steps_per_configuration(tmp_path):
    out = tmp_path / "partial.json"
    result = _dry_run("--json", str(out), timeout=400)
    _check(result, rounds=3, steps=2, warmup=1)
    assert result["ratios"]["fixed_vs_trl"]["n"] >= 5
    assert json.loads(out.read_text()) == result


def test_spread_and_paired_ratio_match_hand_worked_values():
    gpu_check = _load_module()
    s = gpu_check.spread([4.0, 1.0, 3.0, 2.0])
    q1, med, q3 = statistics.quantiles([1.0, 2.0, 3.0, 4.0], n=4, method="inclusive")
    assert (s["q1"], s["median"], s["q3"], s["iqr"], s["min"], s["max"], s["n"]) == (q1, med, q3, q3 - q1, 1, 4, 4)
    assert (q1, med, q3) == (1.75, 2.5, 3.25)
    # round 1: A 2, 4 vs B 1, 2; round 2: A 3 vs B 3 -> pairs 2, 2, 1; pooled medians 3 / 2
    r = gpu_check.paired_ratio([[2.0, 4.0], [3.0]], [[1.0, 2.0], [3.0]])
    assert r["pairs"] == [2.0, 2.0, 1.0]
    assert (r["median"], r["min"], r["max"], r["n"]) == (2.0, 1.0, 2.0, 3)
    assert r["pooled_median_ratio"] == 1.5
    assert gpu_check.spread([])["median"] is None


def test_model_is_qwen3_1_7b_shaped_and_padded_tokenizer_round_trips(tmp_path):
    import torch
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    from moalign.tiny import char_tokenizer, tiny_config

    gpu_check = _load_module()
    # Qwen3-1.7B by hand: per layer q (h x 16*128), k and v (h x 8*128), o, the MLP's three h x 6144 matrices, two
    # RMSNorms of h and the q/k norms of 128; tied embeddings of 151,936 x h; the final norm.
    h, i, hd = 2048, 6144, 128
    layer = h * 16 * hd + 2 * h * 8 * hd + 16 * hd * h + 3 * h * i + 2 * h + 2 * hd
    expected = 28 * layer + 151_936 * h + h
    with torch.device("meta"):
        model = Qwen3ForCausalLM(tiny_config(gpu_check.QWEN3_VOCAB, **gpu_check.QWEN3_1_7B))
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 1.70e9 < expected < 1.75e9  # "1.7B", of which 1.4 B outside the embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight

    info = gpu_check.write_model(tmp_path, gpu_check.TINY, 300, torch.device("cpu"), torch.float32)
    assert info["vocab_size"] == 300 and info["parameters"] > 0
    assert info["training_state_gib"] == pytest.approx(4 * info["parameters"] * 4 / 2**30)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 300
    text = "Compute 3+4-1.\nSo 6."
    assert tok(text)["input_ids"] == char_tokenizer()(text)["input_ids"]  # text never maps to a filler
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.decode([299]) == "<t299>"  # every id the model can sample decodes
    assert Qwen3ForCausalLM.from_pretrained(tmp_path).config.vocab_size == 300


@pytest.mark.slow
def test_time_budget_stops_rounds_and_skips_the_hypervolume_run():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--rounds", "2", "--steps", "1", "--warmup", "0",
                           "--budget-s", "1"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["ok"], result["errors"]
    assert result["runs"]["mogrpo_fixed"]["runs"] == 1  # the first round always runs; the second would overrun
    assert "stopped after 1 of 2 rounds" in " ".join(result["warnings"])
    assert result["runs"]["mogrpo_hypervolume"]["skipped"].startswith("time budget")
    assert result["ratios"]["fixed_vs_trl"]["n"] == 1

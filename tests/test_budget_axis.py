"""benchmarks/budget_axis.py (issue 19 item 5): its three views of a run's front, checked by hand on made-up runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
              {"name": "conciseness", "maximize": True, "eval_metric": "length"},
              {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]


def _script():
    spec = importlib.util.spec_from_file_location("budget_axis", ROOT / "benchmarks" / "budget_axis.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(root: Path, label: str, seed: int, evals, weights):
    d = root / "grpo" / f"{label}-seed{seed}"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"method": label, "seed": seed, "objectives": OBJECTIVES,
                                            "strategy": {"name": label}, "config": {"max_completion_length": 64}}))
    (d / "evals.jsonl").write_text("".join(json.dumps({"step": s, "split": "test", "metrics": {
        "accuracy": a, "length": n, "clarity": c}}) + "\n" for s, a, n, c in evals))
    (d / "steps.jsonl").write_text("".join(json.dumps({"step": t, "weights": dict(zip(
        ["accuracy", "conciseness", "clarity"], w))}) + "\n" for t, w in weights))


def test_views_and_weights_by_hand(tmp_path):
    # length 32 of 64 -> 0.5 in the normalised space, so a point's HV is accuracy * 0.5 * clarity
    for seed, late in ((0, 0.6), (1, 0.4)):
        _run(tmp_path, "gradient", seed, [(0, 0.8, 32, 0.5), (30, late, 32, 1.0), (60, 0.5, 32, 1.0)],
             [(30, [0.5, 0.25, 0.25]), (60, [0.6, 0.2, 0.2])])
        _run(tmp_path, "fixed-accuracy", seed, [(0, 0.8, 32, 0.5), (30, 0.5, 32, 0.8), (60, 0.5, 32, 0.9)],
             [(30, [0.5, 0.25, 0.25]), (60, [0.5, 0.25, 0.25])])
    result = _script().analyse(tmp_path, "fixed-accuracy", after=30, n_boot=200)
    rows = {r["view"]: r["hv"] for r in result["rows"]}
    # whole run: step 0's (0.8, 0.5, 0.5) and the best late point; union of two boxes
    g_whole = [0.6 * 0.5 * 1.0 + 0.8 * 0.5 * 0.5 - 0.6 * 0.5 * 0.5, 0.5 * 0.5 * 1.0 + 0.8 * 0.5 * 0.5 - 0.5 * 0.5 * 0.5]
    p_whole = 0.5 * 0.5 * 0.9 + 0.8 * 0.5 * 0.5 - 0.5 * 0.5 * 0.5
    assert rows["whole run"]["mean_a"] == pytest.approx(sum(g_whole) / 2)
    assert rows["whole run"]["mean_b"] == pytest.approx(p_whole)
    assert rows["after step 30"]["mean_a"] == pytest.approx((0.6 * 0.5 + 0.5 * 0.5) / 2)  # step 0 left out
    assert rows["after step 30"]["mean_b"] == pytest.approx(0.5 * 0.5 * 0.9)
    assert rows["final"]["diff"] == pytest.approx(0.5 * 0.5 * 1.0 - 0.5 * 0.5 * 0.9)
    assert result["mean_weights"] == {30: [0.5, 0.25, 0.25], 60: [0.6, 0.2, 0.2]}
    md = _script().markdown(result)
    assert "| after step 30 |" in md and "60: [0.6, 0.2, 0.2]" in md

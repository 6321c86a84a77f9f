"""Fronts, normalised HV, front means, steps-to-front and coverage on hand-made evaluations; report on a fake run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.evaluation import coverage, normalised_point, summarize_front
from moalign.report import build_report
from moalign.rundir import append_jsonl, atomic_write_json

OBJECTIVES = [
    {"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
    {"name": "conciseness", "maximize": True, "eval_metric": "length"},
    {"name": "clarity", "maximize": True, "eval_metric": "clarity"},
]


def _ev(step, acc, length, clarity, split="test"):
    return {"step": step, "split": split, "metrics": {"accuracy": acc, "length": length, "clarity": clarity, "n": 10}}


EVALS = [
    _ev(0, 0.5, 50.0, 0.5),   # dominated by step 10
    _ev(5, 0.4, 20.0, 0.2),   # front (shortest)
    _ev(10, 0.6, 40.0, 0.6),  # front
    _ev(15, 0.6, 40.0, 0.6),  # duplicate of step 10: kept once (earliest)
    _ev(20, 0.8, 90.0, 0.9),  # front (most accurate/clear)
]


def test_front_hv_means_and_steps_by_hand():
    s = summarize_front(EVALS, OBJECTIVES, max_completion_length=100)
    assert s.steps == [5, 10, 20]
    assert s.metrics == ["accuracy", "length", "clarity"]
    # normalised points (acc, 1 - len/100, clarity): (.4,.8,.2), (.6,.6,.6), (.8,.1,.9); HV by inclusion-exclusion
    a, b, c = np.array([0.4, 0.8, 0.2]), np.array([0.6, 0.6, 0.6]), np.array([0.8, 0.1, 0.9])
    vol = lambda *ps: float(np.prod(np.min(ps, axis=0)))  # noqa: E731
    expected = vol(a) + vol(b) + vol(c) - vol(a, b) - vol(a, c) - vol(b, c) + vol(a, b, c)
    assert s.hypervolume == pytest.approx(expected, abs=1e-12)
    assert s.front_means == pytest.approx({"accuracy": 0.6, "length": 50.0, "clarity": 1.7 / 3})
    assert s.steps_to_front == pytest.approx(35 / 3)


def test_normalised_point_and_coverage():
    class Obj:
        def __init__(self, name, metric=None):
            self.name, self.eval_metric = name, metric

    objs = [Obj("accuracy"), Obj("conciseness", "length"), Obj("clarity")]
    point = normalised_point({"accuracy": 0.5, "length": 25.0, "clarity": 1.0}, objs, 100)
    np.testing.assert_allclose(point, [0.5, 0.75, 1.0])
    a = np.array([[0.6, 40.0, 0.6], [0.8, 90.0, 0.9]])
    b = np.array([[0.5, 50.0, 0.5], [0.9, 95.0, 0.9]])
    maximize = [True, False, True]
    assert coverage(a, b, maximize) == 0.5  # a covers b's first point only
    assert coverage(b, a, maximize) == 0.0
    assert coverage(a, a, maximize) == 1.0


def test_no_evaluations_is_a_clear_error():
    with pytest.raises(ValueError, match="no evaluations to summarize"):
        summarize_front([], OBJECTIVES, 100)


def _fake_run(path, name, strategy, evals, steps):
    atomic_write_json(path / "run.json", {"name": name, "method": name, "objectives": OBJECTIVES,
                                          "strategy": {"name": strategy}, "config": {"max_completion_length": 100}})
    for e in evals:
        append_jsonl(path / "evals.jsonl", e)
    for s in steps:
        append_jsonl(path / "steps.jsonl", s)


def test_report_on_fake_run_directories(tmp_path):
    steps = [{"step": i, "weights": {"accuracy": 0.5, "conciseness": 0.25, "clarity": 0.25},
              "rewards": {"accuracy": 0.1 * i, "conciseness": 0.5, "clarity": 0.2},
              "covariance": {"accuracy": 0.1, "conciseness": -0.05, "clarity": 0.0},
              "strategy": {"r_pareto": 0.5 + 0.1 * i}} for i in range(1, 4)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _fake_run(tmp_path / "a", "hv", "hypervolume", EVALS, steps)
    _fake_run(tmp_path / "b", "fixed", "fixed", [_ev(0, 0.5, 50.0, 0.5), _ev(5, 0.7, 60.0, 0.7)], steps[:2])
    index = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "report", split="test")
    out = index.parent
    assert {"index.html", "fronts.png", "fronts3d.png", "weights.png", "covariance.png", "r_pareto.png",
            "summary.json"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"]["hv"]["steps"] == [5, 10, 20]
    assert summary["runs"]["fixed"]["steps"] == [0, 5]  # shorter vs more accurate: both on the front
    assert set(summary["coverage"]) == {"hv", "fixed"}
    assert summary["methods"]["hv"]["runs"] == 1
    html = index.read_text()
    assert "normalised HV" in html and html.count("data:image/png;base64,") >= 5
    with pytest.raises(ValueError, match="none of the runs has evaluations on split 'val'"):
        build_report([tmp_path / "a"], tmp_path / "r2", split="val")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        build_report([tmp_path], tmp_path / "r3")


def test_evaluate_policy_per_row_scores_agree_with_the_means():
    """``per_row`` (used for paired base-vs-trained comparisons) holds each row's length and scores; their means are
    the reported metrics, and each row's score is what the objective gives that row's completion alone."""
    from moalign.data.synthetic import load_synthetic
    from moalign.evaluation import evaluate_policy
    from moalign.objectives import build_objective
    from moalign.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    rows = [dict(r) for r in load_synthetic(n_train=4, n_val=4, n_test=6)["test"]]
    objectives = [build_objective(n) for n in ("accuracy", "conciseness", "clarity")]
    m = evaluate_policy(model, tok, rows, objectives, max_new_tokens=12, batch_size=4)
    per_row = m["per_row"]
    assert len(per_row["length"]) == 6 and all(1 <= n <= 12 for n in per_row["length"])
    assert np.mean(per_row["length"]) == pytest.approx(m["length"])
    for obj in objectives:
        scores = per_row[obj.name]
        assert len(scores) == 6
        assert np.mean([s for s in scores if s is not None]) == pytest.approx(m[obj.name])
    accuracy = objectives[0]
    for row, text, score in zip(rows, m["completions"], per_row["accuracy"]):
        alone = accuracy(prompts=[row["prompt"]], completions=[text], answer=[row["answer"]])[0]
        assert score == pytest.approx(alone)

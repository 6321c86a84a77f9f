"""Live Pareto metrics (moalign.live_front): what each evaluation logs, checked against moalign report's front and
a hand-worked hypervolume; TensorBoard and trackio runs read back with the loggers' own readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moalign.evaluation import summarize_front
from moalign.live_front import FrontTracker
from moalign.report import build_report
from moalign.rundir import read_jsonl

META = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
        {"name": "conciseness", "maximize": True, "eval_metric": "length"}]


def _metrics(acc, length):
    return {"n": 10, "length": length, "accuracy": acc, "conciseness": 0.5}


def test_tracker_by_hand():
    """L = 100; points (acc, 1 - len/100): (0.2, 0.5), (0.4, 0.2), then (0.1, 0.4) dominated, then (0.5, 0.5)."""
    tracker = FrontTracker(META, max_completion_length=100, split="test")
    first = tracker.add(0, _metrics(0.2, 50))
    assert first["pareto/hypervolume"] == pytest.approx(0.2 * 0.5)
    assert first["pareto/front_size"] == 1 and first["pareto/new_point_nondominated"] == 1
    assert first["eval_accuracy"] == 0.2 and first["eval_length"] == 50 and "eval_n" not in first
    second = tracker.add(5, _metrics(0.4, 80))
    assert second["pareto/hypervolume"] == pytest.approx(0.2 * 0.5 + 0.2 * 0.2)  # two rectangles, overlap once
    assert second["pareto/front_size"] == 2 and second["pareto/new_point_nondominated"] == 1
    third = tracker.add(10, _metrics(0.1, 60))
    assert third["pareto/hypervolume"] == pytest.approx(0.14)
    assert third["pareto/front_size"] == 2 and third["pareto/new_point_nondominated"] == 0
    fourth = tracker.add(15, _metrics(0.5, 50))  # dominates both front points
    assert fourth["pareto/hypervolume"] == pytest.approx(0.25)
    assert fourth["pareto/front_size"] == 1 and fourth["pareto/new_point_nondominated"] == 1
    assert tracker.front_table() == (["step", "accuracy", "length"], [[15, 0.5, 50.0]])


def test_tracker_restore_keeps_only_its_split():
    tracker = FrontTracker(META, max_completion_length=100, split="test")
    tracker.restore([{"step": 0, "split": "val", "metrics": _metrics(0.9, 10)},
                     {"step": 0, "split": "test", "metrics": _metrics(0.2, 50)}])
    assert tracker.add(5, _metrics(0.1, 90))["pareto/hypervolume"] == pytest.approx(0.1)


def _check_against_report(run_dir: Path, hv_by_step: dict[int, float], acc_by_step: dict[int, float]):
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["pareto"] == {"space": "normalised", "reference_point": [0.0, 0.0], "split": "test"}
    evals = read_jsonl(run_dir / "evals.jsonl")
    assert [e["step"] for e in evals] == [0, 1, 2] and sorted(hv_by_step) == [0, 1, 2]
    for i, e in enumerate(evals):
        expected = summarize_front(evals[: i + 1], meta["objectives"], 48).hypervolume
        assert hv_by_step[e["step"]] == pytest.approx(expected, abs=1e-6)
        assert acc_by_step[e["step"]] == pytest.approx(e["metrics"]["accuracy"], abs=1e-6)
    build_report([run_dir], run_dir / "report", split="test")
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert hv_by_step[2] == pytest.approx(summary["runs"][run_dir.name]["hypervolume"], abs=1e-6)
    assert summary["runs"][run_dir.name]["hypervolume"] > 0  # the warm start scores: a front with volume


def test_tensorboard_run_logs_what_report_computes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from _live_front_run import run

    trainer = run("tensorboard", tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    # transformers' rewrite_logs: eval_x -> eval/x, any other key k -> train/k (as TRL's own metrics)
    assert {"eval/accuracy", "eval/length", "eval/conciseness", "train/pareto/hypervolume", "train/pareto/front_size",
            "train/pareto/new_point_nondominated", "train/weights/accuracy"} <= set(scalars)
    _check_against_report(tmp_path / "run", scalars["train/pareto/hypervolume"], scalars["eval/accuracy"])
    assert sorted(scalars["train/weights/accuracy"]) == [1, 2]  # TRL's own log of each step is still there
    front_text = events.Tensors("pareto/front/text_summary")
    assert front_text and front_text[-1].step == trainer.state.global_step
    table = front_text[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| step | accuracy | length |")
    assert table.count("\n") == 2 + json.loads((tmp_path / "run" / "report" / "summary.json").read_text())[
        "runs"]["run"]["steps"].__len__()


def test_trackio_run_offline(tmp_path):
    pytest.importorskip("trackio")
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "_live_front_run.py"), "trackio",
                          str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    hv = {int(r["train/global_step"]): r["train/pareto/hypervolume"] for r in rows if "train/pareto/hypervolume" in r}
    acc = {int(r["train/global_step"]): r["eval/accuracy"] for r in rows if "eval/accuracy" in r}
    weights = [r["train/weights/accuracy"] for r in rows if "train/weights/accuracy" in r]
    assert len(weights) == 2 and all(w == pytest.approx(0.5, abs=1e-6) for w in weights)  # TRL's log, each step
    _check_against_report(tmp_path / "run", hv, acc)

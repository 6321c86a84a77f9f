"""`moalign demo --quick` end to end (the CI smoke test of the main job) and the demo's configuration checks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import pytest

from moalign._quiet import quiet_libraries
from moalign.demo import GRADIENT_NOTE, METHODS, DemoConfig
from moalign.rundir import read_jsonl

# What leaks when transformers/TRL are left to print: per-run weight-loading bars, their warnings and advice.
LEAKS = ("Loading weights", "Warning", "warnings.warn", "site-packages", "it/s]", "deprecated")


def test_quick_demo_writes_report_and_evaluations(tmp_path):
    # A real process, as a user runs it: pytest's own warning capture and CliRunner would hide what reaches a
    # terminal (warnings, tqdm bars on stderr).
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-m", "moalign.cli", "demo", "--quick", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "report:" in output
    leaked = [line for line in output.replace("\r", "\n").splitlines() if any(s in line for s in LEAKS)]
    assert not leaked, "library output leaked into the demo's console:\n" + "\n".join(leaked)
    # The gradient run's GRPO setting is explained in the demo's words, not left as the config's warning.
    assert "assumes the update is linear" not in output
    # The runs' precision is the command's to say (an INFO record, below the demo's WARNING level), never once per
    # worker process (they logged it before log_for_runs).
    assert output.count("precision:") <= 1
    assert " ".join(GRADIENT_NOTE.split()[:12]) in " ".join(output.split())
    report = out / "report"
    assert {"index.html", "fronts.png", "weights.png", "summary.json"} <= {p.name for p in report.iterdir()}
    html = (report / "index.html").read_text()
    assert "data:image/png;base64," in html  # self-contained: images embedded, nothing fetched
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["methods"]) == {m[0] for m in METHODS}
    for label, *_ in METHODS:
        run = out / f"{label}-seed0"
        evals = read_jsonl(run / "evals.jsonl")
        assert [e["step"] for e in evals if e["split"] == "test"] == [0, 2, 4], label
        assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == [1, 2, 3, 4], label
        # the hypervolume method's points come from the val split (every 2 steps and the initial policy), never test
        val = [e["step"] for e in evals if e["split"] == "val"]
        assert val == ([0, 2, 4] if label == "hypervolume" else []), label
    # one estimator for every method: the comparison is the weighting's, not the estimator's
    assert {m[3] for m in METHODS} == {"grpo"}


def test_demo_config_errors():
    with pytest.raises(ValueError, match="unknown demo method"):
        DemoConfig(methods=["fixed-accuracy", "magic"])
    with pytest.raises(ValueError, match="--steps and --seeds must be >= 1"):
        DemoConfig(steps=0)
    assert DemoConfig(quick=True).steps == 4
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        DemoConfig(workers=0)


def test_quiet_libraries_is_scoped_and_restores_switches():
    import datasets
    import transformers

    tf_log = transformers.utils.logging
    before = (tf_log.get_verbosity(), tf_log.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
              logging.getLogger("trl").level)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_libraries():
            assert tf_log.get_verbosity() == logging.ERROR and not tf_log.is_progress_bar_enabled()
            assert not datasets.is_progress_bar_enabled()
            warnings.warn_explicit("library advice", FutureWarning, "training_args.py", 1,
                                   module="transformers.training_args")
            warnings.warn_explicit("trl advice", UserWarning, "grpo_trainer.py", 1, module="trl.trainer.grpo_trainer")
            warnings.warn_explicit("ours", UserWarning, "trainer.py", 1, module="moalign.trainer")
    assert [str(w.message) for w in seen] == ["ours"]  # only the libraries' warnings are silenced
    after = (tf_log.get_verbosity(), tf_log.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
             logging.getLogger("trl").level)
    assert after == before


def test_demo_evaluates_each_task_member_as_its_bench_does(monkeypatch):
    """The async member's demo runs sample their evaluations (temperature 1, as `moalign bench --task async`); the
    coupled member's stay greedy."""
    import moalign.demo as demo

    seen = []
    monkeypatch.setattr(demo, "train_synthetic_run", lambda **kw: seen.append((kw["extra_info"]["task"],
                                                                                kw["eval_temperature"])))
    for task in ("coupled", "async"):
        cfg = demo.DemoConfig(quick=True, task=task)
        demo._train_one("fixed-balanced", "fixed", {"preset": "balanced"}, "grpo", 0, None, None, cfg, None)
    from moalign.bench import BenchConfig

    assert seen == [("coupled", 0.0), ("async", 1.0)]
    assert [BenchConfig(task=t).eval_temperature for t in ("coupled", "async")] == [0.0, 1.0]

"""Every `moalign` command shows only its own output: no library warnings, log lines or progress bars on stderr unless
`--verbose`. Each command runs as a real process, as a user runs it: pytest's warning capture and CliRunner would
hide what reaches a terminal (warnings, tqdm bars on stderr). Also: `moalign bench`'s progress, the demo's mode table
and one-seed note, and the report's axis labels."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer

from moalign._quiet import command_output, libraries_quiet
from moalign.cli import app
from moalign.rundir import append_jsonl, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
# What leaks when the libraries are left to print: their warnings (FutureWarning, UserWarning, "warnings.warn(" source
# lines), weight-loading and dataset bars, tqdm's rate and percentage columns.
LEAKS = ("Warning", "warnings.warn", "Loading weights", "Writing model shards", "Map:", "Generating ", "it/s]",
         "examples/s]", "%|", "site-packages")
OWN_LOG_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) moalign[.:]")
OBJECTIVES = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
              {"name": "conciseness", "maximize": True, "eval_metric": "length"},
              {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]


def moalign(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("PYTHONWARNINGS", "FORCE_COLOR", "TTY_COMPATIBLE"):  # what the user's shell would not set
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "moalign.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_quiet(proc: subprocess.CompletedProcess) -> None:
    """stderr holds nothing but moalign's own log lines, and neither stream a library's warning or bar."""
    stderr = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    foreign = [line for line in stderr if not OWN_LOG_LINE.match(line)]
    assert not foreign, "library output on stderr:\n" + "\n".join(foreign)
    leaked = [line for line in (proc.stdout + proc.stderr).replace("\r", "\n").splitlines()
              if any(s in line for s in LEAKS)]
    assert not leaked, "library output leaked:\n" + "\n".join(leaked)


def fake_run(path: Path, name: str, evals: list[tuple[int, float, float, float]], max_completion_length: int = 64):
    """A run directory with hand-made test evaluations ``(step, accuracy, length, clarity)``."""
    path.mkdir(parents=True)
    atomic_write_json(path / "run.json", {"name": name, "method": name, "objectives": OBJECTIVES, "seed": 0,
                                          "strategy": {"name": "fixed"},
                                          "config": {"max_completion_length": max_completion_length}})
    for step, acc, length, clarity in evals:
        append_jsonl(path / "evals.jsonl", {"step": step, "split": "test", "metrics": {
            "accuracy": acc, "length": length, "clarity": clarity, "n": 8}})
    for step in range(1, 3):
        append_jsonl(path / "steps.jsonl", {"step": step, "weights": {o["name"]: 1 / 3 for o in OBJECTIVES}})
    return path


# Normalised points (accuracy, 1 - length/64, clarity): (.5, .5, .4) and (.25, .75, .8); their union's volume is
# .5*.5*.4 + .25*.75*.8 - .25*.5*.4 (the boxes' intersection) = 0.2. The last evaluation has clarity .8: step-by-step.
TWO_POINT_RUN = [(0, 0.5, 32.0, 0.4), (2, 0.25, 16.0, 0.8)]


# ---------------------------------------------------------------------------------------------------------------------
# the mechanism, in process
# ---------------------------------------------------------------------------------------------------------------------
def test_every_command_has_verbose():
    group = typer.main.get_command(app)

    def commands(cmd, path=()):
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from commands(sub, (*path, name)) if hasattr(sub, "commands") else [((*path, name), sub)]

    found = {" ".join(path): [o for p in sub.params for o in getattr(p, "opts", [])] for path, sub in commands(group)}
    assert {"train", "eval", "report", "demo", "bench", "experts train", "generate", "meta-eval"} <= set(found)
    assert [name for name, opts in found.items() if "--verbose" not in opts] == []


def test_command_output_hides_library_records_and_warnings_but_not_errors_or_ours(caplog):
    caplog.set_level(logging.INFO)
    lib, ours = logging.getLogger("somelib.module"), logging.getLogger("moalign.trainer")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with command_output(verbose=False):
            assert libraries_quiet()
            lib.warning("library advice")
            lib.error("library error")
            ours.info("our info")
            warnings.warn_explicit("transformers advice", FutureWarning, "modeling_utils.py", 1,
                                   module="transformers.modeling_utils")
            warnings.warn_explicit("our warning", UserWarning, "trainer.py", 1, module="moalign.trainer")
        assert not libraries_quiet()
        lib.warning("library advice after")  # switches restored
        with command_output(verbose=True):
            lib.warning("library advice, verbose")
            warnings.warn_explicit("transformers advice, verbose", FutureWarning, "modeling_utils.py", 1,
                                   module="transformers.modeling_utils")
    assert [r.getMessage() for r in caplog.records] == ["library error", "our info", "library advice after",
                                                        "library advice, verbose"]
    assert [str(w.message) for w in seen] == ["our warning", "transformers advice, verbose"]


def test_bench_progress_lines_off_and_on_a_terminal(tmp_path, monkeypatch, capsys):
    from moalign.bench import _RunProgress

    job = {"estimator": "grpo", "label": "fixed-balanced", "seed": 7, "name": "grpo/fixed-balanced-seed7",
           "run_dir": str(fake_run(tmp_path / "run", "fixed-balanced", TWO_POINT_RUN))}
    line = re.compile(r"^\[(\d)/3\] grpo fixed-balanced seed 7: HV 0\.200 \(step-by-step\), run 1m05s \| "
                      r"elapsed \d+s, ETA \d+s$", re.M)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # a log file or CI: lines only, no bar
    with _RunProgress(total=3, done=1, enabled=True) as bar:
        bar.running(job)
        bar.finished(job, 65.0)
        bar.finished(job, 65.0)
    out = capsys.readouterr().out
    assert [m.group(1) for m in line.finditer(out)] == ["2", "3"] and out.count("\n") == 2, out
    assert out.splitlines()[-1].endswith("ETA 0s")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # a terminal: the same lines above a live bar
    with _RunProgress(total=3, done=1, enabled=True) as bar:
        bar.finished(job, 65.0)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capsys.readouterr().out).replace("\r", "\n")  # no cursor moves
    assert line.search(out) and "━" in out and "ETA" in out
    with _RunProgress(total=3, done=1, enabled=False) as bar:  # progress=False: nothing at all
        bar.finished(job, 65.0)
    assert capsys.readouterr().out == ""


def test_report_axes_and_mode(tmp_path):
    from moalign.report import answer_mode, axis_label, build_report

    assert axis_label("length", False) == "length (tokens, lower is better)"
    assert axis_label("accuracy", True) == "accuracy (higher is better)"
    assert (answer_mode({"clarity": 0.5}), answer_mode({"clarity": 0.49}), answer_mode({"accuracy": 1.0})) == (
        "steps", "direct", None)
    a = fake_run(tmp_path / "a", "a", TWO_POINT_RUN)
    b = fake_run(tmp_path / "b", "b", [(0, 0.5, 32.0, 0.4), (2, 0.6, 10.0, 0.1)])
    index = build_report([a, b], tmp_path / "report", split="test")
    summary = json.loads((index.parent / "summary.json").read_text())
    assert {name: run["mode"] for name, run in summary["runs"].items()} == {"a": "steps", "b": "direct"}
    assert summary["runs"]["a"]["hypervolume"] == pytest.approx(0.2)
    html = index.read_text()
    assert "<th>mode (last evaluation)</th>" in html and html.count("<td>step-by-step</td>") == 1
    assert html.count("<td>direct</td>") == 1


def test_report_axis_labels_in_the_figure(tmp_path, monkeypatch):
    import matplotlib.figure

    from moalign.report import build_report

    labels = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, path, **kw: (labels.extend(ax.get_xlabel() for ax in fig.axes),
                                                 Path(path).write_bytes(b"png")))
    build_report([fake_run(tmp_path / "a", "a", TWO_POINT_RUN)], tmp_path / "report", split="test")
    assert {"accuracy (higher is better)", "length (tokens, lower is better)", "RL step"} <= set(labels)
    assert not [label for label in labels if "(min)" in label or "(max)" in label]


# ---------------------------------------------------------------------------------------------------------------------
# each command as a process
# ---------------------------------------------------------------------------------------------------------------------
def test_hv_is_quiet():
    proc = moalign("hv", "examples/front.csv", "--columns", "accuracy,length,clarity", "--ref", "0,2048,0",
                   "--minimize", "length")
    assert_quiet(proc)
    assert "hypervolume: 523.989" in proc.stdout


def test_report_is_quiet(tmp_path):
    run = fake_run(tmp_path / "run", "run", TWO_POINT_RUN)
    proc = moalign("report", str(run), "--split", "test")
    assert_quiet(proc)
    assert "report:" in proc.stdout


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "run"
    proc = moalign("train", "examples/math500_tiny_fixed.yaml", "--run_dir", str(run), "--output_dir",
                   str(run / "checkpoints"), "--max_steps", "1", "--max_completion_length", "8", "--mo_eval_size", "2",
                   "--mo_eval_steps", "1")
    return proc, run


def test_train_is_quiet(trained_run):
    proc, run = trained_run
    assert_quiet(proc)  # no FutureWarnings, no Map/Generating/Writing-shards bars; moalign's INFO lines stay
    assert f"run directory: {run}" in proc.stdout


def test_eval_is_quiet(trained_run):
    _, run = trained_run
    (run / "evals.jsonl").unlink()  # evaluate the initial policy and the final model again
    proc = moalign("eval", str(run), "--split", "test", "--max-rows", "2", "--batch-size", "2")
    assert_quiet(proc)  # no "Loading weights" bar per checkpoint
    assert "evaluation(s) appended" in proc.stdout


@pytest.fixture(scope="module")
def experts_dir(tmp_path_factory):
    from _meta_helpers import random_experts

    from moalign.meta.experts import save_experts

    return save_experts(random_experts(scale=0.3), tmp_path_factory.mktemp("experts"), "warmstart",
                        training_steps=2)


def test_generate_is_quiet_and_verbose_lets_the_libraries_through(experts_dir):
    args = ("generate", "--experts", str(experts_dir), "--preference", "0.5,0.5,0", "--prompt", "1+2=?",
            "--max-new-tokens", "4")
    proc = moalign(*args)
    assert_quiet(proc)
    assert "mixture 0.50, 0.50, 0.00" in proc.stdout
    loud = moalign(*args, "--verbose")
    assert "Loading weights" in loud.stderr  # transformers >= 5 draws it for every model it loads


def test_bench_is_quiet_and_prints_a_line_per_run(tmp_path):
    out = tmp_path / "bench"
    proc = moalign("bench", "--quick", "--seeds", "3", "--methods", "fixed-balanced", "--workers", "1", "--out",
                   str(out))
    assert_quiet(proc)
    run = json.loads((out / "bench.json").read_text())["estimators"]["grpo"]["runs"]["fixed-balanced"]["3"]
    mode = {"steps": "step-by-step", "direct": "direct"}[run["mode"]]
    assert re.search(rf"^\[1/1\] grpo fixed-balanced seed 3: HV {run['hv']:.3f} \({mode}\), run \d+s \| "
                     r"elapsed \d+s, ETA 0s$", proc.stdout, re.M), proc.stdout
    assert "━" not in proc.stdout  # not a terminal: no bar


@pytest.mark.slow
def test_bench_workers_are_quiet(tmp_path):
    """Spawned workers start with the libraries' defaults; the pool initializer passes the command's choice on."""
    proc = moalign("bench", "--quick", "--seeds", "3,4", "--methods", "fixed-balanced", "--workers", "2", "--out",
                   str(tmp_path / "bench"))
    assert_quiet(proc)
    assert len(re.findall(r"^\[\d/2\] grpo fixed-balanced seed [34]: HV ", proc.stdout, re.M)) == 2


@pytest.mark.slow
def test_experts_train_and_meta_eval_are_quiet(tmp_path):
    cfg = tmp_path / "experts.yaml"
    cfg.write_text("experts:\n  - {name: accuracy, weights: [0.6, 0.2, 0.2]}\n"
                   "  - {name: brevity, weights: [0.2, 0.6, 0.2], strategy: fixed}\neval_every: 0\n")
    proc = moalign("experts", "train", str(cfg), "--quick", "--steps", "1", "--out", str(tmp_path / "ex"))
    assert_quiet(proc)
    assert "experts run:" in proc.stdout
    proc = moalign("meta-eval", str(tmp_path / "ex"), "--aggregation", "hidden", "--rows", "2", "--grid-step", "1.0",
                   "--max-new-tokens", "4")
    assert_quiet(proc)
    assert "summary:" in proc.stdout


@pytest.mark.slow
def test_demo_says_each_runs_mode_and_what_one_seed_cannot_show(tmp_path):
    out = tmp_path / "demo"
    proc = moalign("demo", "--quick", "--methods", "fixed-balanced", "--out", str(out))
    assert_quiet(proc)
    summary = json.loads((out / "report" / "summary.json").read_text())
    mode = {"steps": "step-by-step", "direct": "direct"}[summary["runs"]["fixed-balanced-seed0"]["mode"]]
    stdout = " ".join(proc.stdout.split())
    assert re.search(rf"fixed-balanced-seed0 │ [0-9.]+ │ {mode} │", stdout), stdout
    assert "One seed per method cannot rank the methods" in stdout and "moalign bench" in stdout
    assert "docs/BENCHMARKS.md" in stdout
    html = (out / "report" / "index.html").read_text()
    assert "One seed per method cannot rank the methods" in html and f"<td>{mode}</td>" in html

"""``moalign bench``: paired statistics against independent computations, tables from hand-made runs, CLI smoke."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil  # comes with accelerate
import pytest
from typer.testing import CliRunner

from moalign.bench import BenchConfig, _complete, bench_markdown, bootstrap_ci, paired_comparison, summarize_bench
from moalign.cli import app


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    d = rng.normal(0.02, 0.03, size=8)
    lo, hi = bootstrap_ci(d, n_boot=20000)
    ref = stats.bootstrap((d,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                          random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=2e-3) and hi == pytest.approx(ref.high, abs=2e-3)
    assert lo < d.mean() < hi


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([0.1] * 5) == pytest.approx((0.1, 0.1))


def test_paired_comparison_by_hand():
    a = {0: 0.30, 1: 0.20, 2: 0.25, 3: 0.10}
    b = {0: 0.20, 1: 0.20, 2: 0.30, 4: 0.99}  # seed 4 has no partner, seed 3 neither: both ignored
    c = paired_comparison(a, b, n_boot=1000)
    assert c["n"] == 3
    assert c["diff"] == pytest.approx((0.10 + 0.0 - 0.05) / 3)
    assert (c["wins"], c["ties"], c["losses"]) == (1, 1, 1)
    assert c["mean_a"] == pytest.approx(0.25) and c["mean_b"] == pytest.approx(0.7 / 3)
    fewer = paired_comparison({0: 8.0, 1: 12.0}, {0: 10.0, 1: 10.0}, higher_is_better=False)
    assert (fewer["wins"], fewer["losses"]) == (1, 1)  # fewer steps is a win


def _fake_run(root: Path, method: str, seed: int, estimator: str, evals: list[tuple[int, float, float, float]],
              weights: list[list[float]] | None = None, r_pareto: list[float] | None = None) -> Path:
    d = root / estimator / f"{method}-seed{seed}"
    d.mkdir(parents=True)
    meta = {"name": f"{estimator}/{method}-seed{seed}", "method": method, "estimator": estimator, "seed": seed,
            "strategy": {"name": method.split("-")[0]}, "config": {"max_completion_length": 64},
            "objectives": [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
                           {"name": "conciseness", "maximize": True, "eval_metric": "length"},
                           {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]}
    (d / "run.json").write_text(json.dumps(meta))
    (d / "evals.jsonl").write_text("".join(
        json.dumps({"step": s, "split": "test", "metrics": {"accuracy": a, "length": n, "clarity": c}}) + "\n"
        for s, a, n, c in evals))
    steps = []
    for t, w in enumerate(weights or [[1 / 3] * 3]):
        line = {"step": t + 1, "weights": dict(zip(["accuracy", "conciseness", "clarity"], w)), "strategy": {}}
        if r_pareto:
            line["strategy"]["r_pareto"] = r_pareto[t]
        steps.append(line)
    (d / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return d


def test_summarize_bench_tables_from_hand_made_runs(tmp_path):
    dirs = []
    for seed, gain in ((0, 0.1), (1, 0.2)):
        # fixed-balanced: one front point at step 4 (acc 0.5, length 32 -> 0.5, clarity 0.5): HV = 0.125
        dirs.append(_fake_run(tmp_path, "fixed-balanced", seed, "grpo", [(0, 0.1, 60, 0.0), (4, 0.5, 32, 0.5)]))
        # gradient: better accuracy by `gain` at step 2 and clarity 0.5: HV = (0.5 + gain)·0.5·0.5
        dirs.append(_fake_run(tmp_path, "gradient", seed, "grpo", [(0, 0.1, 60, 0.0), (2, 0.5 + gain, 32, 0.5)],
                              weights=[[1 / 3] * 3, [0.5, 0.2, 0.3]]))
        dirs.append(_fake_run(tmp_path, "hypervolume-balanced", seed, "grpo", [(0, 0.1, 60, 0.0), (4, 0.4, 32, 0.6)],
                              weights=[[1 / 3] * 3] * 4, r_pareto=[1.0, 1.8, 0.5, 0.5]))
    summary = summarize_bench(dirs, BenchConfig(seeds=[0, 1], bootstrap=200))
    est = summary["estimators"]["grpo"]
    t2 = {row["preset"]: row for row in est["table2"]}
    assert t2["balanced"]["hv"]["diff"] == pytest.approx(np.mean([0.1, 0.2]) * 0.25)
    assert t2["balanced"]["hv"]["wins"] == 2
    assert t2["balanced"]["steps_to_front"]["diff"] == pytest.approx(-2.0)  # front at step 2 instead of 4
    t1 = {row["preset"]: row for row in est["table1"]}
    assert t1["balanced"]["hv"]["diff"] == pytest.approx(0.4 * 0.5 * 0.6 - 0.125)
    t3 = {row["method"]: row for row in est["table3"]}
    assert t3["gradient"]["max_weight_shift"] == pytest.approx(0.5 - 1 / 3)
    assert t3["hypervolume-balanced"]["r_pareto_share_above_1_5"] == pytest.approx(0.25)
    assert t3["hypervolume-balanced"]["r_pareto_share_at_0_5"] == pytest.approx(0.5)
    assert t3["fixed-balanced"]["mode_steps_share"] == 1.0  # final clarity 0.5 counts as step-by-step
    md = bench_markdown(summary | {"config": {"seeds": [0, 1]}, "wall_seconds": 60.0})
    assert "Table 1" in md and "Table 2" in md and "| gradient | 2 |" in md


def test_table4_resolution_and_cpu_time_from_hand_made_runs(tmp_path):
    """Table 4 compares every non-fixed method with the best preset (highest mean HV); each table states the CI
    half-width and the 80 %-power difference, here recomputed with scipy's normal quantiles; CPU time sums the runs'
    timing.json."""
    stats = pytest.importorskip("scipy.stats")
    dirs = []
    gains = {0: 0.10, 1: 0.02, 2: 0.06}
    for seed, gain in gains.items():
        dirs.append(_fake_run(tmp_path, "fixed-balanced", seed, "grpo", [(0, 0.1, 60, 0.0), (4, 0.5, 32, 0.5)]))
        dirs.append(_fake_run(tmp_path, "fixed-accuracy", seed, "grpo", [(0, 0.1, 60, 0.0), (4, 0.6, 32, 0.5)]))
        dirs.append(_fake_run(tmp_path, "saw", seed, "grpo", [(0, 0.1, 60, 0.0), (4, 0.6 + gain, 32, 0.5)]))
        (dirs[-1] / "timing.json").write_text(json.dumps({"wall_seconds": 30.0, "cpu_seconds": 29.5, "threads": 1}))
    summary = summarize_bench(dirs, BenchConfig(seeds=[0, 1, 2], bootstrap=500))
    table4 = summary["estimators"]["grpo"]["table4"]
    assert [(r["method"], r["best_fixed"]) for r in table4] == [("saw", "fixed-accuracy")]
    hv = table4[0]["hv"]
    diffs = np.array([g * 0.25 for g in gains.values()])
    assert hv["diff"] == pytest.approx(diffs.mean())
    assert hv["ratio"] == pytest.approx((0.6 * 0.25 + diffs.mean()) / (0.6 * 0.25))
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert hv["mde80"] == pytest.approx(z * diffs.std(ddof=1) / np.sqrt(3), rel=1e-5)
    assert hv["half_width"] == pytest.approx((hv["ci"][1] - hv["ci"][0]) / 2)
    assert summary["cpu_seconds"] == {"total": pytest.approx(3 * 29.5), "runs": 3, "of": 9}
    table5 = summary["estimators"]["grpo"]["table5"]  # saw starts from balanced weights; the presets do not count
    assert [r["method"] for r in table5] == ["saw"]
    assert table5[0]["hv"]["diff"] == pytest.approx(np.mean([(0.1 + g) * 0.25 for g in gains.values()]))
    md = bench_markdown(summary | {"config": {"seeds": [0, 1, 2], "eval_temperature": 1.0}, "wall_seconds": 60.0})
    assert "Table 4 — every other method vs the best fixed preset (fixed-accuracy)" in md
    assert f"| saw | 0.150 | {0.15 + diffs.mean():.3f}" not in md  # method first, then the preset
    assert f"| saw | {0.15 + diffs.mean():.3f} | 0.150 | {diffs.mean():+.3f}" in md
    assert f"{hv['ratio']:.3f} | 3/0/0 |" in md
    assert f"a true difference of {hv['mde80']:.3f} would be detected with 80 % power" in md
    assert "Table 5 — methods that start from balanced weights vs the balanced preset" in md
    assert "sampled evaluation (temperature 1)" in md and "CPU time 1 min over 3 of 9 runs" in md


def test_bench_eval_temperature_follows_the_task_and_guards_reuse(tmp_path):
    assert BenchConfig().eval_temperature == 0.0
    assert BenchConfig(task="async").eval_temperature == 1.0
    assert BenchConfig(task="async", eval_temperature=0.0).eval_temperature == 0.0
    with pytest.raises(ValueError, match="--eval-temperature must be >= 0"):
        BenchConfig(eval_temperature=-1.0)
    d = _fake_run(tmp_path, "fixed-balanced", 0, "grpo", [(0, 0.1, 60, 0.0), (30, 0.5, 32, 0.5)])
    assert _complete(d, BenchConfig())  # no mo_eval_temperature recorded: a greedy run
    with pytest.raises(ValueError, match="evaluated at temperature 0.0, not --eval-temperature 1.0"):
        _complete(d, BenchConfig(eval_temperature=1.0))


def test_bench_config_rejects_bad_input():
    with pytest.raises(ValueError, match="distinct integers"):
        BenchConfig(seeds=[1, 1])
    with pytest.raises(ValueError, match="unknown estimator"):
        BenchConfig(estimators=["ppo"])
    with pytest.raises(ValueError, match="unknown bench method"):
        BenchConfig(methods=["gradient", "magic"])


def test_bench_cli_quick_writes_tables_and_reports(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "--quick", "--seeds", "3,4", "--methods", "fixed-balanced,gradient",
                                      "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Table 2" in result.output and str(out / "bench.md") in result.output.replace("\n", "")
    data = json.loads((out / "bench.json").read_text())
    grpo = data["estimators"]["grpo"]
    assert {row["method"] for row in grpo["table3"]} == {"fixed-balanced", "gradient"}
    assert grpo["table2"][0]["hv"]["n"] == 2
    assert (out / "grpo" / "report" / "index.html").exists()
    timings = [json.loads(p.read_text()) for p in out.glob("grpo/*/timing.json")]
    assert len(timings) == 4 and all(t["cpu_seconds"] > 0 for t in timings)
    assert data["cpu_seconds"]["runs"] == 4 and "CPU time" in (out / "bench.md").read_text()
    # an interrupted bench resumes: a second call retrains nothing (finished runs are reused)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("grpo/*/evals.jsonl")}
    assert len(stamps) == 4
    again = CliRunner().invoke(app, ["bench", "--quick", "--seeds", "3,4", "--methods", "fixed-balanced,gradient",
                                     "--workers", "1", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("grpo/*/evals.jsonl")} == stamps
    assert json.loads((out / "bench.json").read_text())["estimators"]["grpo"]["table2"] == grpo["table2"]
    assert "for the 0 of 4 runs trained by the last invocation (the others were reused)" in (out / "bench.md").read_text()


def test_bench_cli_bad_seeds(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--seeds", "a,b", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "comma-separated integers" in result.output


def _running(pids):
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_until_reaped(children: set[int]) -> None:
    """The bench waits for its workers to end; allow up to 5 s for the last ones to be reaped."""
    for _ in range(50):
        if not _running(children):
            return
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_stopped_bench_ends_its_workers_keeps_finished_runs_and_resumes(tmp_path, how):
    """``kill <pid>`` (SIGTERM) left the pool's workers training on as orphans; Ctrl-C (SIGINT to the terminal's whole
    process group) waited for the running runs, then trained the queued ones. Now both end the workers at once, keep
    the finished runs, and the same command trains only the rest."""
    out, log = tmp_path / "bench", tmp_path / "log"
    args = ["bench", "--quick", "--steps", "2", "--seeds", "3,4", "--methods", "fixed-balanced,gradient",
            "--out", str(out)]
    with open(log, "w") as f:  # a file, not a pipe: orphans would hold a pipe open
        proc = subprocess.Popen([sys.executable, "-m", "moalign.cli", *args, "--workers", "2"], stdout=f,
                                stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                                start_new_session=True)
    try:
        children, deadline = set(), time.monotonic() + 300
        while not list(out.glob("grpo/*/timing.json")):  # then one run is finished and the others are training
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            children |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            time.sleep(0.1)
        children |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()
        _wait_until_reaped(children)
        assert not _running(children), f"{how}: processes left running {_running(children)}\n{log.read_text()}"
    finally:
        if proc.poll() is None or _running(children):
            os.killpg(proc.pid, signal.SIGKILL)  # the bench and anything it left behind (same process group)
    # finished = evaluated at the last step; a worker stopped before writing timing.json still finished its run
    finished = sorted(d for d in out.glob("grpo/*") if _complete(d, BenchConfig(steps=2, quick=True)))
    assert f"interrupted: {len(finished)} of 4 runs are finished and kept" in log.read_text()
    stamps = {d: (d / "evals.jsonl").stat().st_mtime_ns for d in finished}
    again = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert {d: (d / "evals.jsonl").stat().st_mtime_ns for d in finished} == stamps  # reused, not retrained
    trained = 4 - len(finished)
    assert f"for the {trained} of 4 runs trained by the last invocation" in (out / "bench.md").read_text()


def test_a_stopped_habits_bench_ends_its_workers_too(tmp_path):
    """`moalign bench --task habits` trains through the same worker pool (moalign.runpool): SIGTERM ends its workers
    and keeps the finished runs."""
    out, log = tmp_path / "habits", tmp_path / "log"
    args = ["bench", "--task", "habits", "--objectives", "2", "--steps", "2", "--eval-every", "1", "--eval-size", "4",
            "--seeds", "3", "--methods", "uniform,saw,mgda", "--workers", "2", "--out", str(out)]
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "moalign.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    try:
        children, deadline = set(), time.monotonic() + 300
        while not list(out.rglob("timing.json")):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            children |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            time.sleep(0.1)
        children |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130, log.read_text()
        _wait_until_reaped(children)
        assert not _running(children), f"processes left running {_running(children)}\n{log.read_text()}"
    finally:
        if proc.poll() is None or _running(children):
            os.killpg(proc.pid, signal.SIGKILL)
    assert "interrupted: the finished runs are kept" in log.read_text()
    assert list(out.rglob("timing.json"))

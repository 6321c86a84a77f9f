"""``moalign bench``: the paper's three comparisons on the embedded task, with seeds, paired differences and CIs.

*Learning to Optimize Multi-Objective Alignment Through Dynamic Reward Weighting* (arXiv 2509.11452) reports, per RL
algorithm, Table 1 (the hypervolume method applied on top of each fixed preset vs that preset), Table 2 (the gradient
method vs the three presets) and Table 3 (average steps to reach the Pareto front). Those are single runs; here each
comparison is paired by seed (same data order, same initial policy, same sampling seed) and summarised by the mean
difference, its bootstrap 95 % confidence interval and win/tie/loss counts, so a difference can be told from seed noise.

Every comparison is within one advantage estimator. Outcomes on the embedded task are bimodal (a run either moves to
step-by-step answers or collapses to short direct ones), so the share of runs in each mode is reported too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .demo import GRADIENT_MU
from .runpool import stop_on_signals, train_in_workers

__all__ = ["BenchConfig", "bench_methods", "bootstrap_ci", "paired_comparison", "run_bench", "summarize_bench"]

logger = logging.getLogger(__name__)

PRESETS = {"accuracy": "accuracy_focused", "balanced": "balanced", "efficiency": "efficiency_focused"}
# The paper's numbers (Qwen3-8B, Math500 test, GRPO; arXiv 2509.11452 Tables 1-3), quoted for orientation only:
# a 135x larger model, a real dataset and 360 steps -- not a target for the tiny task.
PAPER_NOTE = (
    "Paper (Qwen3-8B on Math500, GRPO, one run each): the hypervolume method improves the front over each fixed preset "
    "(Table 1), the gradient method's front dominates all three presets (Table 2), and both reach their front in fewer "
    "steps (Table 3; e.g. gradient vs presets about 20-40 % fewer)."
)


@dataclass
class BenchConfig:
    """Budget and seeds of ``moalign bench``; ``quick`` shrinks everything for a smoke run (CI)."""

    seeds: list[int] = field(default_factory=lambda: [100, 101, 102, 103, 104])
    data_seed: int = 0
    estimators: list[str] = field(default_factory=lambda: ["grpo"])  # the paper's main tables; add rloo, reinforce
    methods: list[str] | None = None  # default: every method of bench_methods()
    steps: int = 30
    eval_every: int = 3
    eval_size: int = 200
    prompts_per_step: int = 4
    generations: int = 8
    learning_rate: float = 1e-4
    max_completion_length: int = 64
    gradient_mu: float = GRADIENT_MU  # chosen on calibration seeds 0-2 (docs/BENCHMARKS.md)
    validation_size: int = 64  # val-split problems per hypervolume validation point
    workers: int = 2
    bootstrap: int = 10000
    out: str = "runs/bench"
    quick: bool = False
    task: str = "coupled"  # member of the synthetic task family (moalign.data.synthetic.VARIANTS; docs/demo_task.md)
    # None: the task's own (TASK_EVAL_TEMPERATURE); 0 is greedy, > 0 one sampled completion per problem
    eval_temperature: float | None = None

    def __post_init__(self):
        if self.quick:
            self.steps = min(self.steps, 4)
            self.eval_every = 2
            self.eval_size = min(self.eval_size, 16)
            self.validation_size = min(self.validation_size, 8)
            self.generations = 4
            self.seeds = self.seeds[:2]
            self.estimators = self.estimators[:1]
            if self.methods is None:
                self.methods = ["fixed-balanced", "hypervolume-balanced", "gradient"]
            self.bootstrap = min(self.bootstrap, 500)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, e.g. 100,101,102; got {self.seeds}")
        from .rl.advantages import ESTIMATORS

        bad = [e for e in self.estimators if e not in ESTIMATORS]
        if bad:
            raise ValueError(f"unknown estimator(s) {bad}; choose from {', '.join(sorted(ESTIMATORS))}")
        from .demo import TASK_EVAL_TEMPERATURE, check_task

        check_task(self.task)
        if self.task == "habits":
            raise ValueError("the habits member has K objectives and its own bench: moalign bench --task habits "
                             "--objectives K, or moalign.bench_habits.HabitsBenchConfig")
        if self.eval_temperature is None:
            self.eval_temperature = TASK_EVAL_TEMPERATURE[self.task]
        if not (math.isfinite(self.eval_temperature) and self.eval_temperature >= 0):
            raise ValueError(f"--eval-temperature must be >= 0 (0: greedy), but got {self.eval_temperature}")
        names = [m[0] for m in bench_methods(self)]
        if self.methods is not None:
            unknown = sorted(set(self.methods) - set(names))
            if unknown:
                raise ValueError(f"unknown bench method(s) {unknown}; choose from {', '.join(names)}")
        for key in ("steps", "eval_every", "eval_size", "validation_size", "workers", "prompts_per_step", "generations"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, but got {getattr(self, key)}")


# Trainer settings a method needs besides its strategy (every other method: the trainer's defaults).
METHOD_TRAINER_ARGS: dict[str, dict[str, Any]] = {
    # GDPO (arXiv 2601.05242; TRL's multi_objective_aggregation): each objective normalised within its group first
    "gdpo": {"multi_objective_aggregation": "normalize_then_sum"},
    # MO-GRPO (arXiv 2509.22047): each reward normalised by its group std, summed, without GDPO's batch whitening
    "mo-grpo": {"multi_objective_aggregation": "mo_grpo"},
}


def bench_methods(cfg: BenchConfig | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, strategy, strategy_params)`` of every benchmarked method (the estimator is set per comparison; a
    method's other trainer settings are in :data:`METHOD_TRAINER_ARGS`)."""
    mu = cfg.gradient_mu if cfg is not None else GRADIENT_MU
    methods: list[tuple[str, str, dict[str, Any]]] = []
    for short, preset in PRESETS.items():
        methods.append((f"fixed-{short}", "fixed", {"preset": preset}))
    for short, preset in PRESETS.items():
        # validation points on the val split (the paper's setup), every 2 RL steps; the test split only reports
        methods.append((f"hypervolume-{short}", "hypervolume", {"preset": preset, "hv_eval_every": 2}))
    methods.append(("gradient", "gradient", {"mu": mu}))
    methods.append(("gdpo", "fixed", {"preset": "balanced"}))  # fixed balanced weights under normalize_then_sum
    methods.append(("saw", "saw", {}))  # SAW-GRPO (arXiv 2606.07705): weights from each reward's batch CV
    methods.append(("mo-grpo", "fixed", {"preset": "balanced"}))  # balanced weights under mo_grpo aggregation
    return methods


# ---------------------------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------------------------
def _train_one(job: dict[str, Any]) -> str:
    """One RL run (in a worker process). Returns its run directory."""
    import torch

    from .data.synthetic import load_synthetic
    from .demo import train_synthetic_run

    torch.set_num_threads(job["threads"])
    cfg = BenchConfig(**job["cfg"])
    train_synthetic_run(
        label=job["label"], strategy=job["strategy"], params=job["params"], estimator=job["estimator"],
        seed=job["seed"], model_dir=Path(job["model_dir"]), splits=load_synthetic(seed=cfg.data_seed, variant=cfg.task),
        run_dir=Path(job["run_dir"]), steps=cfg.steps, eval_every=cfg.eval_every, eval_size=cfg.eval_size,
        validation_size=cfg.validation_size, prompts_per_step=cfg.prompts_per_step, generations=cfg.generations,
        learning_rate=cfg.learning_rate, max_completion_length=cfg.max_completion_length,
        extra_info={"name": job["name"], "estimator": job["estimator"], "bench": True, "task": cfg.task},
        trainer_args=METHOD_TRAINER_ARGS.get(job["label"]), eval_temperature=cfg.eval_temperature,
    )
    return job["run_dir"]


def _jobs(cfg: BenchConfig, model_dir: Path, out: Path) -> list[dict[str, Any]]:
    methods = [m for m in bench_methods(cfg) if cfg.methods is None or m[0] in cfg.methods]
    threads = 1  # the tiny model gains nothing from intra-op threads; 2 threads on 2 busy cores cost 5x the CPU time
    jobs = []
    for estimator in cfg.estimators:
        for seed in cfg.seeds:
            for label, strategy, params in methods:
                name = f"{estimator}/{label}-seed{seed}"
                jobs.append({
                    "name": name, "label": label, "strategy": strategy, "params": params, "estimator": estimator,
                    "seed": seed, "run_dir": str(out / estimator / f"{label}-seed{seed}"), "model_dir": str(model_dir),
                    "cfg": dataclasses.asdict(cfg) | {"quick": False}, "threads": threads,
                })
    return jobs


def run_bench(cfg: BenchConfig, progress: bool = True) -> Path:
    """Train every (estimator, method, seed) run, then write the tables; returns the path of ``bench.md``."""
    from .demo import task_warm_start
    from .precision import log_for_runs

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = task_warm_start(cfg.task, progress=progress)
    log_for_runs(model_dir)
    jobs = _jobs(cfg, model_dir, out)
    todo = [j for j in jobs if not _complete(Path(j["run_dir"]), cfg)]
    with _RunProgress(total=len(jobs), done=len(jobs) - len(todo), enabled=progress) as bar, stop_on_signals():
        try:
            train_in_workers(todo, cfg.workers, bar, _timed_run)
        except KeyboardInterrupt:
            # counted on disk, not by the bar: a run stopped after its last evaluation but before its worker reported
            # back is finished too, and the same command reuses it
            kept = sum(_complete(Path(j["run_dir"]), cfg) for j in jobs)
            bar.console.print(f"interrupted: {kept} of {bar.total} runs are finished and kept in {out}; the same "
                              "command trains the rest", markup=False, highlight=False, soft_wrap=True)
            raise
    wall = time.perf_counter() - started
    summary = summarize_bench([Path(j["run_dir"]) for j in jobs], cfg)
    summary["wall_seconds"] = wall
    summary["trained_runs"] = len(todo)  # the others were reused from an earlier invocation (resumed bench)
    summary["config"] = dataclasses.asdict(cfg)
    (out / "bench.json").write_text(json.dumps(summary, indent=1))
    md = out / "bench.md"
    md.write_text(bench_markdown(summary))
    from .report import build_report

    for estimator in cfg.estimators:
        dirs = [Path(j["run_dir"]) for j in jobs if j["estimator"] == estimator]
        build_report(dirs, out / estimator / "report", split="test", extra_html=_html_tables(summary, estimator))
    return md


def _timed_run(job: dict[str, Any]) -> float:
    """:func:`_train_one`, returning its wall time in seconds; its wall and CPU time also go to ``timing.json`` in
    the run directory (the bench's CPU time is the sum over runs)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    _train_one(job)
    wall = time.perf_counter() - started
    timing = {"wall_seconds": wall, "cpu_seconds": time.process_time() - cpu_started, "threads": job["threads"]}
    (Path(job["run_dir"]) / "timing.json").write_text(json.dumps(timing))
    return wall


class _RunProgress:
    """Progress of the bench's runs: one line per finished run (method, seed, HV, mode, times, ETA) and, on a
    terminal, a rich bar under those lines. Elsewhere (a log file, CI) a bar would show nothing until the end."""

    def __init__(self, total: int, done: int, enabled: bool):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = Console()
        self.total, self.done, self.enabled = total, done, enabled
        self.finished_here, self.started = 0, time.perf_counter()
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn()]
        self.bar = Progress(*columns, console=self.console, disable=not (enabled and self.console.is_terminal))
        self.task = self.bar.add_task(f"bench runs ({done} already done)", total=total, completed=done)

    def __enter__(self) -> _RunProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def running(self, job: dict[str, Any]) -> None:
        self.bar.update(self.task, description=f"bench: {job['name']}")

    def finished(self, job: dict[str, Any], seconds: float) -> None:
        self.done += 1
        self.finished_here += 1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.finished_here * (self.total - self.done)  # this session's pace, all workers together
        self.bar.update(self.task, advance=1, description=f"bench: {job['name']} done")
        if self.enabled:
            line = _progress_line(job, Path(job["run_dir"]), seconds, self.done, self.total, elapsed, eta)
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _progress_line(job: dict[str, Any], run_dir: Path, seconds: float, done: int, total: int, elapsed: float,
                  eta: float) -> str:
    """``[3/14] grpo gradient seed 101: HV 0.231 (step-by-step), run 1m12s | elapsed 4m05s, ETA 10m40s``: the HV of
    the run's test-split front and the mode of its last evaluation, as in the bench's tables."""
    from .evaluation import summarize_front
    from .report import MODE_NAMES, load_run, run_mode

    run = load_run(run_dir)
    ev = run.evals_for("test")
    if ev:
        hv = summarize_front(ev, run.objectives, run.max_completion_length).hypervolume
        mode = MODE_NAMES.get(run_mode(run, "test"))
        result = f"HV {hv:.3f}" + (f" ({mode})" if mode else "")
    else:
        result = "no test evaluation"
    return (f"[{done}/{total}] {job['estimator']} {job['label']} seed {job['seed']}: {result}, run {_clock(seconds)}"
            f" | elapsed {_clock(elapsed)}, ETA {_clock(eta)}")


def _clock(seconds: float) -> str:
    """``38s``, ``4m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _complete(run_dir: Path, cfg: BenchConfig) -> bool:
    """A run that already finished (same budget) is reused, so an interrupted bench resumes."""
    evals = run_dir / "evals.jsonl"
    if not evals.exists() or not (run_dir / "run.json").exists():
        return False
    meta = json.loads((run_dir / "run.json").read_text())
    if meta.get("task", "coupled") != cfg.task:
        raise ValueError(f"{run_dir} is a run of another task than --task {cfg.task}; give this task its own --out")
    temperature = float(meta.get("config", {}).get("mo_eval_temperature") or 0.0)
    if temperature != cfg.eval_temperature:
        raise ValueError(f"{run_dir} was evaluated at temperature {temperature}, not --eval-temperature "
                         f"{cfg.eval_temperature}; give this setting its own --out")
    steps = [json.loads(line)["step"] for line in evals.read_text().splitlines() if line.strip()]
    return bool(steps) and max(steps) >= cfg.steps


# ---------------------------------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------------------------------
def bootstrap_ci(diffs: Sequence[float], n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences (resampling seeds with replacement).

    >>> lo, hi = bootstrap_ci([0.1, 0.12, 0.09, 0.11, 0.1])
    >>> 0.09 <= lo < hi <= 0.12
    True
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return (math.nan, math.nan)
    if d.size == 1:
        return (float(d[0]), float(d[0]))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_comparison(a: dict[int, float], b: dict[int, float], n_boot: int = 10000, tie: float = 0.0,
                      higher_is_better: bool = True) -> dict[str, Any]:
    """``a − b`` over the seeds both have: mean, bootstrap 95 % CI, win/tie/loss (|diff| ≤ ``tie`` is a tie)."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    lo, hi = bootstrap_ci(d, n_boot)
    sign = 1.0 if higher_is_better else -1.0
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    return {
        "n": len(seeds), "mean_a": float(np.mean([a[s] for s in seeds])) if seeds else math.nan,
        "mean_b": float(np.mean([b[s] for s in seeds])) if seeds else math.nan,
        "diff": float(d.mean()) if d.size else math.nan, "ci": [lo, hi],
        "wins": int(np.sum(sign * d > tie)), "ties": int(np.sum(np.abs(d) <= tie)), "losses": int(np.sum(sign * d < -tie)),
        "ratio": float(np.mean([a[s] for s in seeds]) / np.mean([b[s] for s in seeds])) if seeds and np.mean(
            [b[s] for s in seeds]) else math.nan,
        "sd": sd, "half_width": (hi - lo) / 2,
        # smallest true mean difference a two-sided 5 % test on these seeds detects with 80 % power (normal approx.)
        "mde80": (1.959964 + 0.841621) * sd / math.sqrt(d.size) if d.size > 1 else math.nan,
    }


def summarize_bench(run_dirs: Sequence[Path], cfg: BenchConfig) -> dict[str, Any]:
    """Per estimator: per-run front summaries, per-method means, Tables 1-3 as paired comparisons, mode shares."""
    from .evaluation import summarize_front
    from .report import answer_mode, load_run

    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for d in run_dirs:
        if not (Path(d) / "run.json").exists():
            continue
        r = load_run(d)
        ev = r.evals_for("test")
        if not ev:
            continue
        front = summarize_front(ev, r.objectives, r.max_completion_length)
        last = max(ev, key=lambda e: e["step"])["metrics"]
        rec = {
            "hv": front.hypervolume, "steps_to_front": front.steps_to_front, "front_means": front.front_means,
            "final": last, "mode": answer_mode(last),
            "weights_final": r.steps[-1]["weights"] if r.steps else None,
            "max_weight_shift": _max_weight_shift(r.steps),
            "r_pareto": [s["strategy"]["r_pareto"] for s in r.steps if "r_pareto" in s.get("strategy", {})],
        }
        estimator = r.meta.get("estimator") or r.meta.get("advantage_estimator") or "grpo"
        runs.setdefault(estimator, {}).setdefault(r.meta.get("method") or r.strategy, {})[int(r.meta["seed"])] = rec

    out: dict[str, Any] = {"estimators": {}}
    for estimator, methods in runs.items():
        hv = {m: {s: v["hv"] for s, v in per.items()} for m, per in methods.items()}
        stf = {m: {s: v["steps_to_front"] for s, v in per.items()} for m, per in methods.items()}

        def versus(a: str, b: str) -> dict[str, Any]:
            """Method ``a`` vs method ``b``, paired by seed: front HV and steps to front (fewer is better)."""
            return {"hv": paired_comparison(hv[a], hv[b], cfg.bootstrap),
                    "steps_to_front": paired_comparison(stf[a], stf[b], cfg.bootstrap, higher_is_better=False)}

        table1, table2, table3, table4 = [], [], [], []
        for short in PRESETS:
            fixed, dyn = f"fixed-{short}", f"hypervolume-{short}"
            if fixed in hv and dyn in hv:
                table1.append({"preset": short, **versus(dyn, fixed)})
            if fixed in hv and "gradient" in hv:
                table2.append({"preset": short, **versus("gradient", fixed)})
        fixed_present = [f"fixed-{s}" for s in PRESETS if f"fixed-{s}" in hv]
        if fixed_present:
            best = max(fixed_present, key=lambda m: float(np.mean(list(hv[m].values()))))
            if "gradient" in hv:
                table2.append({"preset": f"best fixed ({best})", **versus("gradient", best)})
            table4 = [{"method": m, "best_fixed": best, **versus(m, best)} for m in sorted(hv)
                      if not m.startswith("fixed-")]
        # methods whose weights start balanced (all but the presets and hypervolume on another preset) vs that preset
        table5 = [{"method": m, **versus(m, "fixed-balanced")}
                  for m in sorted(hv) if "fixed-balanced" in hv and _starts_balanced(m)]
        for m, per in methods.items():
            vals = list(per.values())
            table3.append({
                "method": m, "runs": len(vals),
                "hv_mean": float(np.mean([v["hv"] for v in vals])), "hv_std": float(np.std([v["hv"] for v in vals])),
                "steps_to_front": float(np.mean([v["steps_to_front"] for v in vals])),
                "front_means": {k: float(np.mean([v["front_means"][k] for v in vals])) for k in vals[0]["front_means"]},
                "mode_steps_share": float(np.mean([v["mode"] == "steps" for v in vals])),
                "max_weight_shift": float(np.mean([v["max_weight_shift"] for v in vals])),
                "r_pareto_share_above_1_5": _share([x for v in vals for x in v["r_pareto"]], lambda x: x > 1.5),
                "r_pareto_share_at_0_5": _share([x for v in vals for x in v["r_pareto"]], lambda x: x <= 0.5 + 1e-12),
            })
        out["estimators"][estimator] = {"runs": methods, "table1": table1, "table2": table2,
                                        "table3": sorted(table3, key=lambda r: r["method"]), "table4": table4,
                                        "table5": table5}
    out["cpu_seconds"] = _cpu_seconds(run_dirs)
    return out


def _starts_balanced(method: str) -> bool:
    """A bench method other than the balanced preset itself whose weights start at (or stay) balanced."""
    return method not in {f"fixed-{p}" for p in PRESETS} and not (
        method.startswith("hypervolume-") and method != "hypervolume-balanced")


def _cpu_seconds(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """CPU time of the runs (``timing.json``, written by each run's process): total and the runs it covers."""
    total, counted = 0.0, 0
    for d in run_dirs:
        path = Path(d) / "timing.json"
        if path.exists():
            total += float(json.loads(path.read_text())["cpu_seconds"])
            counted += 1
    return {"total": total, "runs": counted, "of": len(run_dirs)}


def _share(values: list[float], pred) -> float | None:
    return float(np.mean([pred(v) for v in values])) if values else None


def _max_weight_shift(steps: list[dict[str, Any]]) -> float:
    """Largest |w_k(t) − w_k(1)| over the run, relative to the first logged step's weights (0 for fixed weights;
    for the gradient method it leaves out the first step's own change)."""
    if not steps:
        return 0.0
    w = np.array([list(s["weights"].values()) for s in steps], dtype=np.float64)
    return float(np.max(np.abs(w - w[0])))


# ---------------------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------------------
def _fmt_cmp(c: dict[str, Any], digits: int = 3) -> str:
    """Four table cells: method mean | baseline mean | mean paired difference [95 % CI] | W/T/L."""
    lo, hi = c["ci"]
    return (f"{c['mean_a']:.{digits}f} | {c['mean_b']:.{digits}f} | {c['diff']:+.{digits}f} "
            f"[{lo:+.{digits}f}, {hi:+.{digits}f}] | {c['wins']}/{c['ties']}/{c['losses']}")


_CMP_HEAD = ("| {what} | HV {a} | HV {b} | HV diff [95 % CI] | W/T/L | steps to front {a} | steps to front {b} | "
             "steps diff [95 % CI] | W/T/L (fewer = win) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def bench_markdown(summary: dict[str, Any]) -> str:
    cfg = summary.get("config", {})
    temperature = cfg.get("eval_temperature") or 0.0
    decoding = "greedy evaluation" if not temperature else f"sampled evaluation (temperature {temperature:g})"
    cpu = summary.get("cpu_seconds") or {}
    cpu_note = (f" CPU time {cpu['total'] / 60:.0f} min over {cpu['runs']} of {cpu['of']} runs (one thread each)."
                if cpu.get("runs") else "")
    lines = [f"# moalign bench (task {cfg.get('task', 'coupled')})\n",
             f"Seeds {cfg.get('seeds')}, data seed {cfg.get('data_seed')}, {cfg.get('steps')} "
             f"RL steps per run, {decoding} of {cfg.get('eval_size')} test problems every "
             f"{cfg.get('eval_every')} steps (and step 0). Differences are paired by seed: mean [bootstrap 95 % CI] "
             f"and win/tie/loss. {_wall_note(summary)}{cpu_note}\n",
             f"{PAPER_NOTE}\n"]
    for estimator, est in summary["estimators"].items():
        lines.append(f"## {estimator}\n")
        lines.append("### Table 1 — hypervolume method on each preset vs that preset\n")
        lines.append(_CMP_HEAD.format(what="preset", a="hypervolume", b="preset"))
        for row in est["table1"]:
            lines.append(f"| {row['preset']} | {_fmt_cmp(row['hv'])} | {_fmt_cmp(row['steps_to_front'], 1)} |")
        lines.append("\n### Table 2 — gradient method vs each preset\n")
        lines.append(_CMP_HEAD.format(what="preset", a="gradient", b="preset"))
        for row in est["table2"]:
            lines.append(f"| {row['preset']} | {_fmt_cmp(row['hv'])} | {_fmt_cmp(row['steps_to_front'], 1)} |")
        lines.append(_resolution_note(est["table1"] + est["table2"]))
        if est.get("table4"):
            best = est["table4"][0]["best_fixed"]
            lines.append(f"\n### Table 4 — every other method vs the best fixed preset ({best})\n")
            lines.append("The best preset is the one with the highest mean front HV on these same seeds, which favours "
                         "it. Ratio = mean HV of the method / mean HV of the preset.\n")
            lines.append(_CMP_HEAD.format(what="method", a="method", b="preset").replace(
                "| HV diff [95 % CI] |", "| HV diff [95 % CI] | ratio |").replace(
                "|---|---:|---:|---:|", "|---|---:|---:|---:|---:|"))
            for row in est["table4"]:
                cells = _fmt_cmp(row["hv"]).split(" | ")
                cells.insert(3, f"{row['hv']['ratio']:.3f}")
                lines.append(f"| {row['method']} | {' | '.join(cells)} | {_fmt_cmp(row['steps_to_front'], 1)} |")
            lines.append(_resolution_note(est["table4"]))
        if est.get("table5"):
            lines.append("\n### Table 5 — methods that start from balanced weights vs the balanced preset\n")
            lines.append(_CMP_HEAD.format(what="method", a="method", b="balanced"))
            for row in est["table5"]:
                lines.append(f"| {row['method']} | {_fmt_cmp(row['hv'])} | {_fmt_cmp(row['steps_to_front'], 1)} |")
            lines.append(_resolution_note(est["table5"]))
        lines.append("\n### Table 3 — per method (mean over seeds)\n")
        lines.append("| method | runs | front HV (mean ± std) | front accuracy | front length | front clarity | steps to "
                     "front | runs in step-by-step mode | max weight shift | r_pareto > 1.5 / = 0.5 (share of steps) |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in est["table3"]:
            fm = row["front_means"]
            r = ("—" if row["r_pareto_share_above_1_5"] is None
                 else f"{row['r_pareto_share_above_1_5']:.2f} / {row['r_pareto_share_at_0_5']:.2f}")
            lines.append(
                f"| {row['method']} | {row['runs']} | {row['hv_mean']:.3f} ± {row['hv_std']:.3f} | "
                f"{fm.get('accuracy', math.nan):.3f} | {fm.get('length', math.nan):.1f} | "
                f"{fm.get('clarity', math.nan):.3f} | {row['steps_to_front']:.1f} | {row['mode_steps_share']:.0%} | "
                f"{row['max_weight_shift']:.3f} | {r} |")
        lines.append("")
    return "\n".join(lines)


def _wall_note(summary: dict[str, Any]) -> str:
    wall = f"Wall time {summary.get('wall_seconds', float('nan')) / 60:.1f} min"
    trained, total = summary.get("trained_runs"), (summary.get("cpu_seconds") or {}).get("of")
    if trained is None or total is None or trained == total:
        return wall + "."
    return f"{wall} for the {trained} of {total} runs trained by the last invocation (the others were reused)."


def _resolution_note(rows: list[dict[str, Any]]) -> str:
    """The smallest HV difference a table's CIs resolve: the median 95 % CI half-width of its rows, and the difference
    detected with 80 % power (2.80 × sd of the paired differences / √seeds, median over rows)."""
    half = [r["hv"]["half_width"] for r in rows if math.isfinite(r["hv"].get("half_width", math.nan))]
    mde = [r["hv"]["mde80"] for r in rows if math.isfinite(r["hv"].get("mde80", math.nan))]
    if not half:
        return ""
    n = rows[0]["hv"]["n"]
    return (f"\nResolution ({n} seeds): a CI here excludes 0 only for HV differences beyond about "
            f"±{float(np.median(half)):.3f} (median CI half-width); a true difference of {float(np.median(mde)):.3f} "
            f"would be detected with 80 % power.")


def _html_tables(summary: dict[str, Any], estimator: str) -> str:
    import html

    one = dict(summary, estimators={estimator: summary["estimators"][estimator]})
    return f"<h2>Bench tables ({html.escape(estimator)})</h2><pre>{html.escape(bench_markdown(one))}</pre>"

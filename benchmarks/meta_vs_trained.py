"""Meta-policy vs trained single policies of the same training compute (issue 19 item 8, issue 29 item 4;
docs/meta_policy.md), on the coupled synthetic task (``--task coupled``, the default) or the habits member at K
objectives (``--task habits --objectives K``).

For each seed: train the three LoRA experts (``moalign experts train``'s code, 30 RL steps each, GRPO, 4 prompts x 8
generations, max 64 tokens, the experts module's own LoRA settings), sweep preferences over the parameter, logit and
hidden aggregations (``moalign meta-eval``'s code, greedy, first ``--rows`` test problems), and compare the points
they reach with trained single policies of the same training compute, read from existing ``moalign bench`` runs:

* the three fixed presets, ``<bench-dir>/grpo/fixed-{accuracy,balanced,efficiency}-seed{s}`` (3 x 30 steps);
* one dynamic run, ``<budget-dir>/grpo/gradient-seed{s}`` (90 steps).

Two views of the trained policies: (a) the final policies only (each run's last test evaluation: the model a user
deploys; the presets give 3 points, the dynamic run 1) -- the main table; (b) every evaluated checkpoint (as ``moalign
bench`` counts a run's front). Per seed and view: hypervolume (moalign.pareto, origin reference) and IGD+ (pymoo, as
``moalign meta-eval``) against the non-dominated union of every compared method's points of that seed, all in the
normalised space (accuracy, 1 - length/64, clarity). Then paired comparisons over seeds (moalign.bench).

    python benchmarks/meta_vs_trained.py --seeds 100,101,102,103,104 \
        --bench-dir runs/bench_coupled_grpo10 --budget-dir runs/bench_budget90 --out runs/meta_vs_trained
    python benchmarks/meta_vs_trained.py --quick --seeds 100 ...      # smoke size: 2 RL steps, 8 rows

``--task habits --objectives K`` (issue 29 item 4): K LoRA experts (accuracy and the first K - 1 habits, 30 steps
each, the habits bench's rollouts and warm start) against the habits bench's runs of the same seed under
``<bench-dir>/K<K>/`` (``moalign bench --task habits``, benchmarks/habits_campaign.py):

* ``sweep-presets``: the Dirichlet presets ``sweep-0`` .. ``sweep-<K-1>`` as a set of K policies (K x 30 steps);
* ``sweep-best-of-K``: the one of them with the best validation front HV, as :mod:`moalign.sweep` chooses (K x 30);
* ``uniform``, ``saw``, ``hypervolume-uniform`` (``--dynamic-methods``): one run each, 30 steps (1/K of the compute).

The habits bench evaluates by sampling at T = 1 on the first 100 test problems, so the sweep does too (``--rows``
100, ``--temperature`` 1; every preference draws from the same seeded streams). The normalised space is the K rates.

    python benchmarks/meta_vs_trained.py --task habits --objectives 4 --seeds 100,101,102,103,104 \
        --bench-dir runs/bench_habits --out runs/meta_vs_trained_habits_k4

Resumable: an experts run (per seed) and a sweep (per seed and aggregation) already complete are reused.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

AGGREGATIONS = ("parameter", "logit", "hidden")
PRESET_RUNS = ("fixed-accuracy", "fixed-balanced", "fixed-efficiency")  # moalign bench's labels (bench.PRESETS)
VIEWS = {"final": "final policies only (each run's last evaluation)",
         "checkpoints": "every evaluated checkpoint (as moalign bench counts a run's front)"}
# The three experts used one at a time (the sweep's one-hot preferences): three single policies trained exactly as the
# experts were (LoRA, their learning rate), so meta-* vs this isolates what inference-time mixing adds; the
# fixed-preset runs differ from the experts in their training setup (full fine-tuning, the bench's learning rate).
EXPERTS_ALONE = "experts-alone"
MAX_NEW_TOKENS = 64  # the bench's max_completion_length: the normalised space's length scale
TASKS = ("coupled", "habits")
HABITS_SINGLE_RUNS = ("uniform", "saw", "hypervolume-uniform")  # habits: single runs of 1/K the experts' compute
SWEEP_SET = "sweep-presets"
# per task: --rows, --bench-dir, --budget-dir, --out (K filled in), sweep temperature (the trained runs' evaluations)
TASK_DEFAULTS = {"coupled": (200, "runs/bench_coupled_grpo10", "runs/bench_budget90", "runs/meta_vs_trained", 0.0),
                 "habits": (100, "runs/bench_habits", "", "runs/meta_vs_trained_habits_k{k}", 1.0)}


@dataclass
class Settings:
    seeds: list[int] = field(default_factory=lambda: [100, 101, 102, 103, 104])
    steps: int = 30
    """RL steps per expert; coupled: the fixed presets must have as many, the dynamic run 3x (the same compute);
    habits: every trained run as many (the sweep presets K of them, the single runs 1/K of the compute)."""
    rows: int | None = None
    """First N test problems (default: the trained runs' test evaluations, coupled 200, habits 100)."""
    grid_step: float = 0.5
    aggregations: list[str] = field(default_factory=lambda: list(AGGREGATIONS))
    bench_dir: str | None = None
    budget_dir: str | None = None
    estimator: str = "grpo"
    dynamic_method: str = "gradient"
    out: str | None = None
    batch_size: int = 16
    threads: int = 1
    bootstrap: int = 10000
    quick: bool = False
    """Smoke size: 2 RL steps per expert (and 4 generations, ExpertsConfig's quick), 8 rows; budget checks warn."""
    task: str = "coupled"
    objectives: int = 4
    """habits: K, accuracy and the first K - 1 habits (coupled: always its three objectives)."""
    dynamic_methods: list[str] = field(default_factory=lambda: list(HABITS_SINGLE_RUNS))
    """habits: the bench's single runs compared (coupled: ``dynamic_method``)."""
    temperature: float | None = None
    """Sweep decoding: 0 greedy, > 0 sampled (default: as the trained runs' test evaluations, coupled 0, habits 1)."""
    centroid: bool | None = None
    """Add the uniform preference to the grid (default: habits yes -- at K = 4, step 0.5 the grid mixes at most two
    experts; coupled no)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.task == "habits":
            from moalign.bench_habits import habits_objectives

            habits_objectives(self.objectives)  # checks K
            if not self.dynamic_methods:
                raise ValueError("--dynamic-methods is empty; name at least one habits-bench run, e.g. uniform")
        else:
            self.objectives = 3
        rows, bench_dir, budget_dir, out, temperature = TASK_DEFAULTS[self.task]
        self.rows = rows if self.rows is None else self.rows
        self.bench_dir = bench_dir if self.bench_dir is None else self.bench_dir
        self.budget_dir = budget_dir if self.budget_dir is None else self.budget_dir
        self.out = out.format(k=self.objectives) if self.out is None else self.out
        self.temperature = temperature if self.temperature is None else float(self.temperature)
        self.centroid = self.task == "habits" if self.centroid is None else bool(self.centroid)
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0 (0: greedy), but got {self.temperature}")
        if self.quick:
            self.steps = min(self.steps, 2)
            self.rows = min(self.rows, 8)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, e.g. 100,101,102; got {self.seeds}")
        unknown = sorted(set(self.aggregations) - set(AGGREGATIONS))
        if unknown or not self.aggregations:
            raise ValueError(f"unknown aggregation(s) {unknown or self.aggregations}; choose from "
                             f"{', '.join(AGGREGATIONS)}")
        for key in ("steps", "rows", "batch_size", "threads", "bootstrap"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, but got {getattr(self, key)}")

    @property
    def sweep_best(self) -> str:
        """habits: the val-chosen best of the K sweep presets."""
        return f"sweep-best-of-{self.objectives}"

    @property
    def others(self) -> list[str]:
        """The methods every meta aggregation is compared with."""
        if self.task == "habits":
            return [EXPERTS_ALONE, SWEEP_SET, self.sweep_best, *self.dynamic_methods]
        return [EXPERTS_ALONE, "fixed-presets", f"dynamic-{self.dynamic_method}"]

    @property
    def methods(self) -> list[str]:
        return [f"meta-{a}" for a in self.aggregations] + self.others

    def training_steps(self, method: str) -> int:
        """RL steps behind a method's policies (one rollout batch of the same size per step, on every method)."""
        if method.startswith("meta-") or method in (EXPERTS_ALONE, "fixed-presets", SWEEP_SET, self.sweep_best):
            return self.objectives * self.steps
        return 3 * self.steps if self.task == "coupled" else self.steps

    @property
    def metrics(self) -> list[str]:
        """The trained runs' test metrics, in the normalised space's order."""
        if self.task == "habits":
            from moalign.objectives.habit import HABITS

            return ["accuracy", *(f"habit_{h}" for h in HABITS[: self.objectives - 1])]
        return ["accuracy", "length", "clarity"]


# ---------------------------------------------------------------------------------------------------------------------
# pieces: experts per seed, sweep per seed and aggregation (each resumable, each with its CPU time)
# ---------------------------------------------------------------------------------------------------------------------
def experts_dir(s: Settings, seed: int) -> Path:
    return Path(s.out) / f"experts-seed{seed}"


def sweep_dir(s: Settings, seed: int, aggregation: str) -> Path:
    return Path(s.out) / f"sweep-seed{seed}" / aggregation


@lru_cache(maxsize=None)
def _habits_warm_start() -> str:
    from moalign.demo import task_warm_start

    return str(task_warm_start("habits", progress=False))


def experts_config(s: Settings, seed: int):
    """The experts' config: the bench's rollout settings, the experts module's own LoRA rank/alpha and learning rate;
    habits: the habits bench's warm start, data (split seed 0) and objectives, one expert per objective."""
    from moalign.meta import ExpertsConfig

    task = {}
    if s.task == "habits":
        from moalign.bench_habits import habits_objectives

        task = {"base_model": _habits_warm_start(), "objectives": habits_objectives(s.objectives),
                "dataset_kwargs": {"variant": "habits"}}
    return ExpertsConfig(out=str(experts_dir(s, seed)), steps=s.steps, prompts_per_step=4, generations=8,
                         max_completion_length=MAX_NEW_TOKENS, seed=seed, quick=s.quick, **task)


def _experts_complete(s: Settings, seed: int) -> bool:
    path = experts_dir(s, seed) / "experts.json"
    if not path.exists():
        return False
    manifest = json.loads(path.read_text())
    want = experts_config(s, seed).to_dict()
    got = manifest.get("config", {})
    differ = sorted(k for k in ("seed", "steps", "generations", "prompts_per_step", "max_completion_length",
                                "objectives", "dataset_kwargs") if got.get(k, want[k]) != want[k])
    if differ:
        raise ValueError(f"{path.parent} holds experts trained with other settings ({', '.join(differ)}: "
                         f"{[got.get(k) for k in differ]} vs {[want[k] for k in differ]}); give this campaign its "
                         "own --out or delete that directory")
    return all(int(e.get("steps", 0)) >= s.steps for e in manifest["experts"])


def _timed(fn, timing_path: Path) -> dict[str, float]:
    """Run ``fn`` and write its CPU time (this process, time.process_time) and wall time to ``timing_path``."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fn()
    timing = {"cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0}
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_text(json.dumps(timing))
    return timing


def _read_timing(path: Path) -> dict[str, float] | None:
    return json.loads(path.read_text()) if path.exists() else None


def train_experts_piece(s: Settings, seed: int, progress: bool) -> tuple[dict[str, float] | None, bool]:
    """Train the seed's experts unless complete; returns (timing, trained now)."""
    from moalign.meta.experts import train_experts

    d = experts_dir(s, seed)
    if _experts_complete(s, seed):
        return _read_timing(d / "timing.json"), False
    cfg = experts_config(s, seed)
    return _timed(lambda: train_experts(cfg, progress=progress), d / "timing.json"), True


def _sweep_complete(s: Settings, seed: int, aggregation: str) -> bool:
    path = sweep_dir(s, seed, aggregation) / "summary.json"
    if not path.exists():
        return False
    if path.stat().st_mtime < (experts_dir(s, seed) / "experts.json").stat().st_mtime:
        return False  # the experts were trained again after this sweep
    summary = json.loads(path.read_text())
    return (summary["rows"] == s.rows and summary["grid_step"] == s.grid_step and aggregation in summary["methods"]
            and summary.get("temperature", 0.0) == s.temperature and summary.get("centroid", False) == s.centroid)


def sweep_piece(s: Settings, seed: int, aggregation: str, progress: bool) -> tuple[dict[str, float] | None, bool]:
    """``moalign meta-eval``'s sweep for one aggregation unless complete; returns (timing, swept now)."""
    from moalign.meta.evaluate import meta_eval

    d = sweep_dir(s, seed, aggregation)
    if _sweep_complete(s, seed, aggregation):
        return _read_timing(d / "timing.json"), False
    return _timed(lambda: meta_eval(experts_dir(s, seed), aggregations=(aggregation,), grid_step=s.grid_step,
                                    rows=s.rows, max_new_tokens=MAX_NEW_TOKENS, batch_size=s.batch_size, out=d,
                                    temperature=s.temperature, seed=seed, centroid=s.centroid, progress=progress),
                  d / "timing.json"), True


# ---------------------------------------------------------------------------------------------------------------------
# trained single policies (existing bench runs)
# ---------------------------------------------------------------------------------------------------------------------
def trained_run_dirs(s: Settings, seed: int) -> dict[str, list[Path]]:
    if s.task == "habits":  # moalign bench --task habits: <bench-dir>/K<K>/<label>-seed<s>
        k_dir = Path(s.bench_dir) / f"K{s.objectives}"
        presets = [k_dir / f"sweep-{i}-seed{seed}" for i in range(s.objectives)]
        return {SWEEP_SET: presets, s.sweep_best: presets,
                **{m: [k_dir / f"{m}-seed{seed}"] for m in s.dynamic_methods}}
    presets = [Path(s.bench_dir) / s.estimator / f"{label}-seed{seed}" for label in PRESET_RUNS]
    dynamic = [Path(s.budget_dir) / s.estimator / f"{s.dynamic_method}-seed{seed}"]
    return {"fixed-presets": presets, f"dynamic-{s.dynamic_method}": dynamic}


def _run_steps(s: Settings, method: str) -> int:
    """RL steps each run of a trained method must have."""
    return s.steps if s.task == "habits" or method == "fixed-presets" else 3 * s.steps


def run_points(run_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A run's test evaluations as ``(n, 3)`` points of the normalised space, in step order, and facts to check."""
    from moalign.evaluation import eval_matrix, metric_space, normalise_metrics
    from moalign.report import load_run

    from moalign.evaluation import summarize_front

    run = load_run(run_dir)
    evals = sorted(run.evals_for("test"), key=lambda e: e["step"])
    val = sorted(run.evals_for("val"), key=lambda e: e["step"])
    if not evals:
        raise ValueError(f"{run_dir}/evals.jsonl has no test-split evaluation; it cannot be compared")
    space = metric_space(run.objectives)
    points = normalise_metrics(eval_matrix(evals, space), space, run.max_completion_length)
    config = run.meta.get("config", {})
    facts = {
        "run_dir": str(run_dir), "steps": max([int(x["step"]) for x in run.steps], default=0),
        "eval_steps": [int(e["step"]) for e in evals], "rows": evals[-1]["metrics"].get("n"),
        "max_completion_length": run.max_completion_length,
        "eval_temperature": float(config.get("mo_eval_temperature") or 0.0),
        "task": run.meta.get("task", "coupled"), "metrics": [m for m, _ in space],
        # validation front HV (the sweep's choice, moalign.sweep) and its last step; None without val evaluations
        "val_hv": summarize_front(val, run.objectives, run.max_completion_length).hypervolume if val else None,
        "val_last_step": int(val[-1]["step"]) if val else None,
    }
    timing = run_dir / "timing.json"
    if timing.exists():
        facts["cpu_seconds"] = json.loads(timing.read_text()).get("cpu_seconds")
    return points, facts


def check_run(facts: dict[str, Any], steps: int, rows: int, *, task: str = "coupled",
              metrics: Sequence[str] = ("accuracy", "length", "clarity"), temperature: float = 0.0,
              needs_val: bool = False) -> list[str]:
    """What makes a run not comparable with the sweep (empty: comparable)."""
    problems = []
    if facts["metrics"] != list(metrics):
        problems.append(f"its metrics are {facts['metrics']}, not {', '.join(metrics)}")
    if facts["task"] != task:
        problems.append(f"it is a run of task {facts['task']!r}, not {task}")
    if facts["steps"] != steps:
        problems.append(f"it has {facts['steps']} RL steps, not {steps} (the same compute as the experts)")
    if facts["eval_steps"][-1] != facts["steps"]:
        problems.append(f"its last test evaluation is at step {facts['eval_steps'][-1]}, not its final step "
                        f"{facts['steps']}")
    if facts["rows"] is not None and int(facts["rows"]) != rows:
        problems.append(f"it was evaluated on {facts['rows']} test problems, the sweep on {rows} (--rows)")
    if facts["eval_temperature"] != temperature:
        problems.append(f"its test evaluations are {_decoding(facts['eval_temperature'])}, the sweep's "
                        f"{_decoding(temperature)} (--temperature)")
    if needs_val and (facts["val_last_step"] or -1) < facts["steps"]:
        problems.append(f"it has no validation evaluation at its final step (last: {facts['val_last_step']}); the "
                        "sweep's best preset is chosen on val")
    if facts["max_completion_length"] != MAX_NEW_TOKENS:
        problems.append(f"its max_completion_length is {facts['max_completion_length']}, not {MAX_NEW_TOKENS}")
    return problems


def _decoding(temperature: float) -> str:
    return "greedy" if temperature == 0 else f"sampled at temperature {temperature:g}"


def choose_on_val(runs: list[dict[str, Any]]) -> int:
    """Index of the run with the best validation front HV, ties to the first (as :mod:`moalign.sweep` ranks)."""
    val = np.asarray([r["val_hv"] for r in runs], dtype=np.float64)
    return int(np.lexsort((np.arange(len(val)), -val))[0])


def _missing_message(s: Settings, missing: list[str]) -> str:
    if s.task == "habits":
        return (f"{len(missing)} trained run(s) missing or unfinished: {', '.join(missing)}. Train them first, e.g. "
                f"`moalign bench --task habits --objectives {s.objectives} --seeds {','.join(map(str, s.seeds))} "
                f"--methods sweep,{','.join(s.dynamic_methods)} --out {s.bench_dir}` (benchmarks/habits_campaign.py), "
                "or point --bench-dir at them / leave the unfinished seeds out of --seeds")
    return (f"{len(missing)} trained run(s) missing: {', '.join(missing)}. Train them first, e.g. `moalign bench "
            f"--seeds {','.join(map(str, s.seeds))} --methods {','.join(PRESET_RUNS)} --out {s.bench_dir}` and "
            f"`moalign bench --seeds ... --methods {s.dynamic_method} --steps {3 * s.steps} --out {s.budget_dir}`, "
            "or point --bench-dir / --budget-dir at them")


def _finished(s: Settings, run_dir: Path) -> bool:
    """A run with its run.json and, habits (a campaign may still be writing it), a test evaluation at --steps."""
    if not (run_dir / "run.json").exists():
        return False
    if s.task != "habits" or s.quick:
        return True
    evals = run_dir / "evals.jsonl"
    return evals.exists() and any(json.loads(line).get("split") == "test" and int(json.loads(line)["step"]) >= s.steps
                                  for line in evals.read_text().splitlines() if line.strip())


def load_trained(s: Settings) -> tuple[dict[int, dict[str, dict[str, Any]]], list[str]]:
    """Points of every trained run of every seed; raises before any training when one is missing or not comparable
    (``--quick``: such problems are returned as warnings instead). habits: the best sweep preset is chosen on val."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    problems: list[str] = []
    missing = sorted({str(d) for seed in s.seeds for dirs in trained_run_dirs(s, seed).values() for d in dirs
                      if not _finished(s, d)})
    if missing:
        raise FileNotFoundError(_missing_message(s, missing))
    checks = {"task": s.task, "metrics": s.metrics, "temperature": s.temperature}
    for seed in s.seeds:
        for method, dirs in trained_run_dirs(s, seed).items():
            loaded = [(d, *run_points(d)) for d in dirs]
            for d, _, facts in loaded:
                problems += [f"{d}: {p}" for p in check_run(facts, _run_steps(s, method), s.rows, **checks,
                                                            needs_val=method == s.sweep_best and s.task == "habits")]
            chosen = None
            if s.task == "habits" and method == s.sweep_best:
                no_val = [str(d) for d, _, f in loaded if f["val_hv"] is None]
                if no_val:
                    raise ValueError(f"sweep preset run(s) without validation evaluations: {', '.join(no_val)}; "
                                     f"{s.sweep_best} is chosen on val (habits bench sweep runs have them)")
                chosen = choose_on_val([f for _, _, f in loaded])
                loaded = [loaded[chosen]]
            out.setdefault(seed, {})[method] = {
                "final": np.asarray([points[-1] for _, points, _ in loaded]),
                "checkpoints": np.concatenate([points for _, points, _ in loaded]),
                "runs": [facts for _, _, facts in loaded],
                **({"chosen": Path(dirs[chosen]).name} if chosen is not None else {})}
    problems = list(dict.fromkeys(problems))  # a preset run is checked for both sweep methods
    if problems and not s.quick:
        raise ValueError("trained runs not comparable with this sweep:\n  " + "\n  ".join(problems)
                         + "\n(--quick only warns about these)")
    return out, problems


# ---------------------------------------------------------------------------------------------------------------------
# indicators and comparisons
# ---------------------------------------------------------------------------------------------------------------------
def one_hot_points(sweep_jsonl: Path) -> np.ndarray:
    """The points a sweep measured at one-hot preferences: each expert decoding alone (any aggregation of a one-hot
    mixture is that expert)."""
    rows = [json.loads(line) for line in sweep_jsonl.read_text().splitlines() if line.strip()]
    points = [r["point"] for r in rows if max(r["preference"]) == 1.0]
    if not points:
        raise ValueError(f"{sweep_jsonl} has no one-hot preference; use a --grid-step that divides 1")
    return np.asarray(points)


def seed_indicators(points: dict[str, np.ndarray], grid: np.ndarray) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """``moalign meta-eval``'s indicators of every method, the reference being the non-dominated union of all."""
    from moalign.meta.evaluate import _front, front_indicators  # _front: meta-eval's own reference front

    reference = _front(np.concatenate([np.atleast_2d(p) for p in points.values()]))
    return {m: front_indicators(np.atleast_2d(p), reference, grid) for m, p in points.items()}, reference


def comparisons(per_seed: dict[int, dict[str, Any]], s: Settings, view: str) -> list[dict[str, Any]]:
    """Each meta aggregation vs the fixed presets and vs the dynamic run: HV (higher better), IGD+ (lower better)."""
    from moalign.bench import paired_comparison

    def values(method: str, key: str) -> dict[int, float]:
        return {seed: r["views"][view]["indicators"][method][key] for seed, r in per_seed.items()}

    rows = []
    for agg in s.aggregations:
        for other in s.others:
            rows.append({
                "meta": f"meta-{agg}", "vs": other,
                "hv": paired_comparison(values(f"meta-{agg}", "hypervolume"), values(other, "hypervolume"),
                                        s.bootstrap),
                "igd_plus": paired_comparison(values(f"meta-{agg}", "igd_plus"), values(other, "igd_plus"),
                                              s.bootstrap, higher_is_better=False),
            })
    return rows


def per_method(per_seed: dict[int, dict[str, Any]], methods: list[str], view: str) -> list[dict[str, Any]]:
    rows = []
    for m in methods:
        ind = [r["views"][view]["indicators"][m] for r in per_seed.values()]
        row = {"method": m, "points": float(np.mean([len(r["views"][view]["points"][m]) for r in per_seed.values()])),
               "training_steps": next(iter(per_seed.values())).get("training_steps", {}).get(m)}
        for key in ("hypervolume", "igd_plus", "expected_utility", "cardinality"):
            vals = [x[key] for x in ind]
            row[key] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# the campaign
# ---------------------------------------------------------------------------------------------------------------------
def run(s: Settings, progress: bool = True) -> Path:
    """Every piece of every seed (reusing finished ones), then the indicators and tables; returns the JSON path."""
    import torch
    from rich.console import Console

    from moalign.meta.evaluate import preference_grid

    console = Console()
    torch.set_num_threads(s.threads)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    trained, warnings = load_trained(s)  # before any training: a missing baseline fails fast
    for w in warnings:
        console.print(f"[yellow]warning (--quick):[/] {w}", highlight=False)
    grid = preference_grid(s.objectives, s.grid_step, s.centroid)
    pieces = [(seed, None) for seed in s.seeds] + [(seed, a) for seed in s.seeds for a in s.aggregations]
    pieces.sort(key=lambda p: (s.seeds.index(p[0]), p[1] is not None))
    started = time.perf_counter()
    cpu: dict[str, dict[str, float] | None] = {}
    for i, (seed, agg) in enumerate(pieces, 1):
        name = f"seed{seed}/experts" if agg is None else f"seed{seed}/sweep-{agg}"
        console.print(f"[{i}/{len(pieces)}] {name}: " + (f"training {s.objectives} LoRA experts x {s.steps} RL steps"
                      if agg is None else f"{len(grid)} preferences x {s.rows} rows, "
                      + ("greedy" if s.temperature == 0 else f"sampled at T = {s.temperature:g}")), highlight=False)
        timing, ran = (train_experts_piece(s, seed, progress) if agg is None else sweep_piece(s, seed, agg, progress))
        cpu[name] = timing
        spent = f"CPU {timing['cpu_seconds']:.0f} s, wall {timing['wall_seconds']:.0f} s" if timing else "no timing"
        console.print(f"    {'done' if ran else 'already complete, reused'} ({spent}); elapsed "
                      f"{time.perf_counter() - started:.0f} s", highlight=False)

    per_seed: dict[int, dict[str, Any]] = {}
    for seed in s.seeds:
        sweeps = {a: json.loads((sweep_dir(s, seed, a) / "summary.json").read_text()) for a in s.aggregations}
        meta_points = {f"meta-{a}": np.asarray(sw["methods"][a]["points"]) for a, sw in sweeps.items()}
        meta_points[EXPERTS_ALONE] = one_hot_points(sweep_dir(s, seed, s.aggregations[0]) / "sweep.jsonl")
        views = {}
        for view in VIEWS:
            points = {**meta_points, **{m: t[view] for m, t in trained[seed].items()}}
            indicators, reference = seed_indicators(points, grid)
            views[view] = {"points": {m: np.atleast_2d(p).tolist() for m, p in points.items()},
                           "indicators": indicators, "reference_front": reference.tolist()}
        first = next(iter(sweeps.values()))
        per_seed[seed] = {
            "views": views, "preferences": grid.tolist(), "metrics": s.metrics,
            "base_point": first["methods"]["base"]["points"][0],
            "steered_utility": {f"meta-{a}": sw["methods"][a]["steered_utility"] for a, sw in sweeps.items()},
            "trained_runs": {m: t["runs"] for m, t in trained[seed].items()},
            "sweep_choice": {m: t["chosen"] for m, t in trained[seed].items() if "chosen" in t},
            "training_steps": {m: s.training_steps(m) for m in s.methods},
            "experts_training_steps": json.loads((experts_dir(s, seed) / "experts.json").read_text())[
                "training_steps"],
        }
    summary = {
        "settings": asdict(s), "experts_config": {k: v for k, v in experts_config(s, s.seeds[0]).to_dict().items()
                                                 if k not in ("seed", "out", "experts")},
        "methods": s.methods, "views": VIEWS, "warnings": warnings, "per_seed": per_seed,
        "tables": {view: {"per_method": per_method(per_seed, s.methods, view),
                          "comparisons": comparisons(per_seed, s, view)} for view in VIEWS},
        "cpu_seconds": {"pieces": cpu, "total": sum(t["cpu_seconds"] for t in cpu.values() if t),
                        "note": "time.process_time of this process per piece; a scorer subprocess is not counted"},
        "cpu": _cpu_info(),
    }
    path = out / "meta_vs_trained.json"
    path.write_text(json.dumps(summary, indent=1))
    (out / "meta_vs_trained.md").write_text(markdown(summary))
    return path


def _cpu_info() -> dict[str, Any]:
    try:
        from moalign.precision import cpu_info

        return dict(cpu_info())
    except Exception:  # noqa: BLE001 - the record only
        return {}


def markdown(summary: dict[str, Any]) -> str:
    s, ec = summary["settings"], summary["experts_config"]
    if s.get("task", "coupled") == "habits":
        return "\n".join(_habits_header(summary) + _tables(summary, digits=4))
    lines = [
        "# Meta-policy vs trained policies (coupled synthetic task)\n",
        f"Seeds {s['seeds']}. Experts: 3 LoRA adapters (r {ec['lora_r']}, alpha {ec['lora_alpha']}, lr "
        f"{ec['learning_rate']:g}) x {ec['steps']} RL steps each (GRPO, {ec['prompts_per_step']} prompts x "
        f"{ec['generations']} generations, max {ec['max_completion_length']} tokens, emphasis {ec['emphasis']}). "
        f"Sweep: simplex grid step {s['grid_step']} ({len(next(iter(summary['per_seed'].values()))['preferences'])} "
        f"preferences) per aggregation, greedy, first {s['rows']} test problems. Trained: the three fixed presets "
        f"({s['bench_dir']}, {s['steps']} steps each) and {s['dynamic_method']} ({s['budget_dir']}, "
        f"{3 * s['steps']} steps); {EXPERTS_ALONE}: the three experts decoding alone (the sweep's one-hot "
        "preferences), trained exactly as the mixtures' experts, unlike the presets (full fine-tuning, lr 1e-4). "
        "HV: origin reference; IGD+: against the non-dominated union of every method's "
        "points of that seed (lower is better); normalised space (accuracy, 1 - length/64, clarity). Differences "
        "are paired by seed: mean [bootstrap 95 % CI] and win/tie/loss.\n",
    ]
    return "\n".join(lines + _tables(summary, digits=3))


def _habits_header(summary: dict[str, Any]) -> list[str]:
    s, ec = summary["settings"], summary["experts_config"]
    k, steps = s["objectives"], s["steps"]
    first = next(iter(summary["per_seed"].values()))
    choices = ", ".join(f"{seed}: {r['sweep_choice'].get(f'sweep-best-of-{k}', '?').rsplit('-seed', 1)[0]}"
                        for seed, r in summary["per_seed"].items())
    return [
        f"# Meta-policy vs trained policies (habits task, K = {k})\n",
        f"Seeds {s['seeds']}. Objectives: {', '.join(first.get('metrics', []))} (each a 0/1 rate; the normalised "
        f"space is the K rates). Experts: {k} LoRA adapters (r {ec['lora_r']}, alpha {ec['lora_alpha']}, lr "
        f"{ec['learning_rate']:g}, emphasis {ec['emphasis']} on their own objective) x {ec['steps']} RL steps each "
        f"(GRPO, {ec['prompts_per_step']} prompts x {ec['generations']} generations, max "
        f"{ec['max_completion_length']} tokens, the habits bench's warm start and data): {k * steps} RL steps in all. "
        f"Sweep: simplex grid step {s['grid_step']}" + (" and the centroid" if s.get("centroid") else "")
        + f" ({len(first['preferences'])} preferences) per aggregation, "
        f"first {s['rows']} test problems, "
        + ("greedy" if s["temperature"] == 0 else f"sampled at T = {s['temperature']:g} as the bench's test "
           "evaluations (every preference on the same seeded streams)")
        + f". Trained ({s['bench_dir']}/K{k}, full fine-tuning, lr 1e-4, {steps} steps per run): "
        f"{SWEEP_SET} = the Dirichlet presets sweep-0 .. sweep-{k - 1} as a set ({k * steps} steps, the same "
        f"compute as the experts); sweep-best-of-{k} = the one of them with the best validation front HV "
        f"(moalign.sweep's choice; per seed {choices}); {', '.join(s['dynamic_methods'])}: one run each "
        f"({steps} steps, **1/{k} of the compute**). {EXPERTS_ALONE}: the {k} experts decoding alone (the sweep's "
        "one-hot preferences). HV: origin reference; IGD+: against the non-dominated union of every method's points "
        "of that seed (lower is better). Differences are paired by seed: mean [bootstrap 95 % CI] and "
        "win/tie/loss.\n",
    ]


def _tables(summary: dict[str, Any], digits: int) -> list[str]:
    from moalign.bench import _fmt_cmp  # the bench tables' cells: mean | mean | diff [CI] | W/T/L

    lines = []
    if summary["warnings"]:
        lines.append(f"**Smoke run: {len(summary['warnings'])} budget/rows mismatch(es) with the trained runs "
                     "(see the JSON); not a measurement.**\n")
    for view, what in VIEWS.items():
        t = summary["tables"][view]
        main = " (main table)" if view == "final" else ""
        lines += [f"## View {'a' if view == 'final' else 'b'}: {what}{main}\n",
                  "| method | RL steps | points | HV (mean ± sd) | IGD+ (mean ± sd) | expected utility |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in t["per_method"]:
            hv, igd, eu = r["hypervolume"], r["igd_plus"], r["expected_utility"]
            budget = r.get("training_steps")
            lines.append(f"| {r['method']} | {'—' if budget is None else budget} | {r['points']:.0f} | "
                         f"{hv['mean']:.{digits}f} ± {hv['sd']:.{digits}f} | "
                         f"{igd['mean']:.3f} ± {igd['sd']:.3f} | {eu['mean']:.3f} |")
        lines += ["", "| meta | vs | HV meta | HV other | HV diff [95 % CI] | W/T/L | IGD+ meta | IGD+ other | "
                      "IGD+ diff [95 % CI] | W/T/L (lower = win) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in t["comparisons"]:
            lines.append(f"| {c['meta']} | {c['vs']} | {_fmt_cmp(c['hv'], digits)} | {_fmt_cmp(c['igd_plus'])} |")
        lines.append("")
    cpu = summary["cpu_seconds"]
    model = summary.get("cpu", {}).get("model")
    lines += ["## CPU time (process time per piece" + (f", {model}, one torch thread" if model else "") + ")\n",
              "| piece | CPU s | wall s |", "|---|---:|---:|"]
    for name, timing in cpu["pieces"].items():
        lines.append(f"| {name} | {timing['cpu_seconds']:.0f} | {timing['wall_seconds']:.0f} |" if timing
                     else f"| {name} | — | — |")
    lines.append(f"| total | {cpu['total']:.0f} | |\n")
    return lines


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="100,101,102,103,104", help="comma-separated seeds (experts and trained runs)")
    p.add_argument("--task", choices=TASKS, default="coupled",
                   help="coupled (3 objectives) or habits (accuracy and K - 1 habits, --objectives K)")
    p.add_argument("--objectives", type=int, default=4, help="habits: K (experts, sweep presets compared)")
    p.add_argument("--steps", type=int, default=30,
                   help="RL steps per expert (coupled presets: as many, dynamic: 3x; habits runs: as many)")
    p.add_argument("--rows", type=int, default=None,
                   help="first N test problems, as the bench's test evaluations (default: coupled 200, habits 100)")
    p.add_argument("--grid-step", type=float, default=0.5,
                   help="simplex grid of preferences (0.5: 6 preferences at 3 objectives, 10 at 4)")
    p.add_argument("--centroid", action=argparse.BooleanOptionalAction, default=None,
                   help="add the uniform preference to the grid (default: habits yes, coupled no)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sweep decoding: 0 greedy, > 0 sampled (default: as the bench's evaluations, coupled 0, "
                        "habits 1)")
    p.add_argument("--aggregations", default=",".join(AGGREGATIONS))
    p.add_argument("--bench-dir", default=None, help="coupled: moalign bench run with the three fixed presets "
                   f"(default {TASK_DEFAULTS['coupled'][1]}); habits: the habits bench's --out, holding K<K>/ "
                   f"(default {TASK_DEFAULTS['habits'][1]})")
    p.add_argument("--budget-dir", default=None, help="coupled: moalign bench run with the dynamic 3x-step run "
                   f"(default {TASK_DEFAULTS['coupled'][2]})")
    p.add_argument("--dynamic-method", default=Settings.dynamic_method, help="coupled: the dynamic run")
    p.add_argument("--dynamic-methods", default=",".join(HABITS_SINGLE_RUNS),
                   help="habits: the bench's single runs compared (30 steps each: 1/K of the experts' compute)")
    p.add_argument("--estimator", default=Settings.estimator)
    p.add_argument("--out", default=None, help=f"default {TASK_DEFAULTS['coupled'][3]}, habits "
                   f"{TASK_DEFAULTS['habits'][3].format(k='<K>')}")
    p.add_argument("--batch-size", type=int, default=16, help="rows decoded together in the sweep")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--bootstrap", type=int, default=10000)
    p.add_argument("--quick", action="store_true", help="smoke size: 2 RL steps, 8 rows; budget checks only warn")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--verbose", action="store_true", help="show the libraries' warnings and logs")
    a = p.parse_args(argv)
    try:
        s = Settings(seeds=[int(x) for x in a.seeds.split(",") if x.strip()], steps=a.steps, rows=a.rows,
                     grid_step=a.grid_step, aggregations=[x.strip() for x in a.aggregations.split(",") if x.strip()],
                     bench_dir=a.bench_dir, budget_dir=a.budget_dir, estimator=a.estimator,
                     dynamic_method=a.dynamic_method, out=a.out, batch_size=a.batch_size, threads=a.threads,
                     bootstrap=a.bootstrap, quick=a.quick, task=a.task, objectives=a.objectives,
                     dynamic_methods=[x.strip() for x in a.dynamic_methods.split(",") if x.strip()],
                     temperature=a.temperature, centroid=a.centroid)
    except ValueError as exc:
        p.error(str(exc))
    from rich.console import Console

    from moalign._quiet import command_output

    with command_output(a.verbose):
        try:
            path = run(s, progress=not a.no_progress)
        except (FileNotFoundError, ValueError) as exc:  # missing or incomparable trained runs, a stale --out
            p.exit(2, f"error: {exc}\n")
    console = Console()
    console.print(f"[green]results:[/] {path}", highlight=False, soft_wrap=True)
    console.print(f"  table:   {path.with_suffix('.md')}", highlight=False, soft_wrap=True)
    console.print(f"  experts: {Path(s.out)}/experts-seed<s>/, sweeps: {Path(s.out)}/sweep-seed<s>/<aggregation>/",
                  highlight=False, soft_wrap=True)
    return path


if __name__ == "__main__":
    main(sys.argv[1:])

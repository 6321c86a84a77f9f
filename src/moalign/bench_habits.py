"""``moalign bench --task habits --objectives K``: fixed, dynamic and swept weights with K objectives.

The ``habits`` member of the synthetic task family (docs/demo_task.md) has accuracy and seven formatting habits,
each scored by its own objective (:class:`moalign.objectives.Habit`) and each learned at its own speed. With
``objectives = K`` a run is scored on accuracy and the first K - 1 habits (:data:`moalign.objectives.HABITS`);
every K shares one warm start, and the habits left unscored drift freely.

Per seed, every method trains on the same budget from the same warm start:

* dynamic and fixed methods at uniform weights (:func:`habits_methods`);
* a **sweep**: ``sweep_presets`` fixed weight vectors drawn from Dirichlet(1) with their own seed (the same draws on
  every seed, :func:`moalign.sweep.dirichlet_presets`), each also evaluated on the val split, so a user's choice
  of preset can be made on val and scored on test (:mod:`moalign.sweep`). ``sweep_alpha`` > 1 draws them from
  Dirichlet(alpha) instead, nearer uniform weights (runs ``sweep-a<alpha>-<i>``; summary ``bench_sweep-a<alpha>``),
  beside the Dirichlet(1) sweep in the same directory.

Reported (:func:`summarize_habits_bench`): the front hypervolume on test in the normalised K-dimensional space
(every habit and accuracy is a rate in [0, 1]; reference point at the origin), IGD+ against the non-dominated
union of the fronts of all runs of that seed, the final per-objective means, paired differences against uniform
weights with bootstrap CIs, and each dynamic method's sweep-equivalent N.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .demo import GRADIENT_MU

__all__ = ["CTWA_HABIT_TARGETS", "HabitsBenchConfig", "habits_bench_markdown", "habits_methods", "habits_objectives",
           "run_habits_bench", "summarize_habits_bench", "val_evaluations"]

TASK = "habits"
# CTWA's paper targets are 0.15 for accuracy and 0.08 for each other objective (three objectives); at K != 3 the
# same per-objective targets are carried over unless calibration chooses others (docs/BENCHMARKS.md).
CTWA_HABIT_TARGETS = {"accuracy": 0.15, "habit": 0.08}
# Trainer settings a method needs besides its strategy (as bench.METHOD_TRAINER_ARGS).
AGGREGATION = {"gdpo": "normalize_then_sum", "mo-grpo": "mo_grpo"}
# The hypervolume method multiplies the learning rate by its meta-reward r_pareto (mean 1.49 in its K = 8 runs of
# seeds 100-101): uniform weights at 1.5x the learning rate separate a faster learner from a better direction.
LR_SCALE = {"uniform-lr1.5x": 1.5}
# Paired comparisons besides "against uniform weights" (method, reference): SAW smoothed vs as published (item 5),
# the hypervolume method vs uniform weights at its learning rate (is its gain the larger step?), GDPO vs MO-GRPO.
EXTRA_PAIRS = [("saw-ema", "saw"), ("hypervolume-uniform", "uniform-lr1.5x"), ("gdpo", "mo-grpo")]


def habits_objectives(k: int) -> list[Any]:
    """The objectives entries of the ``habits`` task at ``k`` objectives: accuracy and the first ``k - 1`` habits.

    >>> habits_objectives(3)
    ['accuracy', {'name': 'habit', 'habit': 'numbered'}, {'name': 'habit', 'habit': 'signoff'}]
    """
    from .objectives.habit import HABITS

    if not 2 <= k <= len(HABITS) + 1:
        raise ValueError(f"--objectives must be from 2 to {len(HABITS) + 1} for the habits task (accuracy and up to "
                         f"{len(HABITS)} habits), but got {k}")
    return ["accuracy", *({"name": "habit", "habit": h} for h in HABITS[: k - 1])]


@dataclass
class HabitsBenchConfig:
    """Budget, seeds and methods of the ``habits`` bench."""

    objectives: int = 4
    """K: accuracy and the first K - 1 habits."""
    seeds: list[int] = field(default_factory=lambda: list(range(100, 110)))
    methods: list[str] | None = None
    """Subset of :func:`habits_methods` labels (default: all); ``sweep`` stands for all its presets."""
    sweep_presets: int = 8
    """M: Dirichlet presets trained per seed (the pool best-of-N sweeps are drawn from, N <= M)."""
    sweep_seed: int = 0
    """Seed of the Dirichlet draws (not the run seed: the same presets on every seed)."""
    sweep_alpha: float = 1.0
    """Concentration of the Dirichlet draws: 1 is uniform on the simplex (the issue's sweep); larger draws presets
    nearer uniform weights (a user's sweep "around the centre")."""
    steps: int = 30
    eval_every: int = 3
    eval_size: int = 200
    """Test problems per evaluation (sampled at temperature 1, as the async member)."""
    val_size: int = 64
    """Val problems per evaluation of a sweep run, and per validation point of the hypervolume method."""
    prompts_per_step: int = 4
    generations: int = 8
    learning_rate: float = 1e-4
    max_completion_length: int = 64
    gradient_mu: float = GRADIENT_MU
    cov_targets: list[float] | None = None
    """CTWA's target covariances, one per objective; default :data:`CTWA_HABIT_TARGETS`."""
    saw_ema: float = 0.5
    """EMA rate of the ``saw-ema`` method's smoothed batch statistics (:class:`moalign.weighting.saw.SAW`)."""
    data_seed: int = 0
    bootstrap: int = 2000
    workers: int = 2
    """Runs trained in parallel, one process (and one torch thread) each."""
    out: str = "runs/bench_habits"
    eval_temperature: float = 1.0

    def __post_init__(self) -> None:
        habits_objectives(self.objectives)  # checks K
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, e.g. 100,101,102; got {self.seeds}")
        for key in ("workers", "steps", "eval_every", "eval_size", "val_size", "prompts_per_step", "generations",
                    "sweep_presets"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, but got {getattr(self, key)}")
        if not self.sweep_alpha > 0:
            raise ValueError(f"--sweep-alpha must be > 0 (1: uniform on the simplex), but got {self.sweep_alpha}")
        if self.cov_targets is not None and len(self.cov_targets) != self.objectives:
            raise ValueError(f"cov_targets has {len(self.cov_targets)} entries but there are {self.objectives} "
                             "objectives (accuracy, then the habits); give one target per objective")
        names = [m[0] for m in habits_methods(self)]
        if self.methods is not None:
            unknown = sorted(set(self.methods) - set(names) - {"sweep"})
            if unknown:
                raise ValueError(f"unknown habits-bench method(s) {unknown}; choose from sweep, {', '.join(names)}")

    def run_key(self) -> str:
        """Digest of the settings that change a run (not seeds, methods or the statistics): a run directory
        trained under another key is not reused."""
        data = {k: getattr(self, k) for k in ("objectives", "steps", "eval_every", "eval_size", "val_size",
                                              "prompts_per_step", "generations", "learning_rate",
                                              "max_completion_length", "data_seed", "eval_temperature")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def sweep_prefix(self) -> str:
        """Run label prefix of the sweep presets: ``sweep-`` for Dirichlet(1), ``sweep-a<alpha>-`` otherwise, so
        sweeps of two concentrations share one directory (and the other methods' runs)."""
        return "sweep-" if self.sweep_alpha == 1 else f"sweep-a{self.sweep_alpha:g}-"

    def summary_name(self) -> str:
        """Stem of ``bench.json`` / ``bench.md``; a Dirichlet(alpha != 1) sweep writes its own."""
        return "bench" if self.sweep_alpha == 1 else f"bench_{self.sweep_prefix().rstrip('-')}"

    def ctwa_targets(self) -> list[float]:
        if self.cov_targets is not None:
            return [float(x) for x in self.cov_targets]
        return [CTWA_HABIT_TARGETS["accuracy"]] + [CTWA_HABIT_TARGETS["habit"]] * (self.objectives - 1)


def habits_methods(cfg: HabitsBenchConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, strategy, strategy_params)`` of every method; sweep presets are labelled ``sweep-<i>`` (Dirichlet(1))
    or ``sweep-a<alpha>-<i>``."""
    from .sweep import dirichlet_presets

    methods: list[tuple[str, str, dict[str, Any]]] = [
        ("uniform", "fixed", {}),
        ("uniform-lr1.5x", "fixed", {}),  # learning rate x LR_SCALE: the control for the hypervolume method's r_pareto
        ("gdpo", "fixed", {}),  # uniform weights under normalize_then_sum (AGGREGATION)
        ("mo-grpo", "fixed", {}),  # uniform weights under mo_grpo
        ("saw", "saw", {}),
        ("saw-ema", "saw", {"ema_rate": cfg.saw_ema}),
        ("gradient", "gradient", {"mu": cfg.gradient_mu}),
        ("hypervolume-uniform", "hypervolume", {"hv_eval_every": 2}),
        ("ctwa", "ctwa", {"cov_targets": cfg.ctwa_targets()}),
        ("mgda", "mgda", {}),
    ]
    presets = dirichlet_presets(cfg.objectives, cfg.sweep_presets, cfg.sweep_seed, cfg.sweep_alpha)
    methods += [(f"{cfg.sweep_prefix()}{i}", "fixed", {"weights": [float(x) for x in w]})
                for i, w in enumerate(presets)]
    return methods


def _selected(cfg: HabitsBenchConfig) -> list[tuple[str, str, dict[str, Any]]]:
    chosen = cfg.methods
    return [m for m in habits_methods(cfg)
            if chosen is None or m[0] in chosen or (m[0].startswith("sweep-") and "sweep" in chosen)]


# ---------------------------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------------------------
def val_evaluations(trainer, dataset, size: int, every: int):
    """A trainer callback: evaluations on the val split (split ``val`` in ``evals.jsonl``) at step 0 and every
    ``every`` steps, beside the trainer's own test evaluations, so that a sweep can choose its preset on val."""
    from transformers import TrainerCallback

    from .trainer_eval import TrainingEvaluator

    evaluator = TrainingEvaluator(trainer, dataset, "val", size)

    class ValEvaluations(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                evaluator.evaluate(0)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                evaluator.evaluate(state.global_step)

    return ValEvaluations()


def _train_one(cfg: HabitsBenchConfig, label: str, strategy: str, params: dict[str, Any], seed: int,
               model_dir: Path, run_dir: Path) -> None:
    from .data.synthetic import load_synthetic
    from .demo import train_synthetic_run

    splits = load_synthetic(seed=cfg.data_seed, variant=TASK)
    callbacks = []
    if label.startswith("sweep-"):
        callbacks.append(lambda trainer: val_evaluations(trainer, splits["val"], cfg.val_size, cfg.eval_every))
    aggregation = AGGREGATION.get(label)
    train_synthetic_run(
        label=label, strategy=strategy, params=params, estimator="grpo", seed=seed, model_dir=model_dir,
        splits=splits, run_dir=run_dir, steps=cfg.steps, eval_every=cfg.eval_every, eval_size=cfg.eval_size,
        validation_size=cfg.val_size, prompts_per_step=cfg.prompts_per_step, generations=cfg.generations,
        learning_rate=cfg.learning_rate * LR_SCALE.get(label, 1.0), max_completion_length=cfg.max_completion_length,
        extra_info={"seed_index": seed, "task": TASK, "bench": "habits", "run_key": cfg.run_key(),
                    "num_objectives": cfg.objectives},
        trainer_args={"multi_objective_aggregation": aggregation} if aggregation else None,
        eval_temperature=cfg.eval_temperature, objectives=habits_objectives(cfg.objectives), callbacks=callbacks,
    )


def _complete(run_dir: Path, cfg: HabitsBenchConfig, needs_val: bool) -> bool:
    """A finished run of this configuration: same run key, test (and, for a sweep run, val) evaluations up to the
    last step."""
    if not (run_dir / "run.json").exists() or not (run_dir / "evals.jsonl").exists():
        return False
    meta = json.loads((run_dir / "run.json").read_text())
    if meta.get("run_key") != cfg.run_key():
        raise ValueError(f"{run_dir} was trained with other settings (run key {meta.get('run_key')}, now "
                         f"{cfg.run_key()}); give these settings their own --out or delete that run")
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines() if line.strip()]
    last = {split: max((e["step"] for e in evals if e["split"] == split), default=-1) for split in ("test", "val")}
    return last["test"] >= cfg.steps and (not needs_val or last["val"] >= cfg.steps)


def k_dir(cfg: HabitsBenchConfig) -> Path:
    return Path(cfg.out) / f"K{cfg.objectives}"


def run_habits_bench(cfg: HabitsBenchConfig, progress: bool = True) -> Path:
    """Train every (method, seed) run not yet finished, ``cfg.workers`` at a time (one process and one torch thread
    each), then write ``bench.json`` and ``bench.md`` under ``<out>/K<objectives>/``; returns the path of
    ``bench.md``. Interrupted, it resumes from the finished runs (an unfinished one starts again)."""
    from .demo import task_warm_start
    from .precision import log_for_runs
    from .runpool import stop_on_signals, train_in_workers

    out = k_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = task_warm_start(TASK, progress=progress)
    log_for_runs(model_dir)
    todo = []
    for seed in cfg.seeds:
        for label, strategy, params in _selected(cfg):
            run_dir = out / f"{label}-seed{seed}"
            if not _complete(run_dir, cfg, label.startswith("sweep-")):
                todo.append({"cfg": dataclasses.asdict(cfg), "label": label, "strategy": strategy, "params": params,
                             "seed": seed, "model_dir": str(model_dir), "run_dir": str(run_dir)})
    with stop_on_signals():  # SIGTERM / Ctrl-C end the workers; finished runs are kept and the same command resumes
        train_in_workers(todo, cfg.workers, _Progress(progress), _timed_run)
    summary = summarize_habits_bench(cfg)
    (out / f"{cfg.summary_name()}.json").write_text(json.dumps(summary, indent=1))
    md = out / f"{cfg.summary_name()}.md"
    md.write_text(habits_bench_markdown(summary))
    return md


class _Progress:
    """What :func:`moalign.runpool.train_in_workers` reports to: one line per finished run."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def running(self, job: dict[str, Any]) -> None:
        pass

    def finished(self, job: dict[str, Any], timing: dict[str, float]) -> None:
        _report(job, timing, self.enabled)


def _timed_run(job: dict[str, Any]) -> dict[str, float]:
    """One run (in this or a worker process), from scratch; its wall and CPU time go to ``timing.json``."""
    import shutil

    import torch

    torch.set_num_threads(1)  # the tiny model gains nothing from intra-op threads on a shared machine
    run_dir = Path(job["run_dir"])
    if run_dir.exists():  # an interrupted run: train it again from the start
        shutil.rmtree(run_dir)
    started, cpu = time.perf_counter(), time.process_time()
    _train_one(HabitsBenchConfig(**job["cfg"]), job["label"], job["strategy"], job["params"], job["seed"],
               Path(job["model_dir"]), run_dir)
    timing = {"wall_seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
    (run_dir / "timing.json").write_text(json.dumps(timing))
    return timing


def _report(job: dict[str, Any], timing: dict[str, float], progress: bool) -> None:
    if progress:
        from rich.console import Console

        Console().print(f"habits bench K={job['cfg']['objectives']}: {job['label']} seed {job['seed']} done in "
                        f"{timing['wall_seconds']:.0f} s (CPU {timing['cpu_seconds']:.0f} s)",
                        markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------------------------------
def _run_record(run_dir: Path) -> dict[str, Any] | None:
    from .evaluation import metric_space, summarize_front
    from .report import load_run

    if not (run_dir / "run.json").exists():
        return None
    r = load_run(run_dir)
    test = r.evals_for("test")
    if not test:
        return None
    front = summarize_front(test, r.objectives, r.max_completion_length)
    rec = {"hv": front.hypervolume, "front": front.points, "metrics": [m for m, _ in metric_space(r.objectives)],
           "final": {m: max(test, key=lambda e: e["step"])["metrics"][m] for m in front.metrics}}
    val = r.evals_for("val") if r.meta.get("method", "").startswith("sweep-") else []
    if val:
        rec["val_hv"] = summarize_front(val, r.objectives, r.max_completion_length).hypervolume
    r_pareto = [s["strategy"]["r_pareto"] for s in r.steps if "r_pareto" in s.get("strategy", {})]
    rec["lr_scale"] = float(np.mean(r_pareto)) if r_pareto else LR_SCALE.get(r.meta.get("method"), 1.0)
    timing = run_dir / "timing.json"
    if timing.exists():
        rec["cpu_seconds"] = json.loads(timing.read_text())["cpu_seconds"]
    return rec


def summarize_habits_bench(cfg: HabitsBenchConfig) -> dict[str, Any]:
    """Per method and seed: test front HV, IGD+ against the seed's union front, final means; paired comparisons
    against uniform weights; the sweep's best-of-N curve and each dynamic method's sweep-equivalent N."""
    from . import pareto
    from .bench import paired_comparison
    from .sweep import best_of_n_curve, expected_best_of_n, sweep_equivalent_n

    out = k_dir(cfg)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for (label, _, _), seed in [(m, s) for s in cfg.seeds for m in _selected(cfg)]:
        rec = _run_record(out / f"{label}-seed{seed}")
        if rec is not None:
            runs.setdefault(label, {})[seed] = rec
    # IGD+ against the union of every run's front on the same seed (all runs: methods and sweep presets)
    for seed in cfg.seeds:
        fronts = [per[seed]["front"] for per in runs.values() if seed in per]
        if not fronts:
            continue
        union = np.vstack(fronts)
        union = union[pareto.nondominated(union)]
        for per in runs.values():
            if seed in per:
                per[seed]["igd_plus"] = pareto.igd_plus(per[seed]["front"], union)
    hv = {m: {s: v["hv"] for s, v in per.items()} for m, per in runs.items()}
    igd = {m: {s: v["igd_plus"] for s, v in per.items()} for m, per in runs.items()}
    metrics = next((v["metrics"] for per in runs.values() for v in per.values()), [])
    table = []
    for m, per in runs.items():
        vals = list(per.values())
        table.append({"method": m, "runs": len(vals), "hv_mean": float(np.mean([v["hv"] for v in vals])),
                      "hv_sd": float(np.std([v["hv"] for v in vals], ddof=1)) if len(vals) > 1 else math.nan,
                      "igd_plus_mean": float(np.mean([v["igd_plus"] for v in vals])),
                      "lr_scale": float(np.mean([v.get("lr_scale", 1.0) for v in vals])),
                      "final": {k: float(np.mean([v["final"][k] for v in vals])) for k in metrics},
                      "cpu_seconds": float(np.mean([v.get("cpu_seconds", math.nan) for v in vals]))})
    versus_uniform = []
    if "uniform" in hv:
        for m in sorted(hv):
            if m != "uniform" and not m.startswith("sweep-"):
                versus_uniform.append({"method": m,
                                       "hv": paired_comparison(hv[m], hv["uniform"], cfg.bootstrap),
                                       "igd_plus": paired_comparison(igd[m], igd["uniform"], cfg.bootstrap,
                                                                     higher_is_better=False)})
    pairs = [{"method": m, "reference": ref, "hv": paired_comparison(hv[m], hv[ref], cfg.bootstrap)}
             for m, ref in EXTRA_PAIRS if m in hv and ref in hv and set(hv[m]) & set(hv[ref])]
    sweep = {}
    labels = [f"{cfg.sweep_prefix()}{i}" for i in range(cfg.sweep_presets)]
    seeds = [s for s in cfg.seeds if all(s in runs.get(lab, {}) and "val_hv" in runs[lab][s] for lab in labels)]
    if seeds:
        val = np.array([[runs[lab][s]["val_hv"] for lab in labels] for s in seeds])
        test = np.array([[runs[lab][s]["hv"] for lab in labels] for s in seeds])
        sweep = {"seeds": seeds, "presets": [dict(zip(metrics, p[2]["weights"])) for p in habits_methods(cfg)
                                              if p[0].startswith("sweep-")],
                 "curve": best_of_n_curve(val, test).tolist(), "equivalent_n": {}, "versus_best_of_n": {}}
        for m in sorted(hv):
            if m.startswith("sweep-") or not all(s in hv[m] for s in seeds):
                continue
            dynamic = np.array([hv[m][s] for s in seeds])
            sweep["equivalent_n"][m] = sweep_equivalent_n(val, test, dynamic, n_boot=cfg.bootstrap)
            sweep["versus_best_of_n"][m] = {
                n: paired_comparison({s: hv[m][s] for s in seeds},
                                     {s: expected_best_of_n(v, t, n) for s, v, t in zip(seeds, val, test)},
                                     cfg.bootstrap)
                for n in sorted({1, 2, 4, cfg.sweep_presets} & set(range(1, cfg.sweep_presets + 1)))}
    cpu = [v.get("cpu_seconds", 0.0) for per in runs.values() for v in per.values()]
    return {"config": dataclasses.asdict(cfg), "metrics": metrics, "table": sorted(table, key=lambda r: r["method"]),
            "versus_uniform": versus_uniform, "pairs": pairs, "sweep": sweep,
            "hv_per_seed": {m: {str(s): v for s, v in sorted(per.items())} for m, per in sorted(hv.items())},
            "cpu_seconds": float(np.sum(cpu)), "runs": len(cpu)}


# ---------------------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------------------
def _cmp(c: dict[str, Any], digits: int = 3) -> str:
    lo, hi = c["ci"]
    return f"{c['diff']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] | {c['wins']}/{c['ties']}/{c['losses']}"


def _n_text(n: int | None, pool: int) -> str:
    return f"> {pool}" if n is None else str(n)


def habits_bench_markdown(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    k, metrics = cfg["objectives"], summary["metrics"]
    lines = [f"# moalign bench (task habits, K = {k})\n",
             f"Objectives: {', '.join(metrics)}. Seeds {cfg['seeds']}; {cfg['steps']} RL steps per run "
             f"({cfg['prompts_per_step']} prompts x {cfg['generations']} completions, LR {cfg['learning_rate']:g}); "
             f"test evaluations of {cfg['eval_size']} problems sampled at T = {cfg['eval_temperature']:g} every "
             f"{cfg['eval_every']} steps and at step 0. {summary['runs']} runs, CPU "
             f"{summary['cpu_seconds'] / 60:.0f} min (one thread each).\n",
             "## Per method (mean over seeds)\n",
             "| method | runs | test front HV (mean ± sd) | IGD+ | mean LR scale | " + " | ".join(
                 f"final {m}" for m in metrics) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(metrics)]
    for row in summary["table"]:
        lines.append(f"| {row['method']} | {row['runs']} | {row['hv_mean']:.4f} ± {row['hv_sd']:.4f} | "
                     f"{row['igd_plus_mean']:.3f} | {row.get('lr_scale', 1.0):.2f} | "
                     + " | ".join(f"{row['final'][m]:.3f}" for m in metrics) + " |")
    if summary["versus_uniform"]:
        lines += ["\n## Against uniform weights (paired by seed)\n",
                  "| method | HV diff [95 % CI] | W/T/L | IGD+ diff [95 % CI] (lower is better) | W/T/L |",
                  "|---|---:|---:|---:|---:|"]
        for row in summary["versus_uniform"]:
            lines.append(f"| {row['method']} | {_cmp(row['hv'], 4)} | {_cmp(row['igd_plus'])} |")
    if summary.get("pairs"):
        lines += ["\n## Other pairs (paired by seed)\n", "| method | reference | HV diff [95 % CI] | W/T/L |",
                  "|---|---|---:|---:|"]
        lines += [f"| {row['method']} | {row['reference']} | {_cmp(row['hv'], 4)} |" for row in summary["pairs"]]
    sweep = summary["sweep"]
    if sweep:
        pool = len(sweep["curve"])
        ns = list(next(iter(sweep["versus_best_of_n"].values()), {}))
        lines += [f"\n## Sweep: best of N Dirichlet({cfg.get('sweep_alpha', 1.0):g}) presets, chosen on val, scored on "
                  f"test (pool of {pool}, seeds {sweep['seeds']})\n",
                  "| N | " + " | ".join(str(n) for n in range(1, pool + 1)) + " |",
                  "|---|" + "---:|" * pool,
                  "| expected test HV | " + " | ".join(f"{x:.4f}" for x in sweep["curve"]) + " |",
                  "\n| method | mean test HV | sweep-equivalent N | 95 % interval | share of bootstrap replicates "
                  "beyond the pool | " + " | ".join(f"vs best of {n}: HV diff [95 % CI], W/T/L" for n in ns) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(ns)]
        for m, eq in sweep["equivalent_n"].items():
            lo, hi = eq["ci"]
            ends = [_n_text(int(x) if x <= pool else None, pool) for x in (lo, hi)]
            interval = f"{ends[0]} – {ends[1]}"
            cells = [_cmp(c, 4).replace(" | ", ", ") for c in sweep["versus_best_of_n"][m].values()]
            lines.append(f"| {m} | {eq['target']:.4f} | {_n_text(eq['n'], pool)} | {interval} | "
                         f"{eq['beyond_share']:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)

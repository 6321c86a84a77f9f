"""Per-objective saturation curves on the members of the synthetic task family (docs/demo_task.md).

For each task member and each objective, fixed-weight GRPO runs with most of the weight on that objective
(``--emphasis`` on it, the rest split evenly) from the member's warm start; the figure plots each objective's mean
training reward (sampled completions, ``steps.jsonl``) against the RL step, averaged over seeds. On ``coupled`` one
mode switch moves every objective together; on ``async`` each objective moves under its own emphasis, at its own
speed.

    python benchmarks/saturation_curves.py                     # 2 members x 3 emphases x 3 seeds x 30 steps
    python benchmarks/saturation_curves.py --seeds 0 --steps 6  # smoke size

The ``habits`` member (accuracy and seven habits) is plotted from runs that already exist instead of training new ones:
``--habits-runs 'runs/bench_habits/K8/uniform-seed*'`` reads the K = 8 bench's uniform-weight runs (every habit
scored, weight 1/8 each) and writes ``--habits-figure`` (default ``docs/images/habit_saturation.png``) and
``habits_summary.json`` in ``--out``.

Runs go to ``--out`` (default ``runs/saturation``) and are reused when complete, so an interrupted sweep resumes.
Writes ``--figure`` (default ``docs/images/saturation_curves.png``) and ``summary.json`` in ``--out`` (mean curves,
mean rewards over steps 1-3, 4-6, 10-12, 19-21 and 28-30, CPU time of the runs trained by this call).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

OBJECTIVES = ("accuracy", "conciseness", "clarity")
TASKS = ("coupled", "async")


def emphasis_weights(objective: str, emphasis: float) -> list[float]:
    rest = (1.0 - emphasis) / (len(OBJECTIVES) - 1)
    return [emphasis if o == objective else rest for o in OBJECTIVES]


def _run(job: dict) -> dict:
    """One RL run in a worker process; returns its CPU seconds (0 when it was already complete)."""
    import torch
    from transformers.utils import logging as hf_logging

    from moalign.data.synthetic import load_synthetic
    from moalign.demo import task_warm_start, train_synthetic_run

    run_dir = Path(job["run_dir"])
    steps_file = run_dir / "steps.jsonl"
    if steps_file.exists() and len(steps_file.read_text().splitlines()) >= job["steps"]:
        return {"run_dir": str(run_dir), "cpu_seconds": 0.0}
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    start = time.process_time()
    train_synthetic_run(
        label=f"emphasis-{job['objective']}", strategy="fixed",
        params={"weights": emphasis_weights(job["objective"], job["emphasis"])}, estimator="grpo",
        seed=job["seed"], model_dir=task_warm_start(job["task"], progress=False),
        splits=load_synthetic(seed=0, variant=job["task"]), run_dir=run_dir, steps=job["steps"],
        eval_every=job["steps"], eval_size=16, validation_size=8, prompts_per_step=4, generations=8,
        learning_rate=1e-4, max_completion_length=64, extra_info={"task": job["task"]},
    )
    return {"run_dir": str(run_dir), "cpu_seconds": time.process_time() - start}


def reward_curves(run_dir: Path) -> dict[str, list[float]]:
    lines = [json.loads(x) for x in (run_dir / "steps.jsonl").read_text().splitlines() if x.strip()]
    return {o: [line["rewards"][o] for line in lines] for o in OBJECTIVES}


WINDOWS = ((1, 3), (4, 6), (10, 12), (19, 21), (28, 30))  # RL steps (1-based, inclusive) of the summary table


def window_means(curve: list[float]) -> dict[str, float]:
    """Mean reward over each window of :data:`WINDOWS` that the run reached."""
    return {f"{a}-{b}": round(float(np.mean(curve[a - 1:b])), 3) for a, b in WINDOWS if b <= len(curve)}


def plot(curves: dict, path: Path, emphasis: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"accuracy": "tab:blue", "conciseness": "tab:orange", "clarity": "tab:green"}
    fig, axes = plt.subplots(len(TASKS), len(OBJECTIVES), figsize=(12, 6.4), sharex=True, sharey=True)
    for r, task in enumerate(TASKS):
        for c, emph in enumerate(OBJECTIVES):
            ax = axes[r][c]
            for o in OBJECTIVES:
                mean = np.asarray(curves[task][emph]["mean"][o])
                lo = np.asarray(curves[task][emph]["min"][o])
                hi = np.asarray(curves[task][emph]["max"][o])
                steps = np.arange(1, len(mean) + 1)
                bold = o == emph
                ax.plot(steps, mean, color=colors[o], lw=2.4 if bold else 1.0, alpha=1.0 if bold else 0.6)
                if bold:
                    ax.fill_between(steps, lo, hi, color=colors[o], alpha=0.15, lw=0)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(f"weight {emphasis:g} on {emph}")
            if c == 0:
                ax.set_ylabel(f"{task}\nmean training reward")
            if r == len(TASKS) - 1:
                ax.set_xlabel("RL step")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[o], lw=2, label=o) for o in OBJECTIVES]
    handles.append(Line2D([], [], color="gray", lw=2.4, label="bold: the emphasised objective"))
    fig.legend(handles=handles, loc="upper center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 1.0))
    n = len(next(iter(next(iter(curves.values())).values()))["seeds"])
    fig.suptitle(f"Saturation curves: mean over {n} seeds (band: min-max of the emphasised objective)", y=0.94,
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def habit_curves(run_dirs: list[Path]) -> dict:
    """Mean, min and max over runs of each objective's training reward per RL step (``steps.jsonl``), and the
    window means of :data:`WINDOWS`; the objectives are those the runs scored."""
    per_run = []
    for d in run_dirs:
        lines = [json.loads(x) for x in (Path(d) / "steps.jsonl").read_text().splitlines() if x.strip()]
        per_run.append({o: [line["rewards"][o] for line in lines] for o in lines[0]["rewards"]})
    steps = min(len(c) for r in per_run for c in r.values())
    out = {"runs": [str(d) for d in run_dirs], "steps": steps, "objectives": {}}
    for o in per_run[0]:
        stacked = np.array([r[o][:steps] for r in per_run])
        out["objectives"][o] = {"mean": stacked.mean(0).tolist(), "min": stacked.min(0).tolist(),
                                "max": stacked.max(0).tolist(), "window_means": window_means(stacked.mean(0).tolist())}
    return out


def plot_habits(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    cmap = plt.get_cmap("tab10")
    for i, (o, c) in enumerate(curves["objectives"].items()):
        steps = np.arange(1, len(c["mean"]) + 1)
        ax.plot(steps, c["mean"], color=cmap(i), lw=2.2 if o == "accuracy" else 1.4, label=o)
        ax.fill_between(steps, c["min"], c["max"], color=cmap(i), alpha=0.08, lw=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean training reward")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    ax.set_title(f"habits member, K = {len(curves['objectives'])}, uniform weights: mean over "
                 f"{len(curves['runs'])} seeds (bands: min-max)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--emphasis", type=float, default=0.8, help="weight on the emphasised objective")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/saturation")
    parser.add_argument("--figure", default="docs/images/saturation_curves.png")
    parser.add_argument("--habits-runs", default=None,
                        help="glob of existing habits runs to plot instead (no training)")
    parser.add_argument("--habits-figure", default="docs/images/habit_saturation.png")
    args = parser.parse_args(argv)
    if args.habits_runs:
        import glob

        curves = habit_curves(sorted(Path(p) for p in glob.glob(args.habits_runs)))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "habits_summary.json").write_text(json.dumps(curves, indent=1))
        plot_habits(curves, Path(args.habits_figure))
        for o, c in curves["objectives"].items():
            print(f"{o:16s} " + " ".join(f"{k}: {v:.2f}" for k, v in c["window_means"].items()))
        return curves
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    jobs = [{"task": t, "objective": o, "seed": s, "steps": args.steps, "emphasis": args.emphasis,
             "run_dir": str(out / t / f"{o}-seed{s}")} for t in tasks for o in OBJECTIVES for s in seeds]
    wall = time.perf_counter()
    if args.workers == 1:
        results = [_run(j) for j in jobs]
    else:
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run, jobs))
    wall = time.perf_counter() - wall
    curves: dict = {}
    for t in tasks:
        for o in OBJECTIVES:
            per_seed = [reward_curves(out / t / f"{o}-seed{s}") for s in seeds]
            stacked = {k: np.array([c[k][: args.steps] for c in per_seed]) for k in OBJECTIVES}
            curves.setdefault(t, {})[o] = {
                "seeds": seeds,
                "mean": {k: v.mean(0).tolist() for k, v in stacked.items()},
                "min": {k: v.min(0).tolist() for k, v in stacked.items()},
                "max": {k: v.max(0).tolist() for k, v in stacked.items()},
                "window_means": {k: window_means(v.mean(0).tolist()) for k, v in stacked.items()},
            }
    summary = {"curves": curves, "steps": args.steps, "emphasis": args.emphasis,
               "cpu_seconds": round(sum(r["cpu_seconds"] for r in results), 1), "wall_seconds": round(wall, 1),
               "runs_trained": sum(r["cpu_seconds"] > 0 for r in results), "runs": len(results)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if set(tasks) == set(TASKS):
        plot(curves, Path(args.figure), args.emphasis)
    for t in tasks:
        for o in OBJECTIVES:
            c = curves[t][o]
            print(f"{t:8s} emphasis {o:12s} " + " | ".join(
                f"{k}: " + " ".join(f"{v:.2f}" for v in c["window_means"][k].values()) for k in OBJECTIVES))
    print(f"CPU {summary['cpu_seconds']} s for {summary['runs_trained']} runs trained; "
          f"wall {summary['wall_seconds']} s")
    return summary


if __name__ == "__main__":
    main()

"""Time of one hypervolume contribution ΔHV against a large Pareto buffer, next to the naive two-HV difference.

The buffer is ``--n`` mutually non-dominated points on the unit sphere in the positive orthant (all objectives
maximised, reference point at the origin); each new point lies just outside the front (radius 1.001 to 1.02 in
a random direction), so it has ΔHV > 0 and usually dominates a few buffer points: the slow path, never the
"dominated, return 0" shortcut. Methods, measured in the same run and interleaved call by call (the order rotates
every repetition) so that machine noise hits all of them alike:

- ``hv_contribution``: ``moalign.pareto.hv_contribution(p, buffer, ref)``;
- ``naive (moalign)``: ``hypervolume(buffer ∪ {p}) − hypervolume(buffer)`` through moalign's own checks;
- ``naive (moocore)``: the same difference calling ``moocore.hypervolume`` directly (no checks, no filtering),
  the cheapest way to get it with two hypervolumes.

Reported: median and interquartile range of the per-call wall time (``time.perf_counter``) after a warm-up, the
number of repetitions, the ratio to the naive medians and the largest difference between the ΔHV values.

    python benchmarks/bench_pareto.py                       # 1,000 points, 3 objectives, 500 repetitions
    python benchmarks/bench_pareto.py --n 1000 --k 4 --repeats 200

``--strategy-ks 3 4 6 8`` measures instead the hypervolume *strategy*'s own work per RL step (issue 29 item 4): a
``Hypervolume(K, point_source="train_batch")`` with its defaults (unbounded buffer, ``box_root`` scale, reference
point at the origin, ``apply_to: lr``) is fed ``--steps`` training batches of ``--batch`` completions with 0/1
rewards drawn at fixed per-objective rates (U(0.2, 0.8), so the batch means are noisy and the buffer keeps growing:
the unfavourable case; a policy that improves dominates its earlier points and keeps the buffer small). Timed per
step with the process's CPU clock (``time.process_time``): ``before_update`` (the batch means, the exact ΔHV against
the buffer through moocore, the buffer update, the box-root scale), ``scalarize``, ``lr_scale``, ``after_update``
and ``metrics``, i.e. everything the trainer calls on the strategy in a step.

    python benchmarks/bench_pareto.py --strategy-ks 3 4 6 8 --steps 200 --batch 32
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import moocore
import numpy as np

from moalign.pareto import hv_contribution, hypervolume

GOAL_MS = 1.0  # target for hv_contribution against 1,000 points in 3 objectives (median)


def sphere_front(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on the unit sphere in the positive orthant: mutually non-dominated when maximised."""
    x = np.abs(rng.normal(size=(n, k)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def new_points(count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Points just outside the front (radius 1.001 to 1.02): each has ΔHV > 0."""
    return sphere_front(count, k, rng) * rng.uniform(1.001, 1.02, size=(count, 1))


def _quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, median, q3


def run(n: int = 1000, k: int = 3, repeats: int = 500, warmup: int = 20, num_points: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    buffer = sphere_front(n, k, rng)
    candidates = new_points(num_points, k, rng)
    ref = np.zeros(k)
    buffer_min, ref_min = -buffer, -ref  # moocore minimises

    def naive_moocore(p: np.ndarray) -> float:
        both = np.vstack([buffer_min, -p[None, :]])
        return moocore.hypervolume(both, ref=ref_min) - moocore.hypervolume(buffer_min, ref=ref_min)

    methods: dict[str, Callable[[np.ndarray], float]] = {
        "hv_contribution": lambda p: hv_contribution(p, buffer, ref),
        "naive (moalign)": lambda p: hypervolume(np.vstack([buffer, p[None, :]]), ref) - hypervolume(buffer, ref),
        "naive (moocore)": naive_moocore,
    }
    names = list(methods)
    values = {name: [methods[name](p) for p in candidates] for name in names}
    reference = np.asarray(values["naive (moocore)"])
    max_abs_diff = {name: float(np.max(np.abs(np.asarray(v) - reference))) for name, v in values.items()}
    dominated_members = int(sum((buffer <= p).all(axis=1).sum() for p in candidates))

    for i in range(warmup):
        for name in names:
            methods[name](candidates[i % num_points])
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        p = candidates[i % num_points]
        for j in range(len(names)):
            name = names[(i + j) % len(names)]  # rotate the order
            start = time.perf_counter()
            methods[name](p)
            times[name].append(time.perf_counter() - start)

    rows = []
    base = {name: statistics.median(times[name]) for name in names}
    for name in names:
        q1, median, q3 = _quartiles(times[name])
        rows.append({
            "method": name,
            "median_ms": median * 1e3,
            "q1_ms": q1 * 1e3,
            "q3_ms": q3 * 1e3,
            "repeats": len(times[name]),
            "vs_naive_moalign": base["naive (moalign)"] / median,
            "vs_naive_moocore": base["naive (moocore)"] / median,
            "max_abs_diff": max_abs_diff[name],
        })
    return {
        "n": n, "k": k, "repeats": repeats, "warmup": warmup, "num_points": num_points, "seed": seed,
        "mean_delta_hv": float(reference.mean()),
        "min_delta_hv": float(reference.min()),
        "dominated_members_per_point": dominated_members / num_points,
        "rows": rows,
        "machine": machine_info(),
    }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:  # Linux: the model name is more telling than the architecture
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu, "cores": cores, "python": platform.python_version(), "numpy": np.__version__,
        "moocore": moocore.__version__, "platform": platform.platform(),
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"ΔHV of one point vs a {result['n']:,}-point buffer ({result['k']} objectives); "
        f"{result['repeats']} repetitions over {result['num_points']} new points, warm-up {result['warmup']}; "
        f"mean ΔHV {result['mean_delta_hv']:.3g} (min {result['min_delta_hv']:.3g}), "
        f"{result['dominated_members_per_point']:.1f} buffer points dominated per new point.",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
        f"moocore {m['moocore']}.",
        "",
        "| method | median (ms) | IQR (ms) | n | speed-up vs naive (moalign) | vs naive (moocore) "
        "| max abs diff of ΔHV |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['method']} | {r['median_ms']:.4f} | {r['q1_ms']:.4f}–{r['q3_ms']:.4f} | {r['repeats']} "
            f"| {r['vs_naive_moalign']:.1f}× | {r['vs_naive_moocore']:.1f}× | {r['max_abs_diff']:.1e} |"
        )
    fast = result["rows"][0]
    if result["n"] == 1000 and result["k"] == 3:
        verdict = "meets" if fast["median_ms"] <= GOAL_MS else "MISSES"
        lines += ["", f"Goal: hv_contribution median ≤ {GOAL_MS} ms: {verdict} ({fast['median_ms']:.4f} ms)."]
    return "\n".join(lines)


def strategy_cost(k: int, steps: int = 200, batch: int = 32, runs: int = 3, seed: int = 0) -> dict:
    """CPU time of the hypervolume strategy's hooks per RL step at K objectives (``--strategy-ks``)."""
    from moalign.weighting.base import StepStats
    from moalign.weighting.hypervolume import Hypervolume

    times, late, sizes, comparisons = [], [], [], 0
    for run in range(runs):
        rng = np.random.default_rng([seed, k, run])
        rates = rng.uniform(0.2, 0.8, size=k)
        hv = Hypervolume(k, point_source="train_batch")
        group_ids = np.repeat(np.arange(max(batch // 8, 1)), 8)[:batch]
        for step in range(steps):
            rewards = (rng.random((batch, k)) < rates).astype(np.float64)
            stats = StepStats(step, rewards, group_ids, np.zeros((batch, k)))
            comparisons += len(hv._buffer)
            start = time.process_time()
            hv.before_update(stats)
            hv.scalarize(rewards)
            hv.lr_scale()
            hv.after_update(stats)
            hv.metrics()
            elapsed = time.process_time() - start
            times.append(elapsed)
            if step >= steps - steps // 4:
                late.append(elapsed)
        sizes.append(len(hv._buffer))
    q1, median, q3 = _quartiles(times)
    return {"k": k, "steps": steps, "batch": batch, "runs": runs, "median_ms": median * 1e3, "q1_ms": q1 * 1e3,
            "q3_ms": q3 * 1e3, "mean_ms": statistics.fmean(times) * 1e3, "max_ms": max(times) * 1e3,
            "p99_ms": float(np.percentile(times, 99)) * 1e3, "steps_over_1ms": int(sum(t > 1e-3 for t in times)),
            "last_quarter_median_ms": statistics.median(late) * 1e3, "mean_buffer_size": comparisons / (runs * steps),
            "final_buffer_size": statistics.fmean(sizes)}


def strategy_markdown(rows: list[dict]) -> str:
    m = machine_info()
    r0 = rows[0]
    lines = [
        f"Hypervolume strategy (point_source train_batch, defaults) per RL step: {r0['runs']} runs × {r0['steps']} "
        f"steps of {r0['batch']} completions per K, 0/1 rewards at fixed rates; CPU time (time.process_time).",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
        f"moocore {m['moocore']}.",
        "",
        "| K | median (ms) | IQR (ms) | mean (ms) | 99th percentile (ms) | max (ms) | steps over 1 ms "
        "| median, last quarter of the steps (ms) | mean buffer size | final buffer size |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['k']} | {r['median_ms']:.3f} | {r['q1_ms']:.3f}–{r['q3_ms']:.3f} | {r['mean_ms']:.3f} "
            f"| {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['steps_over_1ms']} of {r['steps'] * r['runs']} "
            f"| {r['last_quarter_median_ms']:.3f} | {r['mean_buffer_size']:.1f} "
            f"| {r['final_buffer_size']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="buffer size (mutually non-dominated points)")
    parser.add_argument("--k", type=int, default=3, help="number of objectives")
    parser.add_argument("--repeats", type=int, default=500, help="timed calls per method")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per method first")
    parser.add_argument("--points", type=int, default=20, help="distinct new points, cycled over the repetitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy-ks", type=int, nargs="+", default=None, metavar="K",
                        help="instead: the hypervolume strategy's CPU time per RL step at each K (see above)")
    parser.add_argument("--steps", type=int, default=200, help="with --strategy-ks: RL steps per run")
    parser.add_argument("--batch", type=int, default=32, help="with --strategy-ks: completions per step")
    parser.add_argument("--runs", type=int, default=3, help="with --strategy-ks: runs per K (seeds)")
    parser.add_argument("--json", default=None, help="with --strategy-ks: also write the rows here")
    args = parser.parse_args(argv)
    if args.strategy_ks:
        if min(args.strategy_ks) < 2 or min(args.steps, args.batch, args.runs) < 1:
            parser.error("--strategy-ks needs K >= 2, and --steps, --batch, --runs >= 1")
        rows = [strategy_cost(k, args.steps, args.batch, args.runs, args.seed) for k in args.strategy_ks]
        print(strategy_markdown(rows))
        result = {"strategy_rows": rows, "machine": machine_info()}
        if args.json:
            import json

            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return result
    for name in ("n", "k", "repeats", "points"):
        if getattr(args, name) < (2 if name in ("k", "repeats") else 1):
            parser.error(f"--{name} is too small: {getattr(args, name)}")
    result = run(args.n, args.k, args.repeats, args.warmup, args.points, args.seed)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

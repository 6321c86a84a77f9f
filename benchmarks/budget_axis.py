"""Issue 19 item 5, the budget axis: does the gradient method "find the best preset without tuning" once its weights
have arrived? Reads a ``moalign bench`` directory of long runs (e.g. 90 steps: 3x the bench's budget) of the gradient
method and the best preset, and compares them paired by seed on three views of each run's test evaluations:

* ``whole run``: the front of every evaluation, as ``moalign bench`` counts it;
* ``after step N`` (``--after``, default 30: the bench's whole budget): the front of the evaluations at step >= N only,
  i.e. once the gradient method's weights have travelled (the question of the issue);
* ``final``: the last evaluation alone (the policy a user deploys).

Also reported per method: where the gradient method's weights are at steps 30, 60 and the end (mean over seeds).

    moalign bench --methods gradient,fixed-accuracy --steps 90 --seeds 100,...,109 --out runs/bench_budget90
    python benchmarks/budget_axis.py runs/bench_budget90 --preset fixed-accuracy --json budget90.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def views(evals: list[dict[str, Any]], objectives, max_len: int, after: int) -> dict[str, float]:
    """Front HV of a run's evaluations under each view (moalign's own front and HV: ``summarize_front``)."""
    from moalign.evaluation import summarize_front

    late = [e for e in evals if e["step"] >= after]
    last = [max(evals, key=lambda e: e["step"])]
    return {"whole run": summarize_front(evals, objectives, max_len).hypervolume,
            f"after step {after}": summarize_front(late, objectives, max_len).hypervolume,
            "final": summarize_front(last, objectives, max_len).hypervolume}


def analyse(bench_dir: Path, preset: str, method: str = "gradient", estimator: str = "grpo", after: int = 30,
            n_boot: int = 10000) -> dict[str, Any]:
    from moalign.bench import paired_comparison
    from moalign.report import load_run

    hv: dict[str, dict[str, dict[int, float]]] = {}
    weights: dict[int, dict[int, list[float]]] = {}
    steps_seen = set()
    for label in (method, preset):
        for run_dir in sorted((bench_dir / estimator).glob(f"{label}-seed*")):
            run = load_run(run_dir)
            evals = run.evals_for("test")
            if not evals:
                continue
            seed = int(run.meta["seed"])
            steps_seen.add(max(e["step"] for e in evals))
            for view, value in views(evals, run.objectives, run.max_completion_length, after).items():
                hv.setdefault(view, {}).setdefault(label, {})[seed] = value
            if label == method:
                by_step = {s["step"]: list(s["weights"].values()) for s in run.steps}
                weights[seed] = {t: by_step[t] for t in (after, 2 * after, max(by_step)) if t in by_step}
    if not hv:
        raise SystemExit(f"no {method}/{preset} runs with test evaluations under {bench_dir / estimator}")
    rows = [{"view": view, "hv": paired_comparison(per[method], per[preset], n_boot)} for view, per in hv.items()]
    mean_w = {}
    for t in sorted({t for w in weights.values() for t in w}):
        ws = [w[t] for w in weights.values() if t in w]
        mean_w[t] = np.mean(ws, axis=0).round(3).tolist()
    return {"bench_dir": str(bench_dir), "method": method, "preset": preset, "after": after,
            "steps": sorted(steps_seen), "rows": rows, "mean_weights": mean_w}


def markdown(result: dict[str, Any]) -> str:
    m, p = result["method"], result["preset"]
    lines = [f"| view | HV {m} | HV {p} | HV diff [95 % CI] | ratio | W/T/L |", "|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        c = row["hv"]
        lines.append(f"| {row['view']} | {c['mean_a']:.3f} | {c['mean_b']:.3f} | {c['diff']:+.3f} "
                     f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | {c['ratio']:.3f} | {c['wins']}/{c['ties']}/{c['losses']} |")
    n = result["rows"][0]["hv"]["n"]
    lines.append(f"\n{n} seeds, runs of {result['steps']} steps. Mean weights of {m} (accuracy, conciseness, "
                 f"clarity) by step: " + "; ".join(f"{t}: {w}" for t, w in result["mean_weights"].items()) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_dir", type=Path)
    parser.add_argument("--preset", default="fixed-accuracy", help="the bench label of the preset to compare with")
    parser.add_argument("--method", default="gradient")
    parser.add_argument("--estimator", default="grpo")
    parser.add_argument("--after", type=int, default=30, help="first step of the 'after step N' view")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = analyse(args.bench_dir, args.preset, args.method, args.estimator, args.after)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()

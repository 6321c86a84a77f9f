"""Base vs trained on the same test problems, paired: does a run's final policy beat the model it started from?

For each run directory written by ``moalign train`` (e.g. the SmolLM2 runs of docs/real_model.md), the initial model
and the run's final policy (``run_dir/final``: a full checkpoint or a LoRA adapter, merged) are decoded greedily on
the same rows of the run's evaluation split. Per row: accuracy, clarity (0/1) and length (tokens). Reported per run
and metric: base mean, trained mean, the mean paired difference (trained - base) with a percentile bootstrap 95 % CI
over problems, and rows won/tied/lost. With several runs the script also compares every run with the first one on
the same rows (the runs must share the split).

    python benchmarks/real_model_eval.py runs/smollm2_fixed runs/smollm2_gradient runs/smollm2_hypervolume
    python benchmarks/real_model_eval.py runs/smollm2_math500 --max-rows 32 --json math500_eval.json

One seed per run: the CIs are over problems (evaluation noise), not over training seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _trained(run_dir: Path, base):
    """``run_dir/final``: a full checkpoint, or a LoRA adapter merged into ``base`` (which it modifies)."""
    from transformers import AutoModelForCausalLM

    final = run_dir / "final"
    if not final.is_dir():
        raise SystemExit(f"{run_dir} has no final/ model; did the run finish?")
    if (final / "adapter_config.json").exists():
        from peft import PeftModel

        return PeftModel.from_pretrained(base, final).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(final)


def _evaluate(model, tok, rows, meta, batch_size: int) -> dict[str, list]:
    from moalign.evaluation import evaluate_policy
    from moalign.objectives import build_objective

    objectives = [build_objective(name) for name in meta["config"]["objectives"]]
    max_new = int(meta["config"].get("max_completion_length") or 256)
    out = evaluate_policy(model, tok, rows, objectives, max_new_tokens=max_new, batch_size=batch_size)
    return out["per_row"]


def paired(a: list, b: list, n_boot: int) -> dict:
    """``a - b`` row by row over rows both scored: mean, percentile bootstrap 95 % CI over rows, wins/ties/losses
    (moalign.bench.paired_comparison, with rows in place of seeds)."""
    from moalign.bench import paired_comparison

    c = paired_comparison({i: x for i, x in enumerate(a) if x is not None},
                          {i: y for i, y in enumerate(b) if y is not None}, n_boot)
    return {"mean": c["diff"], "ci": c["ci"], "n": c["n"], "wtl": [c["wins"], c["ties"], c["losses"]]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bootstrap", type=int, default=10000)
    p.add_argument("--json", default=None, help="also write the per-row results here")
    args = p.parse_args(argv)

    import logging

    from moalign.evaluation import load_initial_policy, load_run_rows

    logging.disable(logging.WARNING)
    results, base_cache = {}, {}
    for run in args.runs:
        meta, rows = load_run_rows(run, args.split, args.max_rows)
        model, tok = load_initial_policy(run, meta)
        key = json.dumps([meta["model"], meta["data"], meta.get("seed")], sort_keys=True, default=str)
        if key not in base_cache:  # runs from the same model on the same split share one base evaluation
            base_cache[key] = _evaluate(model, tok, rows, meta, args.batch_size)
        results[run.name] = {"base": base_cache[key],
                             "trained": _evaluate(_trained(run, model), tok, rows, meta, args.batch_size)}
        print(f"evaluated {run} on {len(rows)} {args.split} rows", flush=True)

    metrics = [m for m in ("accuracy", "clarity", "length") if m in next(iter(results.values()))["base"]]
    print("\n| run | metric | base | trained | trained - base [95 % CI over problems] | W/T/L |")
    print("|---|---|---:|---:|---|---|")
    summary = {}
    for name, r in results.items():
        for m in metrics:
            c = paired(r["trained"][m], r["base"][m], args.bootstrap)
            base = np.mean([x for x in r["base"][m] if x is not None])
            trained = np.mean([x for x in r["trained"][m] if x is not None])
            summary[f"{name}/{m}"] = {"base": float(base), "trained": float(trained), **c}
            print(f"| {name} | {m} | {base:.3f} | {trained:.3f} | {c['mean']:+.3f} [{c['ci'][0]:+.3f}, "
                  f"{c['ci'][1]:+.3f}] | {'/'.join(map(str, c['wtl']))} |")
    names = list(results)
    if len(names) > 1:
        print(f"\n| run | metric | run - {names[0]} (trained, same problems) [95 % CI] | W/T/L |")
        print("|---|---|---|---|")
        for name in names[1:]:
            for m in metrics:
                c = paired(results[name]["trained"][m], results[names[0]]["trained"][m], args.bootstrap)
                summary[f"{name}-{names[0]}/{m}"] = c
                print(f"| {name} | {m} | {c['mean']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | "
                      f"{'/'.join(map(str, c['wtl']))} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "per_row": results,
                                               "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    return summary


if __name__ == "__main__":
    main()

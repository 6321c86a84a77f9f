"""Base vs trained on the same test problems, paired: does a run's final policy beat the model it started from?

For each run directory written by ``moalign train`` (e.g. the SmolLM2 runs of docs/real_model.md), the initial model
and the run's final policy (``run_dir/final``: a full checkpoint or a LoRA adapter, merged) are decoded greedily on
the same rows of the run's evaluation split. Per row: accuracy, clarity (0/1) and length (tokens). Reported per run
and metric: base mean, trained mean, the mean paired difference (trained - base) with a percentile bootstrap 95 % CI
over problems, and rows won/tied/lost. With several runs the script also compares every run with the first one on
the same rows (the runs must share the split).

    python benchmarks/real_model_eval.py runs/smollm2_fixed runs/smollm2_gradient runs/smollm2_hypervolume
    python benchmarks/real_model_eval.py runs/smollm2_math500 --max-rows 32 --json math500_eval.json

The CIs of those two tables are over problems (evaluation noise of one training run each). When the runs hold
several training seeds of a method (run.json's ``seed``; methods told apart by their strategy, e.g. ``fixed``,
``gradient``, ``hypervolume``, and by its parameters and the aggregation where runs of one strategy differ in them),
a third table compares every method with the first one paired by seed and problem: the per-seed differences, seeds
won/tied/lost, and a two-level bootstrap CI (seeds resampled, then problems within each seed), which counts
training-seed variation as well as evaluation noise.

    python benchmarks/real_model_eval.py runs/fixed_s* runs/gradient_s* runs/hypervolume_s* --json seeds.json
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


def two_level_ci(diffs_by_seed: list[list[float]], n_boot: int, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile CI of the mean difference when both training seeds and problems vary: each replicate draws seeds
    with replacement, then each drawn seed's problems with replacement, and averages the per-seed means (the
    hierarchical bootstrap; ``moalign.bench.bootstrap_ci`` resamples one level only)."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(d, dtype=np.float64) for d in diffs_by_seed]
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(len(groups), size=len(groups))
        stats[b] = np.mean([groups[i][rng.integers(groups[i].size, size=groups[i].size)].mean() for i in picked])
    alpha = (1 - level) / 2
    return [float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))]


DEFAULT_AGGREGATION = "sum_then_normalize"


def method_labels(runs_meta: dict) -> dict[str, str]:
    """Run name -> its method: the strategy's name, or, where runs of one strategy differ in parameters (e.g. fixed
    balanced vs fixed accuracy-focused) or in ``multi_objective_aggregation`` (fixed vs gdpo), the strategy's repr
    and the aggregation."""
    keys = {run: (meta["strategy"]["name"], meta["strategy"].get("repr", ""),
                  meta.get("config", {}).get("multi_objective_aggregation", DEFAULT_AGGREGATION))
            for run, meta in runs_meta.items()}
    variants: dict[str, set] = {}
    for key in keys.values():
        variants.setdefault(key[0], set()).add(key)
    labels = {}
    for run, (name, text, aggregation) in keys.items():
        if len(variants[name]) == 1:
            labels[run] = name
        else:
            labels[run] = (text or name) + ("" if aggregation == DEFAULT_AGGREGATION else f" + {aggregation}")
    return labels


def across_seeds(results: dict, runs_meta: dict, metric: str, n_boot: int) -> list[dict]:
    """Every method (:func:`method_labels`) against the first one listed, paired by training seed and problem (rows
    both scored)."""
    from moalign.bench import paired_comparison

    by_method: dict[str, dict[int, list]] = {}
    labels = method_labels(runs_meta)
    for name, meta in runs_meta.items():
        seeds = by_method.setdefault(labels[name], {})
        if int(meta["seed"]) in seeds:
            raise SystemExit(f"two runs of {labels[name]} with seed {meta['seed']}: pass one of them")
        seeds[int(meta["seed"])] = results[name]["trained"][metric]
    methods = list(by_method)
    rows = []
    for method in methods[1:]:
        a, b = by_method[method], by_method[methods[0]]
        common = sorted(set(a) & set(b))
        pairs = {s: np.array([(x, y) for x, y in zip(a[s], b[s]) if x is not None and y is not None], dtype=float)
                 for s in common}
        # per seed, the two methods' means over the rows both scored: their difference is the seed's paired one
        c = paired_comparison({s: pairs[s][:, 0].mean() for s in common}, {s: pairs[s][:, 1].mean() for s in common},
                              n_boot)
        rows.append({"method": method, "reference": methods[0], "metric": metric, "seeds": common,
                     "per_seed": [float(pairs[s][:, 0].mean() - pairs[s][:, 1].mean()) for s in common],
                     "mean": c["diff"], "ci": two_level_ci([pairs[s][:, 0] - pairs[s][:, 1] for s in common], n_boot),
                     "wtl": [c["wins"], c["ties"], c["losses"]], "mean_a": c["mean_a"], "mean_b": c["mean_b"]})
    return rows


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
    results, base_cache, runs_meta = {}, {}, {}
    for run in args.runs:
        meta, rows = load_run_rows(run, args.split, args.max_rows)
        runs_meta[run.name] = meta
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
    seeds_per_method = {}
    for run, label in method_labels(runs_meta).items():
        seeds_per_method.setdefault(label, set()).add(int(runs_meta[run]["seed"]))
    if len(seeds_per_method) > 1 and max(map(len, seeds_per_method.values())) > 1:
        ref = next(iter(seeds_per_method))
        print(f"\n| method | metric | seeds | mean (method / {ref}) | per-seed difference | "
              "difference [95 % CI, seeds x problems] | seeds W/T/L |")
        print("|---|---|---|---|---|---|---|")
        for m in metrics:
            for row in across_seeds(results, runs_meta, m, args.bootstrap):
                summary[f"{row['method']}-{row['reference']}/{m}/seeds"] = row
                print(f"| {row['method']} | {m} | {','.join(map(str, row['seeds']))} | {row['mean_a']:.3f} / "
                      f"{row['mean_b']:.3f} | {' '.join(f'{d:+.3f}' for d in row['per_seed'])} | {row['mean']:+.3f} "
                      f"[{row['ci'][0]:+.3f}, {row['ci'][1]:+.3f}] | {'/'.join(map(str, row['wtl']))} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "per_row": results,
                                               "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    return summary


if __name__ == "__main__":
    main()

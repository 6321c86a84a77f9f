"""Does a bench table stand in float32? Compare a float32 re-run with the table's bf16-autocast runs (issue 26).

The bench tables of docs/BENCHMARKS.md were trained under CPU bf16 autocast (TRL's default, before
``moalign.precision``); the same command now trains in float32. Given the table's ``bench.json`` and the re-run's
run directories (``moalign bench ... --out DIR``, finished runs only: the re-run may still be going), this prints,
on the seeds both have:

* per method, front HV in bf16 and float32 and the paired difference (same seed: same data order and sampling
  seeds, only the precision differs);
* the verdict table in float32: every method against the best fixed preset (chosen on these runs, as Table 4) and
  against the balanced preset (Table 5), paired by seed, bootstrap 95 % CIs.

    python benchmarks/precision_rerun.py benchmarks/results/bench_async_grpo10/bench.json runs/bench_async_fp32 \\
        --task async
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moalign.bench import BenchConfig, paired_comparison, summarize_bench


def finished_run_dirs(out: Path, estimator: str) -> list[Path]:
    """The runs of the seeds whose every method has finished (a run's timing.json is written last)."""
    done = [d for d in (out / estimator).iterdir() if (d / "timing.json").exists()]
    by_seed: dict[str, list[Path]] = {}
    for d in done:
        by_seed.setdefault(d.name.rsplit("seed", 1)[1], []).append(d)
    full = max(len(v) for v in by_seed.values())
    return sorted(d for runs in by_seed.values() if len(runs) == full for d in runs)


def _cell(c: dict, digits: int = 3) -> str:
    return (f"{c['diff']:+.{digits}f} [{c['ci'][0]:+.{digits}f}, {c['ci'][1]:+.{digits}f}] | "
            f"{c['wins']}/{c['ties']}/{c['losses']}")


def compare(reference: dict, rerun_runs: dict, bootstrap: int) -> str:
    """Markdown: ``reference`` and ``rerun_runs`` are ``{method: {seed: {"hv": ...}}}`` (bench.json's ``runs``)."""
    hv = {tag: {m: {int(s): r["hv"] for s, r in runs.items()} for m, runs in table.items()}
          for tag, table in (("bf16", reference), ("fp32", rerun_runs))}
    methods = [m for m in hv["fp32"] if m in hv["bf16"]]
    seeds = sorted(set.intersection(*(set(hv["fp32"][m]) for m in methods)))
    fp32 = {m: {s: hv["fp32"][m][s] for s in seeds} for m in methods}
    bf16 = {m: {s: hv["bf16"][m][s] for s in seeds if s in hv["bf16"][m]} for m in methods}
    out = [f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} seeds), {len(methods)} methods.\n",
           "| method | front HV bf16 autocast | front HV float32 | float32 − bf16 [95 % CI] | W/T/L |",
           "|---|---:|---:|---|---:|"]
    for m in methods:
        c = paired_comparison(fp32[m], bf16[m], bootstrap)
        out.append(f"| {m} | {c['mean_b']:.3f} | {c['mean_a']:.3f} | {_cell(c)} |")
    for tag, table in (("bf16 autocast", bf16), ("float32", fp32)):
        presets = {m: sum(v.values()) / len(v) for m, v in table.items() if m.startswith("fixed-")}
        best = max(presets, key=presets.get)
        out += ["", f"In {tag}: every method against the best fixed preset ({best}) and against fixed-balanced, "
                "paired by seed", "",
                f"| method | HV | − {best} [95 % CI] | W/T/L | ratio | − fixed-balanced [95 % CI] | W/T/L |",
                "|---|---:|---|---:|---:|---|---:|"]
        for m in methods:
            if m == best:
                continue
            vs_best = paired_comparison(table[m], table[best], bootstrap)
            bal = "— | —" if m == "fixed-balanced" else _cell(paired_comparison(table[m], table["fixed-balanced"],
                                                                                 bootstrap))
            out.append(f"| {m} | {vs_best['mean_a']:.3f} | {_cell(vs_best)} | {vs_best['ratio']:.3f} | {bal} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", type=Path, help="the table's bench.json (bf16 autocast)")
    parser.add_argument("rerun", type=Path, help="the float32 re-run's --out directory")
    parser.add_argument("--task", default="coupled")
    parser.add_argument("--estimator", default="grpo")
    parser.add_argument("--bootstrap", type=int, default=10000)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    opts = parser.parse_args()
    reference = json.loads(opts.reference.read_text())["estimators"][opts.estimator]["runs"]
    dirs = finished_run_dirs(opts.rerun, opts.estimator)
    seeds = sorted({int(d.name.rsplit("seed", 1)[1]) for d in dirs})
    summary = summarize_bench(dirs, BenchConfig(task=opts.task, seeds=seeds, bootstrap=opts.bootstrap))
    text = compare(reference, summary["estimators"][opts.estimator]["runs"], opts.bootstrap)
    print(text)
    if opts.out:
        opts.out.write_text(text + "\n")
        print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()

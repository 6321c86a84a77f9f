"""The K-axis tables of docs/BENCHMARKS.md (issue 29) from the campaign's committed summaries.

Reads ``benchmarks/results/bench_habits/K<k>_bench.json`` (written by benchmarks/habits_campaign.py, one per K) and
writes one markdown block: the summary per K (uniform weights, the sweep, every method whose difference to uniform
weights has a CI that excludes 0, the paired controls), then per K the method table and the final per-objective means.
With ``--docs`` the summary and the tables replace what stands between their markers in docs/BENCHMARKS.md
(``<!-- habits-summary:begin -->`` … ``:end -->``, and ``habits-tables``), so the docs show the committed numbers and
nothing is copied by hand. Where the docs have ``<!-- habits-concentrated:begin -->`` … ``:end -->`` markers, the
sweeps drawn from Dirichlet(alpha > 1) (``K<k>_bench_sweep-a<alpha>.json``, ``habits_campaign.py --sweep-alpha``) get
their own table there: uniform weights and the best dynamic method against the best of N of those presets.

    python benchmarks/habits_tables.py                 # print the block
    python benchmarks/habits_tables.py --docs docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_habits"
BLOCKS = ("habits-summary", "habits-tables")  # docs/BENCHMARKS.md: <!-- NAME:begin --> ... <!-- NAME:end -->
METHOD_ORDER = ["uniform", "uniform-lr1.5x", "gdpo", "mo-grpo", "saw", "saw-ema", "gradient", "hypervolume-uniform",
                "ctwa", "mgda"]


def _ci(c: dict[str, Any], digits: int = 4) -> str:
    lo, hi = c["ci"]
    return f"{c['diff']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _wtl(c: dict[str, Any]) -> str:
    return f"{c['wins']}/{c['ties']}/{c['losses']}"


def _resolved(c: dict[str, Any]) -> bool:
    lo, hi = c["ci"]
    return lo > 0 or hi < 0


def _seeds_text(seeds: list[int]) -> str:
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    listed = f"{seeds[0]}–{seeds[-1]}" if contiguous and len(seeds) > 2 else ", ".join(map(str, seeds))
    return f"seeds {listed}, {len(seeds)} seeds"


def _equivalent(eq: dict[str, Any], pool: int) -> str:
    def n(x):
        return f"> {pool}" if x is None or x > pool else str(int(x))

    return f"{n(eq['n'])} [{n(eq['ci'][0])}–{n(eq['ci'][1])}]"


def _ordered(methods) -> list[str]:
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in known and not m.startswith("sweep-"))


def summary_row(s: dict[str, Any]) -> str:
    """One line of the summary table: K, seeds, uniform, the sweep, resolved differences, controls, best method's N."""
    k = s["config"]["objectives"]
    rows = {r["method"]: r for r in s["table"]}
    versus = {v["method"]: v for v in s["versus_uniform"]}
    pairs = {(p["method"], p["reference"]): p for p in s.get("pairs", [])}
    sweep = s["sweep"]
    curve, pool = sweep["curve"], len(sweep["curve"])
    uniform = rows["uniform"]["hv_mean"]
    resolved = [f"{m} {_ci(versus[m]['hv'], 3)} {_wtl(versus[m]['hv'])}" for m in _ordered(versus)
                if m != "uniform-lr1.5x" and _resolved(versus[m]["hv"])]
    dynamic = [m for m in _ordered(versus) if m != "uniform-lr1.5x"]
    best = max(dynamic, key=lambda m: rows[m]["hv_mean"])
    controls = []
    for (m, ref), label in ((("saw-ema", "saw"), "SAW-EMA − SAW"),
                            (("hypervolume-uniform", "uniform-lr1.5x"), "hypervolume − uniform at 1.5× LR"),
                            (("gdpo", "mo-grpo"), "GDPO − MO-GRPO")):
        if (m, ref) in pairs:
            controls.append(f"{label} {_ci(pairs[m, ref]['hv'], 3)}")
    if "uniform-lr1.5x" in versus:
        controls.insert(0, f"uniform at 1.5× LR {_ci(versus['uniform-lr1.5x']['hv'], 3)}")
    n_seeds = len(s["config"]["seeds"])
    return (f"| {k} | {n_seeds} | {uniform:.3f} | {curve[0]:.3f} / {curve[min(3, pool - 1)]:.3f} / {curve[-1]:.3f} | "
            f"{'; '.join(resolved) or 'none'} | {'; '.join(controls)} | "
            f"{best} ({rows[best]['hv_mean']:.3f}): {_equivalent(sweep['equivalent_n'][best], pool)} |")


def k_section(s: dict[str, Any]) -> list[str]:
    cfg = s["config"]
    k, metrics = cfg["objectives"], s["metrics"]
    rows = {r["method"]: r for r in s["table"]}
    versus = {v["method"]: v for v in s["versus_uniform"]}
    sweep = s["sweep"]
    pool = len(sweep["curve"])
    best4 = str(min(4, pool))
    lines = [f"#### K = {k} ({', '.join(metrics)}; {_seeds_text(cfg['seeds'])}; {s['runs']} runs, CPU "
             f"{s['cpu_seconds'] / 60:.0f} min)\n",
             "| method | front HV (mean ± sd) | vs uniform: HV diff [95 % CI] | W/T/L | IGD+ | vs uniform: IGD+ diff "
             f"[95 % CI] | sweep-equivalent N [95 % interval] | vs best of {best4} presets: HV diff [95 % CI] | W/T/L |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in _ordered(rows):
        r = rows[m]
        v = versus.get(m)
        eq = sweep["equivalent_n"].get(m)
        vb = sweep["versus_best_of_n"].get(m, {}).get(best4)
        lines.append(f"| {m} | {r['hv_mean']:.4f} ± {r['hv_sd']:.4f} | {_ci(v['hv']) if v else '—'} | "
                     f"{_wtl(v['hv']) if v else '—'} | {r['igd_plus_mean']:.3f} | "
                     f"{_ci(v['igd_plus'], 3) if v else '—'} | {_equivalent(eq, pool) if eq else '—'} | "
                     f"{_ci(vb) if vb else '—'} | {_wtl(vb) if vb else '—'} |")
    if s.get("pairs"):
        lines += ["", "| method | reference | HV diff [95 % CI] | W/T/L |", "|---|---|---:|---:|"]
        lines += [f"| {p['method']} | {p['reference']} | {_ci(p['hv'])} | {_wtl(p['hv'])} |" for p in s["pairs"]]
    presets = "; ".join("[" + ", ".join(f"{w:.2f}" for w in p.values()) + "]" for p in sweep["presets"])
    lines += ["", f"Sweep (Dirichlet(1) presets, val-chosen, test-scored; pool of {pool} per seed): expected test "
              "front HV of the best of " + ", ".join(f"N = {i + 1}: {x:.4f}" for i, x in enumerate(sweep["curve"]))
              + f". Presets (sweep seed {cfg.get('sweep_seed', 0)}): {presets}.", "",
              "Final per-objective means (last test evaluation, mean over seeds):", "",
              "| method | " + " | ".join(m.removeprefix("habit_") for m in metrics) + " |",
              "|---|" + "---:|" * len(metrics)]
    for m in _ordered(rows) + sorted(m for m in rows if m.startswith("sweep-")):
        lines.append(f"| {m} | " + " | ".join(f"{rows[m]['final'][x]:.2f}" for x in metrics) + " |")
    return lines + [""]


def tables(summaries: list[dict[str, Any]]) -> dict[str, str]:
    """The two blocks: ``habits-summary`` (one row per K) and ``habits-tables`` (per K, largest first)."""
    summaries = sorted(summaries, key=lambda s: -s["config"]["objectives"])
    head = ["| K | seeds | uniform weights: front HV | best of 1 / 4 / 6 presets | dynamic vs uniform, CI excludes 0 "
            "(HV diff [95 % CI], W/T/L) | controls (HV diff [95 % CI]) | best dynamic method: sweep-equivalent N "
            "[95 % interval] |", "|---:|---:|---:|---|---|---|---|"]
    sections = [line for s in summaries for line in k_section(s)]
    return {"habits-summary": "\n".join(head + [summary_row(s) for s in summaries]), "habits-tables": "\n".join(sections)}


def concentrated_block(summaries: list[dict[str, Any]]) -> str:
    """One row per (K, alpha) of the Dirichlet(alpha > 1) sweeps: do presets near uniform weights beat them?"""
    if not summaries:
        return "Not run yet: `python benchmarks/habits_campaign.py --sweep-alpha 4 --ks 8` trains the presets."
    lines = ["| K | presets from | seeds | uniform weights: front HV | best of 1 / 4 / 6 presets | uniform − best of 4 "
             "[95 % CI], W/T/L | uniform − best of 6 [95 % CI], W/T/L | SAW − best of 6 [95 % CI], W/T/L | best dynamic "
             "method − best of 6 [95 % CI], W/T/L; sweep-equivalent N [95 % interval] |",
             "|---:|---|---:|---:|---|---|---|---|---|"]
    for s in sorted(summaries, key=lambda s: (-s["config"]["objectives"], s["config"]["sweep_alpha"])):
        cfg, sweep = s["config"], s["sweep"]
        rows = {r["method"]: r for r in s["table"]}
        curve, pool = sweep["curve"], len(sweep["curve"])
        vs = sweep["versus_best_of_n"]
        n4, n_pool = str(min(4, pool)), str(pool)
        dynamic = [m for m in _ordered(vs) if m not in ("uniform", "uniform-lr1.5x")]
        best = max(dynamic, key=lambda m: rows[m]["hv_mean"])
        def cell(c: dict[str, Any]) -> str:
            return f"{_ci(c, 3)}, {_wtl(c)}"

        lines.append(
            f"| {cfg['objectives']} | Dirichlet({cfg['sweep_alpha']:g}) | {len(sweep['seeds'])} | "
            f"{rows['uniform']['hv_mean']:.3f} | {curve[0]:.3f} / {curve[int(n4) - 1]:.3f} / {curve[-1]:.3f} | "
            f"{cell(vs['uniform'][n4])} | {cell(vs['uniform'][n_pool])} | "
            f"{cell(vs['saw'][n_pool]) if 'saw' in vs else '—'} | "
            f"{best} ({rows[best]['hv_mean']:.3f}): {cell(vs[best][n_pool])}; "
            f"N {_equivalent(sweep['equivalent_n'][best], pool)} |")
    return "\n".join(lines)


def replace_block(text: str, name: str, block: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"the docs file has no {begin} … {end} markers to write between")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--docs", type=Path, default=None, help="write the block between the markers of this file")
    args = p.parse_args(argv)
    files = sorted(args.results.glob("K*_bench.json"))
    if not files:
        raise SystemExit(f"no K<k>_bench.json in {args.results}: run benchmarks/habits_campaign.py first")
    blocks = tables([json.loads(f.read_text()) for f in files])
    if args.docs is None:
        print("\n\n".join(blocks.values()))
        return
    text = args.docs.read_text()
    for name in BLOCKS:
        text = replace_block(text, name, blocks[name])
    if "<!-- habits-concentrated:begin -->" in text:
        concentrated = [json.loads(f.read_text()) for f in sorted(args.results.glob("K*_bench_sweep-a*.json"))]
        text = replace_block(text, "habits-concentrated", concentrated_block(concentrated))
    args.docs.write_text(text)
    print(f"wrote the K-axis tables ({', '.join(f.stem.split('_')[0] for f in files)}) into {args.docs}")


if __name__ == "__main__":
    main()

"""benchmarks/habits_tables.py: the K-axis tables of docs/BENCHMARKS.md, from hand-made campaign summaries, and the
campaign's --tables-only (tables over the seeds whose runs are all finished)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    return _load("habits_tables")


def _cmp(diff, lo, hi, wtl=(3, 0, 2)):
    return {"diff": diff, "ci": [lo, hi], "wins": wtl[0], "ties": wtl[1], "losses": wtl[2]}


def _summary(k=4):
    metrics = ["accuracy", "habit_numbered", "habit_signoff", "habit_period"][:k]
    hv = {"uniform": 0.30, "uniform-lr1.5x": 0.34, "saw": 0.33, "saw-ema": 0.31, "mgda": 0.28, "sweep-0": 0.2,
          "sweep-1": 0.25}
    table = [{"method": m, "runs": 5, "hv_mean": v, "hv_sd": 0.01, "igd_plus_mean": 0.1,
              "final": {x: 0.5 for x in metrics}} for m, v in hv.items()]
    versus = [{"method": "uniform-lr1.5x", "hv": _cmp(0.04, 0.02, 0.06, (5, 0, 0)), "igd_plus": _cmp(-0.01, -0.02, 0.0)},
              {"method": "saw", "hv": _cmp(0.03, 0.01, 0.05, (4, 0, 1)), "igd_plus": _cmp(-0.01, -0.02, 0.0)},
              {"method": "saw-ema", "hv": _cmp(0.01, -0.01, 0.03), "igd_plus": _cmp(0.0, -0.01, 0.01)},
              {"method": "mgda", "hv": _cmp(-0.02, -0.03, -0.01, (0, 0, 5)), "igd_plus": _cmp(0.02, 0.01, 0.03)}]
    eq = {m: {"n": None if m == "saw" else 2, "ci": [2.0, 3.0] if m != "saw" else [3.0, 3.0]}
          for m in ("uniform", "uniform-lr1.5x", "saw", "saw-ema", "mgda")}
    return {"config": {"objectives": k, "seeds": [100, 101, 102, 103, 104], "sweep_seed": 0}, "metrics": metrics,
            "table": table, "versus_uniform": versus,
            "pairs": [{"method": "saw-ema", "reference": "saw", "hv": _cmp(-0.02, -0.04, 0.00, (1, 0, 4))}],
            "sweep": {"curve": [0.225, 0.25], "presets": [dict.fromkeys(metrics, 1 / k)] * 2, "equivalent_n": eq,
                      "versus_best_of_n": {m: {"2": _cmp(0.05, 0.03, 0.07)} for m in eq}},
            "cpu_seconds": 600.0, "runs": 35}


def test_summary_row_names_only_resolved_methods_and_the_best_dynamic_one(tables):
    row = tables.summary_row(_summary())
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["4", "5", "0.300", "0.225 / 0.250 / 0.250"]
    # saw (CI above 0) and mgda (CI below 0) are resolved; saw-ema's CI spans 0; the LR control is not a method
    assert cells[4] == "saw +0.030 [+0.010, +0.050] 4/0/1; mgda -0.020 [-0.030, -0.010] 0/0/5"
    assert cells[5] == "uniform at 1.5× LR +0.040 [+0.020, +0.060]; SAW-EMA − SAW -0.020 [-0.040, +0.000]"
    assert cells[6] == "saw (0.330): > 2 [> 2–> 2]"  # the LR control (0.34) is not a dynamic method


def test_k_section_and_docs_block(tables, tmp_path):
    section = "\n".join(tables.k_section(_summary()))
    assert "#### K = 4 (accuracy, habit_numbered, habit_signoff, habit_period; seeds 100–104, 5 seeds; 35 runs, CPU" \
           " 10 min)" in section
    assert "| saw | 0.3300 ± 0.0100 | +0.0300 [+0.0100, +0.0500] | 4/0/1 |" in section
    assert "| uniform | 0.3000 ± 0.0100 | — | — |" in section
    assert "| saw-ema | saw | -0.0200 [-0.0400, +0.0000] | 1/0/4 |" in section
    assert "| method | accuracy | numbered | signoff | period |" in section
    results = tmp_path / "results"
    results.mkdir()
    for k in (4, 8):
        (results / f"K{k}_bench.json").write_text(json.dumps(_summary(k if k == 4 else 4) | {
            "config": {"objectives": k, "seeds": [100, 101], "sweep_seed": 0}}))
    docs = tmp_path / "B.md"
    docs.write_text("intro\n<!-- habits-summary:begin -->\nold\n<!-- habits-summary:end -->\nwords\n"
                    "<!-- habits-tables:begin -->\nold\n<!-- habits-tables:end -->\nafter\n")
    tables.main(["--results", str(results), "--docs", str(docs)])
    text = docs.read_text()
    assert text.startswith("intro\n") and text.endswith("<!-- habits-tables:end -->\nafter\n")
    assert "\nold\n" not in text
    summary, rest = text.split("\nwords\n")
    assert summary.index("| 8 | 2 |") < summary.index("| 4 | 2 |") and "####" not in summary
    assert rest.index("#### K = 8") < rest.index("#### K = 4")  # largest K first
    docs.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        tables.main(["--results", str(results), "--docs", str(docs)])


def test_campaign_tables_cover_only_seeds_whose_runs_are_all_finished(tmp_path):
    from moalign.bench_habits import HabitsBenchConfig, _selected

    campaign = _load("habits_campaign")
    cfg = HabitsBenchConfig(objectives=2, seeds=[0, 1], methods=["uniform", "saw"], out=str(tmp_path), bootstrap=50)
    names = ["accuracy", "habit_numbered"]
    for seed, labels in ((0, ["uniform", "saw"]), (1, ["uniform"])):  # seed 1's saw run is missing
        for label in labels:
            run = tmp_path / "K2" / f"{label}-seed{seed}"
            run.mkdir(parents=True)
            (run / "run.json").write_text(json.dumps({
                "objectives": [{"name": n, "maximize": True} for n in names],
                "config": {"max_completion_length": 64}, "method": label, "seed": seed, "run_key": cfg.run_key()}))
            (run / "evals.jsonl").write_text("".join(
                json.dumps({"step": s, "split": "test", "metrics": {"accuracy": 0.3, "habit_numbered": 0.5}}) + "\n"
                for s in (0, cfg.steps)))
    assert [label for label, _, _ in _selected(cfg)] == ["uniform", "saw"]
    assert campaign.complete_seeds(cfg) == [0]
    results = tmp_path / "results"
    results.mkdir()
    assert campaign.write_tables(cfg, results) == [0]
    assert json.loads((results / "K2_bench.json").read_text())["config"]["seeds"] == [0]
    concentrated = HabitsBenchConfig(objectives=2, seeds=[0, 1], methods=["uniform", "saw"], out=str(tmp_path),
                                     bootstrap=50, sweep_alpha=4.0)
    assert campaign.write_tables(concentrated, results) == [0]  # its own files, beside the Dirichlet(1) tables
    assert json.loads((results / "K2_bench_sweep-a4.json").read_text())["config"]["sweep_alpha"] == 4.0


def test_concentrated_sweep_block(tables, tmp_path):
    """Dirichlet(alpha > 1) sweeps get one row per (K, alpha) between their own markers, when the docs have them."""
    s = _summary()
    s["config"] |= {"sweep_alpha": 4.0}
    s["sweep"]["seeds"] = [100, 101, 102, 103, 104]
    s["sweep"]["versus_best_of_n"]["uniform"] = {"1": _cmp(0.075, 0.05, 0.1), "2": _cmp(0.05, 0.03, 0.07, (5, 0, 0))}
    (row,) = tables.concentrated_block([s]).splitlines()[2:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # pool of 2: "best of 4" is the best of the whole pool; saw is the best dynamic method (the LR control is not)
    assert cells[:5] == ["4", "Dirichlet(4)", "5", "0.300", "0.225 / 0.250 / 0.250"]
    assert cells[5] == cells[6] == "+0.050 [+0.030, +0.070], 5/0/0"
    assert cells[7] == "+0.050 [+0.030, +0.070], 3/0/2"  # SAW, the method the K = 8 verdict names
    assert cells[8] == "saw (0.330): +0.050 [+0.030, +0.070], 3/0/2; N > 2 [> 2–> 2]"
    assert tables.concentrated_block([]).startswith("Not run yet")
    results = tmp_path / "results"
    results.mkdir()
    (results / "K4_bench.json").write_text(json.dumps(_summary()))
    (results / "K4_bench_sweep-a4.json").write_text(json.dumps(s))
    docs = tmp_path / "B.md"
    docs.write_text("".join(f"<!-- {n}:begin -->\nold\n<!-- {n}:end -->\n"
                            for n in ("habits-summary", "habits-tables", "habits-concentrated")))
    tables.main(["--results", str(results), "--docs", str(docs)])
    text = docs.read_text()
    assert "| 4 | Dirichlet(4) | 5 |" in text and "\nold\n" not in text
    assert text.count("Dirichlet(4)") == 1  # the concentrated summary is not read as a K table

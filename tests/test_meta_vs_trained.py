"""benchmarks/meta_vs_trained.py (issue 19 item 8): the campaign at smoke size on hand-made trained runs, its HV and
IGD+ against a brute-force computation, resuming, and the checks that keep incomparable runs out."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
              {"name": "conciseness", "maximize": True, "eval_metric": "length"},
              {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]
# (accuracy, length in tokens, clarity) of each hand-made run's final evaluation; step 0 is (0.5, 20, 0) for all
FINAL = {"fixed-accuracy": (0.6, 40.0, 0.9), "fixed-balanced": (0.55, 30.0, 0.5), "fixed-efficiency": (0.45, 10.0, 0.0),
         "gradient": (0.62, 44.0, 1.0)}


def _script():
    spec = importlib.util.spec_from_file_location("meta_vs_trained", ROOT / "benchmarks" / "meta_vs_trained.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _fake_run(d: Path, steps: int, rows: int, final: tuple[float, float, float]) -> None:
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"objectives": OBJECTIVES, "task": "coupled",
                                            "config": {"max_completion_length": 64, "mo_eval_temperature": 0.0}}))
    evals = [(0, 0.5, 20.0, 0.0), (steps, *final)]
    (d / "evals.jsonl").write_text("".join(json.dumps({"step": s, "split": "test", "metrics": {
        "n": rows, "accuracy": a, "length": n, "clarity": c}}) + "\n" for s, a, n, c in evals))
    (d / "steps.jsonl").write_text("".join(json.dumps({"step": t, "weights": {}}) + "\n" for t in range(1, steps + 1)))


def _fake_bench(root: Path, seeds, steps: int, rows: int, dynamic_steps: int | None = None) -> tuple[Path, Path]:
    for seed in seeds:
        for label in ("fixed-accuracy", "fixed-balanced", "fixed-efficiency"):
            _fake_run(root / "bench" / "grpo" / f"{label}-seed{seed}", steps, rows, FINAL[label])
        _fake_run(root / "budget" / "grpo" / f"gradient-seed{seed}", dynamic_steps or 3 * steps, rows,
                  FINAL["gradient"])
    return root / "bench", root / "budget"


def _brute_force_hv(points) -> float:
    """Volume of the union of the boxes [0, p] (origin reference, maximised), by inclusion-exclusion."""
    pts = np.atleast_2d(points)
    total = 0.0
    for r in range(1, len(pts) + 1):
        for subset in itertools.combinations(range(len(pts)), r):
            total += (-1) ** (r + 1) * float(np.prod(pts[list(subset)].min(axis=0)))
    return total


def _brute_force_igd_plus(points, union) -> float:
    """IGD+ (maximised objectives): mean over the non-dominated union z of min_a ||max(z - a, 0)||."""
    u = np.unique(np.concatenate([np.atleast_2d(p) for p in union]), axis=0)
    ref = [z for z in u if not any(np.all(o >= z) and np.any(o > z) for o in u)]
    pts = np.atleast_2d(points)
    return float(np.mean([min(np.linalg.norm(np.maximum(z - a, 0.0)) for a in pts) for z in ref]))


def test_smoke_campaign_matches_brute_force_and_resumes(tmp_path):
    mvt = _script()
    bench, budget = _fake_bench(tmp_path, [100], steps=2, rows=4)
    out = tmp_path / "out"
    argv = ["--quick", "--seeds", "100", "--rows", "4", "--bench-dir", str(bench), "--budget-dir", str(budget),
            "--out", str(out), "--bootstrap", "200", "--no-progress"]
    path = mvt.main(argv)
    summary = json.loads(path.read_text())
    assert summary["warnings"] == [] and summary["settings"]["steps"] == 2
    assert json.loads((out / "experts-seed100" / "experts.json").read_text())["training_steps"] == 6
    seed = summary["per_seed"]["100"]
    assert seed["experts_training_steps"] == 6

    final = seed["views"]["final"]
    points = {m: np.asarray(p) for m, p in final["points"].items()}
    assert set(points) == {"meta-parameter", "meta-logit", "meta-hidden", "experts-alone", "fixed-presets",
                           "dynamic-gradient"}
    # the experts alone: the sweep's three one-hot preferences, the same points under every aggregation
    one_hot = [json.loads(x) for x in (out / "sweep-seed100" / "logit" / "sweep.jsonl").read_text().splitlines()]
    one_hot = [r["point"] for r in one_hot if max(r["preference"]) == 1.0]
    assert len(one_hot) == 3 and np.allclose(sorted(map(tuple, points["experts-alone"])), sorted(map(tuple, one_hot)))
    for agg in ("parameter", "logit", "hidden"):  # the sweep's points, one per preference of the 0.5 grid
        sweep = json.loads((out / "sweep-seed100" / agg / "summary.json").read_text())
        assert np.allclose(points[f"meta-{agg}"], sweep["methods"][agg]["points"]) and len(points[f"meta-{agg}"]) == 6
        assert np.all((points[f"meta-{agg}"] >= 0) & (points[f"meta-{agg}"] <= 1))
    # hand-worked: the presets' final points (0.6, 1-40/64, 0.9), (0.55, 1-30/64, 0.5), (0.45, ., 0) -> the union of
    # two boxes: 0.6*0.375*0.9 + 0.55*0.53125*0.5 - 0.55*0.375*0.5; the dynamic run's one point 0.62*0.3125*1
    assert final["indicators"]["fixed-presets"]["hypervolume"] == pytest.approx(0.24546875)
    assert final["indicators"]["dynamic-gradient"]["hypervolume"] == pytest.approx(0.19375)
    for view in ("final", "checkpoints"):
        pts = {m: np.asarray(p) for m, p in seed["views"][view]["points"].items()}
        for m, p in pts.items():
            ind = seed["views"][view]["indicators"][m]
            assert ind["hypervolume"] == pytest.approx(_brute_force_hv(p), abs=1e-12), (view, m)
            assert ind["igd_plus"] == pytest.approx(_brute_force_igd_plus(p, pts.values()), abs=1e-12), (view, m)
    assert len(seed["views"]["checkpoints"]["points"]["fixed-presets"]) == 6  # 2 evaluations x 3 runs
    comparison = summary["tables"]["final"]["comparisons"][1]
    assert (comparison["meta"], comparison["vs"]) == ("meta-parameter", "fixed-presets")
    ind = final["indicators"]
    assert comparison["hv"]["diff"] == pytest.approx(ind["meta-parameter"]["hypervolume"]
                                                     - ind["fixed-presets"]["hypervolume"])
    assert "View a: final policies only" in (out / "meta_vs_trained.md").read_text()

    # resumed: nothing is trained or swept again, the figures are the same
    adapter = out / "experts-seed100" / "accuracy" / "adapter" / "adapter_model.safetensors"
    stamps = adapter.stat().st_mtime_ns, (out / "sweep-seed100" / "logit" / "summary.json").stat().st_mtime_ns
    again = json.loads(mvt.main(argv).read_text())
    assert stamps == (adapter.stat().st_mtime_ns,
                      (out / "sweep-seed100" / "logit" / "summary.json").stat().st_mtime_ns)
    assert again["per_seed"]["100"]["views"] == seed["views"]
    assert again["cpu_seconds"]["pieces"] == summary["cpu_seconds"]["pieces"]


def test_incomparable_or_missing_runs_fail_before_any_training(tmp_path):
    mvt = _script()
    bench, budget = _fake_bench(tmp_path, [100], steps=30, rows=200, dynamic_steps=60)
    s = mvt.Settings(seeds=[100], bench_dir=str(bench), budget_dir=str(budget), out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="60 RL steps, not 90"):
        mvt.run(s, progress=False)
    assert not (tmp_path / "out" / "experts-seed100").exists()
    with pytest.raises(FileNotFoundError, match="gradient-seed101"):
        mvt.load_trained(mvt.Settings(seeds=[100, 101], bench_dir=str(bench), budget_dir=str(budget)))
    with pytest.raises(ValueError, match="evaluated on 200 test problems, the sweep on 100"):
        mvt.load_trained(mvt.Settings(seeds=[100], rows=100, bench_dir=str(bench), budget_dir=str(budget)))
    # --quick only warns (a smoke run on whatever runs are at hand)
    _, problems = mvt.load_trained(mvt.Settings(seeds=[100], quick=True, bench_dir=str(bench), budget_dir=str(budget)))
    assert any("not 2 (the same compute" in p for p in problems)


def test_paired_tables_orient_igd_plus_as_lower_is_better():
    mvt = _script()
    s = mvt.Settings(seeds=[1, 2, 3], aggregations=["logit"], bootstrap=200)
    # meta-logit: higher HV than the presets on every seed, but also higher (worse) IGD+
    values = {1: (0.30, 0.20, 0.10, 0.05), 2: (0.32, 0.21, 0.12, 0.04), 3: (0.31, 0.25, 0.11, 0.06)}
    per_seed = {seed: {"views": {"final": {"points": {m: [[0, 0, 0]] for m in s.methods}, "indicators": {
        "meta-logit": {"hypervolume": a, "igd_plus": c, "expected_utility": 0.0, "cardinality": 1},
        "fixed-presets": {"hypervolume": b, "igd_plus": d, "expected_utility": 0.0, "cardinality": 1},
        "experts-alone": {"hypervolume": b, "igd_plus": d, "expected_utility": 0.0, "cardinality": 1},
        "dynamic-gradient": {"hypervolume": b, "igd_plus": d, "expected_utility": 0.0, "cardinality": 1}}}}}
        for seed, (a, b, c, d) in values.items()}
    rows = mvt.comparisons(per_seed, s, "final")
    assert [(r["meta"], r["vs"]) for r in rows] == [("meta-logit", "experts-alone"), ("meta-logit", "fixed-presets"),
                                                    ("meta-logit", "dynamic-gradient")]
    hv, igd = rows[1]["hv"], rows[1]["igd_plus"]
    assert hv["diff"] == pytest.approx(np.mean([0.10, 0.11, 0.06])) and (hv["wins"], hv["losses"]) == (3, 0)
    assert igd["diff"] == pytest.approx(np.mean([0.05, 0.08, 0.05])) and (igd["wins"], igd["losses"]) == (0, 3)
    table = mvt.per_method(per_seed, s.methods, "final")
    assert table[0]["hypervolume"]["mean"] == pytest.approx(0.31)

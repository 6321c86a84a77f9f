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


# ---------------------------------------------------------------------------------------------------------------------
# --task habits --objectives 4 (issue 29 item 4): the habits bench's runs, the val-chosen sweep preset, the analysis
# ---------------------------------------------------------------------------------------------------------------------
HABIT_METRICS = ["accuracy", "habit_numbered", "habit_signoff", "habit_period"]
HABIT_OBJECTIVES = [{"name": m, "maximize": True, "eval_metric": m} for m in HABIT_METRICS]
# final test point of each hand-made run (the four rates) and, for the sweep presets, the val point at step 30;
# step 0 is the warm start (0.4, 0.5, 0.4, 0.5) on both splits. Validation picks sweep-2 (its val point dominates),
# whose test point is not the best: the choice is made on val only.
HABIT_FINAL = {"sweep-0": (0.5, 0.6, 0.4, 0.5), "sweep-1": (0.4, 0.8, 0.5, 0.6), "sweep-2": (0.45, 0.55, 0.45, 0.55),
               "sweep-3": (0.6, 0.5, 0.6, 0.5), "uniform": (0.5, 0.6, 0.6, 0.6), "saw": (0.55, 0.5, 0.5, 0.7),
               "hypervolume-uniform": (0.4, 0.7, 0.7, 0.4)}
HABIT_VAL = {"sweep-0": (0.5, 0.5, 0.5, 0.5), "sweep-1": (0.4, 0.6, 0.5, 0.5), "sweep-2": (0.7, 0.7, 0.7, 0.7),
             "sweep-3": (0.5, 0.5, 0.6, 0.5)}
HABIT_START = (0.4, 0.5, 0.4, 0.5)


def _fake_habits_run(d: Path, label: str, steps: int = 30, rows: int = 100, temperature: float = 1.0,
                     val: bool = True, last_test_step: int | None = None) -> None:
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({
        "objectives": HABIT_OBJECTIVES, "task": "habits", "method": label, "num_objectives": 4,
        "config": {"max_completion_length": 64, "mo_eval_temperature": temperature}}))
    lines = [("test", 0, HABIT_START), ("test", last_test_step or steps, HABIT_FINAL[label])]
    if val and label in HABIT_VAL:
        lines += [("val", 0, HABIT_START), ("val", steps, HABIT_VAL[label])]
    (d / "evals.jsonl").write_text("".join(json.dumps({"step": t, "split": split, "metrics": {
        "n": rows if split == "test" else 64, "length": 40.0, **dict(zip(HABIT_METRICS, p))}}) + "\n"
        for split, t, p in lines))
    (d / "steps.jsonl").write_text("".join(json.dumps({"step": t, "weights": {}}) + "\n" for t in range(1, steps + 1)))


def _fake_habits_bench(root: Path, seeds, **kw) -> Path:
    for seed in seeds:
        for label in HABIT_FINAL:
            _fake_habits_run(root / "K4" / f"{label}-seed{seed}", label, **kw)
    return root


def test_habits_settings_and_run_list(tmp_path):
    mvt = _script()
    s = mvt.Settings(task="habits", objectives=4, seeds=[100, 101])
    # the habits bench's evaluations: first 100 test problems sampled at T = 1; its own --out and bench dir
    assert (s.rows, s.temperature, s.centroid, s.bench_dir, s.out) == (100, 1.0, True, "runs/bench_habits",
                                                                       "runs/meta_vs_trained_habits_k4")
    assert s.metrics == HABIT_METRICS
    assert s.methods == ["meta-parameter", "meta-logit", "meta-hidden", "experts-alone", "sweep-presets",
                         "sweep-best-of-4", "uniform", "saw", "hypervolume-uniform"]
    # the same compute: 4 experts x 30 steps = the 4 sweep presets; a single run is 1/4 of it
    assert {m: s.training_steps(m) for m in s.methods} == {**{m: 120 for m in s.methods[:6]}, "uniform": 30,
                                                          "saw": 30, "hypervolume-uniform": 30}
    dirs = mvt.trained_run_dirs(s, 101)
    assert [d.name for d in dirs["sweep-presets"]] == [f"sweep-{i}-seed101" for i in range(4)]
    assert dirs["sweep-best-of-4"] == dirs["sweep-presets"]
    assert dirs["saw"] == [Path("runs/bench_habits/K4/saw-seed101")]
    coupled = mvt.Settings()  # the coupled task keeps its settings
    assert (coupled.rows, coupled.temperature, coupled.centroid, coupled.objectives, coupled.out) == (
        200, 0.0, False, 3, "runs/meta_vs_trained")
    assert coupled.methods[-3:] == ["experts-alone", "fixed-presets", "dynamic-gradient"]
    assert coupled.training_steps("dynamic-gradient") == coupled.training_steps("meta-logit") == 90
    with pytest.raises(ValueError, match="--objectives must be from 2"):
        mvt.Settings(task="habits", objectives=12)
    with pytest.raises(ValueError, match="unknown task"):
        mvt.Settings(task="async")
    # the experts: one LoRA expert per habits objective on the habits bench's warm start and data
    cfg = mvt.experts_config(mvt.Settings(task="habits", out=str(tmp_path)), 100)
    assert [e.name for e in cfg.experts] == ["accuracy", "habit_numbered", "habit_signoff", "habit_period"]
    assert cfg.dataset_kwargs == {"variant": "habits"} and cfg.steps == 30 and cfg.generations == 8


def test_habits_trained_runs_best_preset_on_val_and_checks(tmp_path):
    mvt = _script()
    bench = _fake_habits_bench(tmp_path / "bench", [100])
    s = mvt.Settings(task="habits", seeds=[100], bench_dir=str(bench))
    trained, problems = mvt.load_trained(s)
    assert problems == []
    t = trained[100]
    assert t["sweep-best-of-4"]["chosen"] == "sweep-2-seed100"  # best val HV, not best test HV
    assert np.allclose(t["sweep-best-of-4"]["final"], [HABIT_FINAL["sweep-2"]])
    assert np.allclose(t["sweep-presets"]["final"], [HABIT_FINAL[f"sweep-{i}"] for i in range(4)])
    assert np.allclose(t["uniform"]["checkpoints"], [HABIT_START, HABIT_FINAL["uniform"]])
    assert mvt.choose_on_val([{"val_hv": 0.2}, {"val_hv": 0.3}, {"val_hv": 0.3}]) == 1  # ties to the first

    # a run still being trained by the campaign (no step-30 test evaluation yet) is not used
    (bench / "K4" / "saw-seed101").mkdir(parents=True)
    _fake_habits_run(bench / "K4" / "uniform-seed101", "uniform", last_test_step=25)
    with pytest.raises(FileNotFoundError, match="uniform-seed101"):
        mvt.load_trained(mvt.Settings(task="habits", seeds=[100, 101], bench_dir=str(bench)))
    # greedy or 200-row evaluations are not comparable with a T = 1 sweep on 100 rows
    other = _fake_habits_bench(tmp_path / "greedy", [100], temperature=0.0, rows=200)
    with pytest.raises(ValueError, match="are greedy, the sweep's sampled at temperature 1"):
        mvt.load_trained(mvt.Settings(task="habits", seeds=[100], bench_dir=str(other)))
    with pytest.raises(ValueError, match="evaluated on 200 test problems"):
        mvt.load_trained(mvt.Settings(task="habits", seeds=[100], bench_dir=str(other)))
    no_val = _fake_habits_bench(tmp_path / "noval", [100], val=False)
    with pytest.raises(ValueError, match="without validation evaluations"):
        mvt.load_trained(mvt.Settings(task="habits", seeds=[100], bench_dir=str(no_val)))


def _fake_pieces(mvt, s, rng):
    """Stand-ins for training and sweeping: an experts manifest and one sweep per aggregation of random points."""
    from moalign.meta.evaluate import preference_grid

    grid = preference_grid(4, s.grid_step, centroid=True)
    experts = {seed: rng.uniform(0.3, 0.8, (4, 4)) for seed in s.seeds}

    def train(s_, seed, progress):
        d = mvt.experts_dir(s_, seed)
        d.mkdir(parents=True, exist_ok=True)
        (d / "experts.json").write_text(json.dumps({"training_steps": 4 * s_.steps, "experts": []}))
        return {"cpu_seconds": 1.0, "wall_seconds": 2.0}, True

    def sweep(s_, seed, agg, progress):
        d = mvt.sweep_dir(s_, seed, agg)
        d.mkdir(parents=True, exist_ok=True)
        rows = []
        for p in grid:
            hot = int(np.argmax(p)) if p.max() == 1.0 else None
            point = experts[seed][hot] if hot is not None else rng.uniform(0.3, 0.8, 4)
            rows.append({"preference": p.tolist(), "point": point.tolist()})
        (d / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "summary.json").write_text(json.dumps({"rows": s_.rows, "grid_step": s_.grid_step, "temperature": 1.0,
                                                    "methods": {"base": {"points": [list(HABIT_START)]}, agg: {
                                                        "points": [r["point"] for r in rows],
                                                        "steered_utility": 0.5}}}))
        return {"cpu_seconds": 3.0, "wall_seconds": 4.0}, True

    return train, sweep


def test_habits_analysis_on_hand_made_sweeps(tmp_path, monkeypatch):
    mvt = _script()
    bench = _fake_habits_bench(tmp_path / "bench", [100, 101])
    s = mvt.Settings(task="habits", seeds=[100, 101], bench_dir=str(bench), out=str(tmp_path / "out"),
                     bootstrap=200)
    train, sweep = _fake_pieces(mvt, s, np.random.default_rng(0))
    monkeypatch.setattr(mvt, "train_experts_piece", train)
    monkeypatch.setattr(mvt, "sweep_piece", sweep)
    summary = json.loads(mvt.run(s, progress=False).read_text())
    assert summary["methods"] == s.methods
    seed = summary["per_seed"]["101"]
    # grid step 0.5 on the 4-simplex: 4 vertices + 6 edge midpoints, and the centroid (mixing all four experts)
    assert len(seed["preferences"]) == 11 and seed["preferences"][-1] == [0.25] * 4
    assert seed["sweep_choice"] == {"sweep-best-of-4": "sweep-2-seed101"}
    assert seed["training_steps"]["meta-hidden"] == 120 and seed["training_steps"]["saw"] == 30
    for view in ("final", "checkpoints"):
        pts = {m: np.asarray(p) for m, p in seed["views"][view]["points"].items()}
        assert set(pts) == set(s.methods) and all(p.shape[1] == 4 for p in pts.values())
        assert len(pts["experts-alone"]) == 4 and len(pts["meta-logit"]) == 11
        for m, p in pts.items():  # HV (origin reference) and IGD+ against the union front, in 4-D
            ind = seed["views"][view]["indicators"][m]
            assert ind["hypervolume"] == pytest.approx(_brute_force_hv(p), abs=1e-12), (view, m)
            assert ind["igd_plus"] == pytest.approx(_brute_force_igd_plus(p, pts.values()), abs=1e-12), (view, m)
    # moalign.pareto.igd_plus against the same union front gives the same IGD+
    from moalign import pareto

    final = seed["views"]["final"]
    union = np.asarray(final["reference_front"])
    assert final["indicators"]["uniform"]["igd_plus"] == pytest.approx(
        pareto.igd_plus(np.asarray(final["points"]["uniform"]), union))
    # the sweep-presets' final points are the four presets' last test evaluations
    assert np.allclose(final["points"]["sweep-presets"], [HABIT_FINAL[f"sweep-{i}"] for i in range(4)])
    rows = summary["tables"]["final"]["comparisons"]
    assert [(r["meta"], r["vs"]) for r in rows[:6]] == [("meta-parameter", o) for o in s.others]
    per = {seed: r["views"]["final"]["indicators"] for seed, r in summary["per_seed"].items()}
    c = next(r for r in rows if (r["meta"], r["vs"]) == ("meta-hidden", "sweep-best-of-4"))
    assert c["hv"]["n"] == 2 and c["hv"]["diff"] == pytest.approx(np.mean(
        [per[k]["meta-hidden"]["hypervolume"] - per[k]["sweep-best-of-4"]["hypervolume"] for k in per]))
    md = (tmp_path / "out" / "meta_vs_trained.md").read_text()
    assert "habits task, K = 4" in md and "**1/4 of the compute**" in md and "| saw | 30 | 1 |" in md
    assert summary["cpu_seconds"]["total"] == pytest.approx(2 * (1.0 + 3 * 3.0))

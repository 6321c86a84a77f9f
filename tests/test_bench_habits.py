"""``moalign bench --task habits --objectives K`` (issue 29): configuration, methods, and the summary's statistics on
run directories written by hand (each number recomputed independently)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign import pareto
from moalign.bench_habits import (HabitsBenchConfig, habits_bench_markdown, habits_methods, habits_objectives,
                                  summarize_habits_bench)
from moalign.sweep import expected_best_of_n


def test_objectives_and_methods_at_k():
    assert habits_objectives(2) == ["accuracy", {"name": "habit", "habit": "numbered"}]
    assert len(habits_objectives(8)) == 8
    with pytest.raises(ValueError, match="from 2 to 8"):
        habits_objectives(9)
    cfg = HabitsBenchConfig(objectives=5, sweep_presets=3)
    methods = {label: (strategy, params) for label, strategy, params in habits_methods(cfg)}
    assert methods["ctwa"][1]["cov_targets"] == [0.15, 0.08, 0.08, 0.08, 0.08]
    assert methods["saw-ema"] == ("saw", {"ema_rate": 0.5})
    sweeps = [params["weights"] for label, (_, params) in methods.items() if label.startswith("sweep-")]
    assert len(sweeps) == 3 and all(len(w) == 5 and abs(sum(w) - 1) < 1e-6 for w in sweeps)
    # the same presets for every method and seed: a function of (K, M, sweep_seed) only
    assert sweeps == [p["weights"] for lab, _, p in habits_methods(HabitsBenchConfig(objectives=5, sweep_presets=3,
                                                                                      seeds=[7])) if "sweep" in lab]


@pytest.mark.parametrize("kwargs, match", [
    ({"objectives": 1}, "from 2 to 8"),
    ({"methods": ["uniform", "nope"]}, r"unknown habits-bench method\(s\) \['nope'\]"),
    ({"cov_targets": [0.1, 0.1]}, "cov_targets has 2 entries but there are 4 objectives"),
    ({"seeds": [1, 1]}, "distinct"),
])
def test_config_errors_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HabitsBenchConfig(**kwargs)


def _write_run(root, label, seed, test_points, val_points=None, k=2, cfg=None):
    """A run directory as the trainer writes it, with the given test (and val) evaluations, one per step."""
    run = root / f"K{k}" / f"{label}-seed{seed}"
    run.mkdir(parents=True)
    names = ["accuracy"] + [f"habit_{h['habit']}" for h in habits_objectives(k)[1:]]
    meta = {"objectives": [{"name": n, "maximize": True} for n in names], "config": {"max_completion_length": 64},
            "method": label, "seed": seed, "run_key": cfg.run_key()}
    (run / "run.json").write_text(json.dumps(meta))
    lines = [{"step": 3 * i, "split": "test", "metrics": dict(zip(names, p))} for i, p in enumerate(test_points)]
    lines += [{"step": 3 * i, "split": "val", "metrics": dict(zip(names, p))} for i, p in enumerate(val_points or [])]
    (run / "evals.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_summary_hv_igd_plus_and_sweep_equivalent_n(tmp_path):
    cfg = HabitsBenchConfig(objectives=2, seeds=[0, 1], methods=["uniform", "saw", "saw-ema", "sweep"],
                            sweep_presets=2, out=str(tmp_path), bootstrap=200)
    fronts = {  # per seed: method -> test points (accuracy, habit_numbered)
        0: {"uniform": [[0.2, 0.5], [0.3, 0.4]], "saw": [[0.4, 0.6]], "sweep-0": [[0.5, 0.2]], "sweep-1": [[0.1, 0.9]],
            "saw-ema": [[0.5, 0.5]]},
        1: {"uniform": [[0.3, 0.5]], "saw": [[0.3, 0.7]], "sweep-0": [[0.6, 0.1]], "sweep-1": [[0.2, 0.8]],
            "saw-ema": [[0.1, 0.1]]},
    }
    val_hv = {(0, "sweep-0"): [[0.5, 0.5]], (0, "sweep-1"): [[0.1, 0.1]], (1, "sweep-0"): [[0.2, 0.2]],
              (1, "sweep-1"): [[0.9, 0.9]]}
    for seed, runs in fronts.items():
        for label, points in runs.items():
            _write_run(tmp_path, label, seed, points, val_hv.get((seed, label)), cfg=cfg)
    summary = summarize_habits_bench(cfg)
    rows = {r["method"]: r for r in summary["table"]}
    # HV of a 2-D front with the origin as reference, by hand: uniform seed 0 = 0.2*0.5 + (0.3-0.2)*0.4
    assert rows["uniform"]["hv_mean"] == pytest.approx(np.mean([0.2 * 0.5 + 0.1 * 0.4, 0.3 * 0.5]))
    # IGD+ against the union front of the seed's runs, recomputed
    union0 = np.array([p for pts in fronts[0].values() for p in pts])
    union0 = union0[pareto.nondominated(union0)]
    union1 = np.array([p for pts in fronts[1].values() for p in pts])
    union1 = union1[pareto.nondominated(union1)]
    expected = np.mean([pareto.igd_plus(fronts[0]["saw"], union0), pareto.igd_plus(fronts[1]["saw"], union1)])
    assert rows["saw"]["igd_plus_mean"] == pytest.approx(expected)
    assert rows["saw"]["final"] == {"accuracy": pytest.approx(0.35), "habit_numbered": pytest.approx(0.65)}
    # sweep: seed 0 keeps sweep-0 on val (HV 0.1), seed 1 keeps sweep-1 (0.16); best of 1 is the pool mean
    sweep = summary["sweep"]
    hv = {(s, lab): float(np.prod(fronts[s][lab][0])) for s in (0, 1) for lab in ("sweep-0", "sweep-1")}
    assert sweep["curve"][1] == pytest.approx(np.mean([hv[0, "sweep-0"], hv[1, "sweep-1"]]))
    assert sweep["curve"][0] == pytest.approx(np.mean(list(hv.values())))
    saw_hv = np.mean([0.24, 0.21])
    assert sweep["equivalent_n"]["saw"]["n"] == (1 if saw_hv <= sweep["curve"][0] else
                                                 2 if saw_hv <= sweep["curve"][1] else None)
    best2 = {s: expected_best_of_n([val_hv[s, "sweep-0"][0][0] ** 2, val_hv[s, "sweep-1"][0][0] ** 2],
                                   [hv[s, "sweep-0"], hv[s, "sweep-1"]], 2) for s in (0, 1)}
    assert sweep["versus_best_of_n"]["saw"][2]["diff"] == pytest.approx(np.mean([0.24 - best2[0], 0.21 - best2[1]]))
    vs = {r["method"]: r for r in summary["versus_uniform"]}
    assert vs["saw"]["hv"]["diff"] == pytest.approx(np.mean([0.24 - 0.14, 0.21 - 0.15]))
    # SAW smoothed against SAW as published, paired by seed: (0.25 - 0.24, 0.01 - 0.21)
    (pair,) = summary["pairs"]
    assert (pair["method"], pair["reference"]) == ("saw-ema", "saw")
    assert pair["hv"]["diff"] == pytest.approx(np.mean([0.25 - 0.24, 0.01 - 0.21]))
    assert [pair["hv"][k] for k in ("wins", "ties", "losses")] == [1, 0, 1]
    assert summary["hv_per_seed"]["saw"] == {"0": pytest.approx(0.24), "1": pytest.approx(0.21)}
    md = habits_bench_markdown(summary)
    assert "sweep-equivalent N" in md and "| saw |" in md
    assert "| saw-ema | saw | -0.0950 [" in md


def test_a_concentrated_sweep_has_its_own_runs_and_summary_beside_the_dirichlet_1_sweep(tmp_path):
    cfg = HabitsBenchConfig(objectives=2, seeds=[0], methods=["uniform", "sweep"], sweep_presets=2, sweep_alpha=4.0,
                            out=str(tmp_path), bootstrap=100)
    labels = [lab for lab, _, _ in habits_methods(cfg)]
    assert labels[-2:] == ["sweep-a4-0", "sweep-a4-1"] and cfg.summary_name() == "bench_sweep-a4"
    assert HabitsBenchConfig().summary_name() == "bench" and "sweep-0" in [m[0] for m in habits_methods(
        HabitsBenchConfig())]
    _write_run(tmp_path, "uniform", 0, [[0.3, 0.5]], cfg=cfg)
    for label, points in (("sweep-a4-0", [[0.5, 0.2]]), ("sweep-a4-1", [[0.2, 0.8]]), ("sweep-0", [[0.9, 0.9]])):
        _write_run(tmp_path, label, 0, points, points, cfg=cfg)
    summary = summarize_habits_bench(cfg)
    # only the Dirichlet(4) presets form its sweep: val picks sweep-a4-1 (0.16 > 0.10); the Dirichlet(1) run is ignored
    assert summary["sweep"]["curve"] == [pytest.approx(0.13), pytest.approx(0.16)]
    assert summary["sweep"]["presets"] == [dict(zip(summary["metrics"], p[2]["weights"]))
                                           for p in habits_methods(cfg) if p[0].startswith("sweep-a4-")]
    assert "best of N Dirichlet(4) presets" in habits_bench_markdown(summary)
    with pytest.raises(ValueError, match="--sweep-alpha must be > 0"):
        HabitsBenchConfig(sweep_alpha=0.0)


def test_a_run_trained_with_other_settings_is_not_reused(tmp_path):
    from moalign.bench_habits import _complete

    cfg = HabitsBenchConfig(objectives=2, seeds=[0], out=str(tmp_path))
    _write_run(tmp_path, "uniform", 0, [[0.1, 0.1]], cfg=HabitsBenchConfig(objectives=2, steps=5))
    with pytest.raises(ValueError, match="trained with other settings"):
        _complete(tmp_path / "K2" / "uniform-seed0", cfg, needs_val=False)


def test_habit_saturation_curves_average_the_runs_training_rewards(tmp_path):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("saturation_curves", root / "benchmarks" / "saturation_curves.py")
    sat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sat)
    runs = []
    for seed, rewards in enumerate(([0.2, 0.4, 0.6], [0.4, 0.4, 1.0])):
        run = tmp_path / f"uniform-seed{seed}"
        run.mkdir()
        (run / "steps.jsonl").write_text("".join(
            json.dumps({"rewards": {"accuracy": r, "habit_gap": 1 - r}}) + "\n" for r in rewards))
        runs.append(run)
    curves = sat.habit_curves(runs)
    assert curves["objectives"]["accuracy"]["mean"] == pytest.approx([0.3, 0.4, 0.8])
    assert curves["objectives"]["habit_gap"]["max"] == pytest.approx([0.8, 0.6, 0.4])
    assert curves["objectives"]["accuracy"]["window_means"] == {"1-3": 0.5}


def test_three_objective_bench_config_refuses_the_habits_member():
    from moalign.bench import BenchConfig

    with pytest.raises(ValueError, match="--task habits --objectives K"):
        BenchConfig(task="habits")


def test_each_method_trains_with_its_settings(tmp_path, monkeypatch):
    """What _train_one hands the trainer: K objectives, the aggregation of GDPO/MO-GRPO, the LR control's scaled
    learning rate, val evaluations for sweep runs only."""
    import moalign.demo
    from moalign.bench_habits import _train_one

    calls = {}
    monkeypatch.setattr(moalign.demo, "train_synthetic_run", lambda **kw: calls.__setitem__(kw["label"], kw))
    cfg = HabitsBenchConfig(objectives=3, seeds=[0], sweep_presets=1, out=str(tmp_path))
    for label, strategy, params in habits_methods(cfg):
        _train_one(cfg, label, strategy, params, 0, tmp_path, tmp_path / label)
    assert calls["uniform"]["objectives"] == habits_objectives(3) and calls["uniform"]["learning_rate"] == 1e-4
    assert calls["uniform-lr1.5x"]["learning_rate"] == pytest.approx(1.5e-4)
    assert calls["mo-grpo"]["trainer_args"] == {"multi_objective_aggregation": "mo_grpo"}
    assert calls["gdpo"]["trainer_args"] == {"multi_objective_aggregation": "normalize_then_sum"}
    assert calls["uniform"]["trainer_args"] is None and calls["uniform"]["eval_temperature"] == 1.0
    assert len(calls["sweep-0"]["callbacks"]) == 1 and not calls["saw"]["callbacks"]


def test_cli_sweep_alpha_is_checked_before_anything_trains(tmp_path):
    from typer.testing import CliRunner

    from moalign.cli import app

    other = CliRunner().invoke(app, ["bench", "--sweep-alpha", "4", "--out", str(tmp_path / "a")])
    assert other.exit_code != 0 and "--sweep-alpha apply to --task habits only" in other.output
    bad = CliRunner().invoke(app, ["bench", "--task", "habits", "--sweep-alpha", "0", "--out", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "--sweep-alpha must be > 0" in bad.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

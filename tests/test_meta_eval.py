"""Meta-policy run directories, ``moalign generate`` / ``meta-eval`` and the front indicators."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from _meta_helpers import PROMPTS, random_experts
from moalign.cli import app
from moalign.meta import ExpertsConfig, build, load_experts, load_experts_config
from moalign.meta.evaluate import front_indicators, meta_eval, sparsity
from moalign.meta.experts import save_experts


@pytest.fixture(scope="module")
def experts_run(tmp_path_factory):
    ex = random_experts(scale=0.3)
    run = save_experts(ex, tmp_path_factory.mktemp("experts"), "warmstart", training_steps=12)
    return ex, run


def test_saved_experts_reload_to_the_same_policy(experts_run):
    ex, run = experts_run
    again = load_experts(run)
    assert again.names == ex.names and again.manifest["training_steps"] == 12
    a = build("logit", ex).generate(PROMPTS, [0.5, 0.25, 0.25], max_new_tokens=12)
    b = build("logit", again).generate(PROMPTS, [0.5, 0.25, 0.25], max_new_tokens=12)
    assert a.token_ids == b.token_ids


def _fake_single_policy_run(path):
    path.mkdir()
    objectives = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
                  {"name": "conciseness", "maximize": True, "eval_metric": "length"},
                  {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]
    (path / "run.json").write_text(json.dumps({"objectives": objectives, "config": {}}))
    evals = [{"step": s, "split": "test", "metrics": {"accuracy": a, "length": n, "clarity": c}}
             for s, a, n, c in [(0, 0.5, 10.0, 0.0), (5, 0.6, 40.0, 1.0)]]
    (path / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    (path / "steps.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 6)))
    return path


def test_meta_eval_end_to_end(experts_run, tmp_path):
    _, run = experts_run
    baseline = _fake_single_policy_run(tmp_path / "fixed-balanced")
    path = meta_eval(run, aggregations=("parameter", "hidden"), grid_step=0.5, rows=3, max_new_tokens=12,
                     baselines=(baseline,), gate_steps=2, out=tmp_path / "out", progress=False)
    summary = json.loads(path.read_text())
    methods = summary["methods"]
    assert set(methods) == {"base", "parameter", "hidden", "gate:parameter", "fixed-balanced"}
    grid = np.asarray(methods["parameter"]["preferences"])
    assert len(grid) == 6
    # one-hot preferences run the single expert, whatever the aggregation
    for i, p in enumerate(grid):
        if np.isclose(p.max(), 1.0):
            assert methods["parameter"]["points"][i] == methods["hidden"]["points"][i]
    # the single-policy run: length 10 and 40 tokens -> conciseness 1 - 10/12 and 1 - min(40, 12)/12
    np.testing.assert_allclose(methods["fixed-balanced"]["points"], [[0.5, 1 / 6, 0.0], [0.6, 0.0, 1.0]])
    assert methods["fixed-balanced"]["training_steps"] == 5 and methods["hidden"]["training_steps"] == 12
    for m in methods.values():
        for key in ("hypervolume", "igd_plus", "expected_utility", "max_utility_loss", "cardinality"):
            assert np.isfinite(m[key]), key
    assert methods["hidden"]["ms_per_token"] > 0 and methods["hidden"]["kv_cache_bytes_per_row"] > 0
    log = [json.loads(line) for line in (tmp_path / "out" / "gate.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["regret"] >= 0 for r in log)
    assert (run / "gate.json").is_file() and (tmp_path / "out" / "fronts.png").is_file()
    # `moalign generate --gate` serves the trained gate
    res = CliRunner().invoke(app, ["generate", "--experts", str(run), "--preference", "0.2,0.3,0.5", "--gate",
                                   "--prompt", "1+2=?", "--max-new-tokens", "6", "--aggregation", "parameter"])
    assert res.exit_code == 0, res.output
    assert "mixture" in res.output


def test_meta_eval_samples_at_a_temperature_from_seeded_streams(experts_run, tmp_path):
    """temperature > 0 (the habits bench's T = 1 test evaluations): sampled, reproducible from ``seed``, recorded."""
    _, run = experts_run

    def sweep(name, **kw):
        path = meta_eval(run, aggregations=("logit",), grid_step=0.5, rows=3, max_new_tokens=12, batch_size=2,
                         out=tmp_path / name, progress=False, **kw)
        summary = json.loads(path.read_text())
        lines = (tmp_path / name / "sweep.jsonl").read_text().splitlines()
        return summary, [json.loads(x)["metrics"] for x in lines]

    greedy, greedy_rows = sweep("greedy", centroid=True)
    sampled, sampled_rows = sweep("t1", temperature=1.0, seed=7)
    again, again_rows = sweep("t1-again", temperature=1.0, seed=7)
    assert (greedy["temperature"], greedy["seed"]) == (0.0, None) and (sampled["temperature"], sampled["seed"]) == (
        1.0, 7)
    assert again_rows == sampled_rows and again["methods"]["base"] == sampled["methods"]["base"]
    assert sampled_rows != greedy_rows[:6]  # sampling changed some completion
    # centroid: the uniform preference after the 0.5 grid's six
    assert len(greedy_rows) == 7 and greedy["centroid"] and greedy["methods"]["logit"]["preferences"][-1] == [1 / 3] * 3
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        meta_eval(run, rows=1, temperature=-1.0, out=tmp_path / "bad", progress=False)
    # `moalign meta-eval` passes the same settings through: the same sampled rows, with the centroid after them
    res = CliRunner().invoke(app, ["meta-eval", str(run), "--aggregation", "logit", "--rows", "3", "--max-new-tokens",
                                   "12", "--temperature", "1", "--seed", "7", "--centroid", "--out",
                                   str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    cli_rows = [json.loads(x)["metrics"] for x in (tmp_path / "cli" / "sweep.jsonl").read_text().splitlines()]
    assert (cli["temperature"], cli["seed"], cli["centroid"]) == (1.0, 7, True) and len(cli_rows) == 7
    bad = CliRunner().invoke(app, ["meta-eval", str(run), "--temperature", "-1", "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "temperature must be >= 0" in bad.output


def test_indicators_against_hand_computation():
    ref = np.array([[1.0, 0.0], [0.6, 0.6], [0.0, 1.0]])
    pts = np.array([[0.8, 0.1], [0.2, 0.7], [0.1, 0.1]])  # the last point is dominated
    grid = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    got = front_indicators(pts, ref, grid)
    front = pts[:2]
    # IGD+ (maximisation): mean over reference points of min_a sqrt(Σ max(z - a, 0)^2)
    igd = np.mean([min(np.sqrt(np.sum(np.maximum(z - a, 0) ** 2)) for a in front) for z in ref])
    assert got["igd_plus"] == pytest.approx(igd)
    # HV of two boxes [0,.8]x[0,.1] and [0,.2]x[0,.7] minus their overlap [0,.2]x[0,.1]
    assert got["hypervolume"] == pytest.approx(0.08 + 0.14 - 0.02)
    assert got["expected_utility"] == pytest.approx(np.mean([0.8, 0.45, 0.7]))
    assert got["max_utility_loss"] == pytest.approx(max(1 - 0.8, 0.6 - 0.45, 1 - 0.7))
    assert got["cardinality"] == 2
    assert sparsity(front) == pytest.approx(((0.8 - 0.2) ** 2 + (0.7 - 0.1) ** 2) / 1)


def test_cli_generate_writes_completions(experts_run, tmp_path):
    _, run = experts_run
    out = tmp_path / "gen.jsonl"
    res = CliRunner().invoke(app, ["generate", "--experts", str(run), "--preference", "0.5,0.5,0",
                                   "--aggregation", "logit", "--prompt", "1+2=?", "--max-new-tokens", "8",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    line = json.loads(out.read_text())
    assert line["mixture"] == [0.5, 0.5, 0.0] and line["preference"] == [0.5, 0.5, 0.0]
    bad = CliRunner().invoke(app, ["generate", "--experts", str(run), "--preference", "0.5,0.5"])
    assert bad.exit_code == 2 and "preference has 2 entries" in " ".join(bad.output.split())
    missing = CliRunner().invoke(app, ["generate", "--experts", str(tmp_path), "--preference", "1,0,0"])
    assert missing.exit_code == 2 and "is not an experts run" in " ".join(missing.output.split())


def test_experts_config_checks(tmp_path):
    cfg = tmp_path / "experts.yaml"
    cfg.write_text("experts:\n  - {name: a, weights: [1.0, 0.0]}\n")
    with pytest.raises(ValueError, match="expert 'a' has 2 weights but objectives has 3"):
        load_experts_config(cfg)
    cfg.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match=r"unknown experts config key\(s\) \['stepz'\]"):
        load_experts_config(cfg)
    with pytest.raises(ValueError, match="expert names must be unique"):
        ExpertsConfig(experts=[{"name": "a", "weights": [1, 0, 0]}, {"name": "a", "weights": [0, 1, 0]}])
    assert ExpertsConfig(emphasis=0.5).experts[2].weights == [0.25, 0.25, 0.5]


@pytest.mark.slow
def test_experts_train_cli_quick(tmp_path):
    """`moalign experts train --quick`: MOGRPOTrainer trains each LoRA expert; the run directory is complete."""
    cfg = tmp_path / "experts.yaml"
    cfg.write_text("experts:\n  - {name: accuracy, weights: [0.6, 0.2, 0.2]}\n"
                   "  - {name: brevity, weights: [0.2, 0.6, 0.2], strategy: fixed}\n"
                   "eval_every: 0\n")
    res = CliRunner().invoke(app, ["experts", "train", str(cfg), "--quick", "--steps", "1", "--out",
                                   str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "run" / "experts.json").read_text())
    assert [e["name"] for e in manifest["experts"]] == ["accuracy", "brevity"]
    assert manifest["training_steps"] == 2
    ex = load_experts(tmp_path / "run")
    assert ex.names == ["accuracy", "brevity"]
    assert ex.mixture_for([1.0, 0.0, 0.0]).tolist() == [1.0, 0.0]

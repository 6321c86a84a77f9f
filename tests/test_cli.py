"""The `moalign` command end to end: hv, train on Math500 with the tiny model, config errors, eval, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moalign.cli import app
from moalign.config import load_config, parse_overrides
from moalign.rundir import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_hv_command_on_csv(tmp_path):
    result = runner.invoke(app, ["hv", str(ROOT / "examples" / "front.csv"), "--columns", "accuracy,length,clarity",
                                 "--ref", "0,2048,0", "--minimize", "length"])
    assert result.exit_code == 0, result.output
    # front = rows 3 and 4; HV by inclusion-exclusion: .49*1593*.40 + .55*1518*.61 - .49*1518*.40 = 523.989
    assert "hypervolume: 523.989" in result.output and "front size: 2" in result.output


def test_hv_command_json_and_errors(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps([[1, 2], [2, 1], [0.5, 0.5]]))
    result = runner.invoke(app, ["hv", str(f), "--ref", "0,0"])
    assert result.exit_code == 0 and "hypervolume: 3" in result.output and "front size: 2" in result.output
    bad = runner.invoke(app, ["hv", str(f), "--ref", "0,0,0"])
    assert bad.exit_code == 2 and "--ref has 3 values but there are 2 columns" in bad.output
    bad = runner.invoke(app, ["hv", str(f), "--ref", "0,0", "--minimize", "speed"])
    assert bad.exit_code == 2 and "unknown column" in bad.output


def test_parse_overrides():
    assert parse_overrides(["--lr", "1e-6", "--flag", "--strategy_params.mu=0.1", "--objectives", "[a, b]"]) == {
        "lr": 1e-6, "flag": True, "strategy_params": {"mu": 0.1}, "objectives": ["a", "b"]}


def test_config_unknown_key_suggests(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny\nlearning_rat: 1e-6\n")
    with pytest.raises(ValueError, match="'learning_rat' \\(did you mean learning_rate"):
        load_config(cfg)
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "learning_rat" in result.output


def test_config_yaml_and_flags(tmp_path):
    data, model, train = load_config(ROOT / "examples" / "math500_tiny_fixed.yaml",
                                     ["--strategy_params", "{preset: accuracy_focused}", "--max_steps", "3",
                                      "--output_dir", str(tmp_path)])
    assert model.model_name_or_path == "tiny" and data.model_kwargs == {"num_hidden_layers": 2}
    assert train.strategy_params == {"preset": "accuracy_focused"} and train.max_steps == 3


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                                         if not p.name.startswith("experts_")))  # experts_*: `moalign experts train`
def test_every_training_example_loads(path):
    """A typo or a YAML trap (``save_strategy: no``) in a shipped example fails here, not on a user's machine."""
    data, model, train = load_config(ROOT / "examples" / path)
    assert train.strategy and train.objectives and model.model_name_or_path


def test_train_eval_report_on_math500(tmp_path):
    """The example as written: ``dataset: math500`` is the split shipped inside the package."""
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", str(ROOT / "examples" / "math500_tiny_fixed.yaml"),
        "--run_dir", str(run), "--output_dir", str(run / "checkpoints"), "--max_steps", "2",
        "--max_completion_length", "16", "--mo_eval_size", "4", "--mo_eval_steps", "2",
    ])
    assert result.exit_code == 0, result.output
    assert "run directory:" in result.output and f"evaluations: {run / 'evals.jsonl'}" in result.output
    assert f"next: moalign report {run}" in result.output
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2]
    assert all(set(s["weights"]) == {"accuracy", "conciseness", "clarity"} for s in steps)
    assert all(set(s["covariance"]) == {"accuracy", "conciseness", "clarity"} for s in steps)
    assert [e["step"] for e in read_jsonl(run / "evals.jsonl")] == [0, 2]
    assert (run / "checkpoints" / "checkpoint-2" / "moalign_state.json").exists()
    meta = json.loads((run / "run.json").read_text())
    assert meta["data"]["dataset"] == "math500"

    result = runner.invoke(app, ["eval", str(run), "--split", "test", "--max-rows", "4", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    evals = read_jsonl(run / "evals.jsonl")
    assert [(e["step"], e["split"]) for e in evals if e["split"] == "test"] == [(0, "test"), (2, "test")]
    assert {"accuracy", "length", "clarity", "conciseness"} <= set(evals[-1]["metrics"])

    result = runner.invoke(app, ["report", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    report = run / "report"
    assert {"index.html", "fronts.png", "weights.png", "summary.json"} <= {p.name for p in report.iterdir()}
    summary = json.loads((report / "summary.json").read_text())
    assert summary["runs"]["run"]["steps"]

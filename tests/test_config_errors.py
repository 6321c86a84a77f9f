"""Configuration errors that need no model come first, and a machine without a GPU trains on CPU by itself.

* moalign's own checks (strategy, objectives, estimator) run before TRL's, so a misspelt name is reported even when
  TRL would also reject the device settings;
* a missing dataset path, missing columns, an unknown split or a missing checkpoint fail before any model is built or
  anything is written;
* without an accelerator, ``load_config`` sets ``use_cpu: true`` (and logs it) unless the config chose, and the
  precision rule (tests/test_precision.py) trains in float32.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import transformers.utils
from typer.testing import CliRunner

import moalign.train as train_module
from moalign.cli import app
from moalign.config import load_config
from moalign.trainer import MOGRPOConfig

runner = CliRunner()


@pytest.fixture
def no_gpu(monkeypatch):
    """Behave as a machine without any accelerator, whatever this one has."""
    monkeypatch.setattr(transformers.utils, "is_torch_bf16_gpu_available", lambda: False)
    monkeypatch.setattr(transformers.utils, "is_torch_xla_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _write(path, text):
    path.write_text(text)
    return path


def test_misspelt_strategy_or_objective_is_reported_before_trls_checks(tmp_path):
    # TRL's GRPOConfig defaults to bf16=True: on a machine without a bf16 GPU, TrainingArguments rejects that
    # ("Your setup doesn't support bf16/gpu"). moalign's name checks must come first.
    cfg = _write(tmp_path / "c.yaml", f"model: tiny\ndataset: synthetic\nstrategy: hypervolme\noutput_dir: {tmp_path}")
    with pytest.raises(ValueError, match="hypervolme") as info:
        load_config(cfg)
    assert "hypervolume" in str(info.value) and "bf16" not in str(info.value)
    with pytest.raises(ValueError, match="hypervolme"):
        MOGRPOConfig(output_dir=str(tmp_path), strategy="hypervolme", bf16=True, use_cpu=False)
    with pytest.raises(ValueError, match="accurcy"):
        MOGRPOConfig(output_dir=str(tmp_path), objectives=["accurcy"], bf16=True, use_cpu=False)
    with pytest.raises(ValueError, match="advantage_estimator='rlo'"):
        MOGRPOConfig(output_dir=str(tmp_path), advantage_estimator="rlo", bf16=True, use_cpu=False)


def test_scale_rewards_bool_alias_still_resolved(tmp_path):
    args = MOGRPOConfig(output_dir=str(tmp_path), scale_rewards=False, use_cpu=True, bf16=False)
    assert args.scale_rewards == "none"
    args = MOGRPOConfig(output_dir=str(tmp_path), scale_rewards=True, use_cpu=True, bf16=False)
    assert args.scale_rewards == "group"


def test_without_gpu_trains_on_cpu_in_float32_and_says_so(tmp_path, no_gpu, caplog):
    cfg = _write(tmp_path / "c.yaml", f"model: tiny\ndataset: synthetic\noutput_dir: {tmp_path}\n")
    with caplog.at_level(logging.INFO, logger="moalign.config"):
        _, _, args = load_config(cfg)
    assert args.use_cpu is True and args.bf16 is False and args.precision.dtype == "float32"
    assert "training on CPU (use_cpu: true)" in caplog.text

    # The user's own choices are kept, and nothing is logged when there is nothing to choose.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="moalign.config"):
        _, _, args = load_config(cfg, ["--use_cpu", "true", "--bf16", "false"])
    assert args.use_cpu is True and args.bf16 is False and "training on CPU" not in caplog.text
    _, _, args = load_config(cfg, ["--bf16", "false"])
    assert args.use_cpu is True and args.bf16 is False
    _, _, args = load_config(cfg, ["--use_cpu", "true"])
    assert args.use_cpu is True and args.bf16 is False
    _, _, args = load_config(cfg, ["--use_cpu", "true", "--bf16", "true"])
    assert args.bf16 is True and args.precision.set_by_user


def test_with_an_accelerator_use_cpu_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    from moalign.config import _device_defaults

    kwargs = {"output_dir": str(tmp_path)}
    _device_defaults(kwargs)
    assert kwargs == {"output_dir": str(tmp_path)}


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if a model is built: every error below must come before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the configuration error was found")

    monkeypatch.setattr(train_module, "build_model_and_tokenizer", refuse)


def _train_cli(tmp_path, *extra):
    run = tmp_path / "run"
    cfg = _write(tmp_path / "c.yaml", f"model: tiny\nrun_dir: {run}\noutput_dir: {run / 'checkpoints'}\nmax_steps: 1\n"
                                      "report_to: none\n")
    result = runner.invoke(app, ["train", str(cfg), *extra])
    result.text = " ".join(result.output.split())  # rich wraps long lines
    return result, run


def test_missing_dataset_path_fails_before_the_model(tmp_path, no_model):
    result, run = _train_cli(tmp_path, "--dataset", str(tmp_path / "no_such_dir"))
    assert result.exit_code == 2, result.output
    assert "no_such_dir does not exist" in result.text
    assert not run.exists()  # no initial_model, no run directory


def test_missing_columns_fail_before_the_model(tmp_path, no_model):
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"{i}+1?", "label": str(i + 1)}) for i in range(10)) + "\n")
    result, run = _train_cli(tmp_path, "--dataset", str(data))
    assert result.exit_code == 2, result.output
    assert "lacks column(s)" in result.text and "problem_column" in result.text
    assert not run.exists()


def test_unknown_split_fails_before_the_model(tmp_path, no_model):
    result, run = _train_cli(tmp_path, "--dataset", "math500", "--dataset_train_split", "training")
    assert result.exit_code == 2, result.output
    assert "dataset_train_split='training' is not a split of 'math500'" in result.text
    result, run = _train_cli(tmp_path, "--dataset", "math500", "--dataset_eval_split", "dev")
    assert result.exit_code == 2 and "dataset_eval_split='dev'" in result.text
    assert not run.exists()


def test_missing_checkpoint_fails_before_the_model(tmp_path, no_model):
    result, run = _train_cli(tmp_path, "--dataset", "synthetic", "--resume_from_checkpoint", str(tmp_path / "ckpt"))
    assert result.exit_code == 2 and "is not a directory" in result.text, result.output
    assert not run.exists()


def test_bad_strategy_parameter_value_fails_before_the_model(tmp_path, no_model):
    """The config checks names; the engine, built right after the data and before the model, checks values."""
    result, run = _train_cli(tmp_path, "--dataset", "synthetic", "--strategy_params", "{weights: [0.5, 0.5]}")
    assert result.exit_code == 2, result.output
    assert "strategy_params.weights has 2 entries but there are 3 objectives" in result.text
    assert not run.exists()


@pytest.mark.parametrize("text", ["save_strategy: no", "eval_strategy: no", "logging_strategy: off"])
def test_unquoted_no_in_yaml_names_the_quoting_fix(tmp_path, text):
    # YAML 1.1 reads `no` as false; TRL would say "False is not a valid SaveStrategy".
    cfg = _write(tmp_path / "c.yaml", f"model: tiny\ndataset: synthetic\noutput_dir: {tmp_path}\n{text}\n")
    key = text.split(":")[0]
    with pytest.raises(ValueError, match=f'{key} must be a string.*quote it: {key}: "no"'):
        load_config(cfg)
    # on the command line the word stays a string, as in TRL's own `--save_strategy no`
    _, _, args = load_config(_write(tmp_path / "d.yaml", f"model: tiny\noutput_dir: {tmp_path}\n"), [f"--{key}", "no"])
    assert getattr(args, key) == "no"
    _, _, args = load_config(_write(tmp_path / "e.yaml", f"model: tiny\noutput_dir: {tmp_path}\n{key}: 'no'\n"))
    assert getattr(args, key) == "no"

"""Reliability: bad input, faults and resume (docs/RELIABILITY.md lists every fault injected and what the user sees).

A multi-day run that dies at hour 20, or a reward function that throws on one odd completion, must cost the user
nothing but the time since the last checkpoint. Sections:

1. config validation (before any model is loaded)      5. atomic run files and state-file errors
2. reward faults (per sample, whole batch, bad count)  6. untrusted input (no code execution, bounded checking)
3. numerical faults (strategies and trainer)           7. load (slow): memory and in-memory logs stay bounded
4. kill -9 and resume (subprocess)

Everything runs on the tiny random-init CPU model; settings shrunk for speed carry a comment. Every test is expected to
pass (none is marked xfail); faults moalign does not handle yet are listed in docs/RELIABILITY.md, "Known gaps".
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import pickle
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset
from typer.testing import CliRunner

import _reliability_helpers as helpers
from moalign import pareto, rundir, weighting
from moalign.cli import app
from moalign.config import load_config
from moalign.objectives import OBJECTIVES, Accuracy, Clarity, Conciseness, register_objective
from moalign.rl.engine import StepEngine
from moalign.rl.gram import GramProbe
from moalign.rundir import STATE_FILE, append_jsonl, atomic_write_json, read_jsonl, read_state_file, truncate_jsonl
from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
from moalign.weighting.base import StepStats

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "moalign"
NAMES = ["accuracy", "conciseness", "clarity"]
GRAM_STRATEGIES = ["gradient", "mgda", "nash_mtl", "gradnorm"]
runner = CliRunner()

# Settings of every `moalign train` config written by these tests: the tiny model on the synthetic task.
BASE_CONFIG = {
    "model": "tiny",
    "model_kwargs": {"num_hidden_layers": 2},  # 2 layers: a CPU step well under a second
    "dataset": "synthetic",
    "dataset_kwargs": {"n_train": 64, "n_val": 8, "n_test": 8},  # small splits build instantly
    "dataset_eval_split": "val",
    "objectives": NAMES,
    "strategy": "ctwa",  # history-dependent weights (EMA of covariances): resume must restore them exactly
    "max_steps": 2,
    "per_device_train_batch_size": 8,  # 2 prompts x 4 generations: the smallest batch with real groups
    "num_generations": 4,
    "max_completion_length": 12,  # short completions keep steps fast
    "learning_rate": 1.0e-2,  # large so that the tiny model's outputs (and CTWA's statistics) move every step
    "logging_steps": 1,
    "save_steps": 2,
    "mo_eval_steps": 1,  # evaluate every step so evals.jsonl has lines past each checkpoint
    "mo_eval_size": 4,  # 4 validation rows: an evaluation costs one small greedy batch
    "per_device_eval_batch_size": 4,
    "use_cpu": True,
    "report_to": "none",
    "seed": 0,
    "disable_tqdm": True,
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on 2 shared cores, 2 OpenMP threads competing with other processes make a tiny-model step
    up to 30x slower (measured 2.1 s vs 0.06 s per step); subprocesses get OMP_NUM_THREADS=1 (start_train)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_config(path: Path, run_dir: Path, **overrides) -> Path:
    cfg = {**BASE_CONFIG, "run_dir": str(run_dir), "output_dir": str(run_dir / "checkpoints"), **overrides}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _args(tmp_path, **kw) -> MOGRPOConfig:
    # objectives named explicitly, so that the engine built from the config checks every strategy parameter against
    # them.
    base = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, num_generations=4,
                max_completion_length=8, max_steps=2, learning_rate=1e-2, report_to="none", logging_steps=1,
                use_cpu=True, seed=0, save_strategy="no", disable_tqdm=True, objectives=list(NAMES))
    base.update(kw)
    return MOGRPOConfig(**base)


def _dataset(n=16, **extra_columns) -> Dataset:
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": [{"role": "user", "content": f"{a}+{b}=?"}], "answer": str(a + b)})
    for key, values in extra_columns.items():
        for row, v in zip(rows, values):
            row[key] = v
    return Dataset.from_list(rows)


def _trainer(tmp_path, objectives=None, dataset=None, **kw) -> MOGRPOTrainer:
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    return MOGRPOTrainer(model=model, args=_args(tmp_path, **kw), train_dataset=dataset or _dataset(),
                         processing_class=tok, objectives=objectives)


def _register(name, factory):
    if name not in OBJECTIVES:
        register_objective(name)(factory)


def _records(caplog, pattern: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(pattern, r.getMessage())]


# ======================================================================================================================
# 1. Config validation: rejected at MOGRPOConfig(...) / StepEngine construction, before `moalign train` loads a model
# ======================================================================================================================
# (test_trainer.py covers: weights of the wrong length, negative, all zero, unknown strategy 'magic', estimator 'ppo',
# unknown objective 'beauty', unknown strategy parameter; test_cli.py: unknown YAML key with a suggestion.)
CONFIG_ERRORS = [
    ({"objectives": []}, r"objectives is empty; name at least one"),
    ({"objectives": ["accuracy", "clarity", "accuracy"]}, r"objectives has duplicates"),
    ({"strategy_params": {"weights": [float("nan"), 1, 1]}}, r"strategy_params\.weights must be finite"),
    ({"strategy_params": {"weights": "heavy"}}, r"strategy_params\.weights must be a list of 3 numbers"),
    ({"strategy_params": {"preset": "fast"}}, r"unknown preset 'fast'.*valid presets: accuracy_focused"),
    ({"strategy_params": {"weights": [1, 1, 1], "preset": "balanced"}}, r"either `weights` or `preset`"),
    ({"strategy_params": [0.5, 0.25, 0.25]}, r"strategy_params must be a mapping, but got list"),
    ({"strategy": "hypervolume", "strategy_params": {"weights": [1, 1]}},
     r"strategy_params\.weights has 2 entries but there are 3 objectives"),
    ({"strategy": "tchebycheff", "strategy_params": {"weights": [-1, 1, 1]}},
     r"strategy_params\.weights must be non-neg"),
    # strategy parameters out of range
    ({"strategy": "gradient", "strategy_params": {"mu": 0}},
     r"strategy_params\.mu must be a positive number, but got 0"),
    ({"strategy": "gradient", "strategy_params": {"mu": -1e-5}}, r"strategy_params\.mu must be a positive number"),
    ({"strategy": "gradient", "strategy_params": {"mu": float("inf")}}, r"strategy_params\.mu must be a positive"),
    ({"strategy": "gradient", "strategy_params": {"mu": "1e-5"}}, r"strategy_params\.mu must be a positive number"),
    ({"strategy": "gradient", "strategy_params": {"initial_weights": [0, 0.5, 0.5]}},
     r"strategy_params\.initial_weights must be positive"),
    ({"strategy": "gradient", "strategy_params": {"max_weight_ratio": 1.0}}, r"strategy_params\.max_weight_ratio"),
    ({"strategy": "gradient", "strategy_params": {"eta": 1.0}},
     r"strategy 'gradient' got unknown parameter.*accepts: mu"),
    ({"strategy": "hypervolume", "strategy_params": {"activation": "relu"}},
     r"strategy_params\.activation must be one of tanh, tanh3, sigmoid_plus_one, two_sigmoid, but got 'relu'"),
    ({"strategy": "hypervolume", "strategy_params": {"point_source": "test"}}, r"strategy_params\.point_source"),
    ({"strategy": "hypervolume", "strategy_params": {"apply_to": "loss"}}, r"strategy_params\.apply_to"),
    ({"strategy": "hypervolume", "strategy_params": {"hv_eval_every": 0}}, r"strategy_params\.hv_eval_every"),
    ({"strategy": "hypervolume", "strategy_params": {"ref_point": [0, 0]}}, r"strategy_params\.ref_point has 2 entries but objectives has 3"),
    ({"strategy": "ctwa", "strategy_params": {"cov_targets": [0.15, 0.08]}},
     r"strategy_params\.cov_targets has 2 entries but objectives has 3 \(accuracy, conciseness, clarity\)"),
    ({"strategy": "ctwa", "strategy_params": {"ema_rate": 1.5}}, r"strategy_params\.ema_rate must be a number in \(0"),
    ({"strategy": "ctwa", "strategy_params": {"step_size": 0}}, r"strategy_params\.step_size"),
    ({"strategy": "ctwa", "strategy_params": {"ceilings": [1.0]}}, r"strategy_params\.ceilings has 1 entries"),
    ({"strategy": "ctwa", "objectives": ["accuracy", "clarity"]}, r"strategy_params\.cov_targets is required with 2"),
    ({"strategy": "lagrangian", "strategy_params": {"primary": "speed"}}, r"strategy_params\.primary 'speed'"),
    ({"strategy": "lagrangian", "strategy_params": {"targets": [0.9]}}, r"strategy_params\.targets has 1 entries"),
    ({"strategy": "lagrangian", "strategy_params": {"dual_lr": -0.1}}, r"strategy_params\.dual_lr"),
    ({"strategy": "mgda", "strategy_params": {"solver": "qp"}}, r"strategy_params\.solver must be 'exact' or"),
    ({"strategy": "nash_mtl", "strategy_params": {"ridge": 2}}, r"strategy_params\.ridge must be a number in \[0, 1\)"),
    ({"strategy": "gradnorm", "strategy_params": {"lr": 0}}, r"strategy_params\.lr must be a positive number"),
    ({"strategy": "gradnorm", "strategy_params": {"alpha": -1}}, r"strategy_params\.alpha must be a non-negative number"),
    ({"strategy": "tchebycheff", "strategy_params": {"mu": 0}}, r"strategy_params\.mu must be a positive number"),
    ({"strategy": "famo", "strategy_params": {"optimizer": "rmsprop"}}, r"strategy_params\.optimizer"),
    ({"strategy": "pama", "strategy_params": {"noon": "yes"}}, r"strategy_params\.noon must be true or false"),
    # trainer-level settings
    ({"mo_eval_steps": -1}, r"mo_eval_steps must be >= 0"),
    ({"interference_window": 0}, r"interference_window must be >= 1"),
    ({"strategy": None}, r"unknown weighting strategy None; valid names: .*ctwa"),
]
# A strategy that needs per-objective gradients with a setting that prevents them.
CONFIG_ERRORS += [({"strategy": s, "use_liger_kernel": True}, rf"strategy '{s}' needs per-objective gradients.*"
                   r"set use_liger_kernel: false") for s in GRAM_STRATEGIES]
CONFIG_ERRORS += [({"strategy": s, "loss_type": lt}, rf"strategy '{s}' needs per-objective policy-gradient losses, "
                   rf"defined for loss_type grpo/bnpo/dr_grpo/dapo; got loss_type='{lt}'")
                  for s, lt in zip(GRAM_STRATEGIES, ["cispo", "sapo", "luspo", "vespo"])]


@pytest.mark.parametrize(("kwargs", "message"), CONFIG_ERRORS, ids=[f"c{i}" for i in range(len(CONFIG_ERRORS))])
def test_bad_config_is_rejected_at_construction_naming_the_field(tmp_path, kwargs, message):
    # MOGRPOConfig checks names and settings; strategy parameter values are checked when the step engine builds the
    # strategy (once; `moalign train` does it before loading the model, MOGRPOTrainer at construction).
    with pytest.raises(ValueError, match=message):
        args = _args(tmp_path, **kwargs)
        StepEngine.from_config(args, args.objectives)


def test_gram_strategy_with_supported_settings_is_accepted(tmp_path):
    for s in GRAM_STRATEGIES:  # the same strategies pass with loss types that define per-objective losses
        for lt in ("grpo", "bnpo", "dr_grpo", "dapo"):
            assert _args(tmp_path, strategy=s, loss_type=lt).strategy == s


@pytest.fixture
def no_model_load(monkeypatch):
    """Makes `moalign train` fail loudly if it gets as far as loading a model; returns the list of load attempts."""
    import moalign.train

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("test: a model was loaded although the config is invalid")

    monkeypatch.setattr(moalign.train, "build_model_and_tokenizer", refuse)
    return calls


CLI_CONFIG_ERRORS = [
    ({"strategy": "gradient", "strategy_params": {"mu": 0}}, "strategy_params.mu must be a positive number"),
    ({"strategy": "hypervolume", "strategy_params": {"activation": "relu"}}, "strategy_params.activation must be one"),
    ({"strategy": "ctwa", "strategy_params": {"cov_targets": [0.1, 0.1]}}, "strategy_params.cov_targets has 2 entries"),
    ({"strategy": "mgda", "use_liger_kernel": True}, "set use_liger_kernel: false"),
    ({"strategy": "nash_mtl", "loss_type": "cispo"}, "got loss_type='cispo'"),
    ({"strategy": "fixed", "strategy_params": {"weights": [0.5, -0.5, 1]}}, "strategy_params.weights must be non-neg"),
    ({"objectives": ["accuracy", "concision"]}, "objectives: unknown name(s) ['concision']"),
    ({"advantage_estimator": "gae"}, "advantage_estimator='gae' is unknown"),
]


@pytest.mark.parametrize(("overrides", "message"), CLI_CONFIG_ERRORS,
                         ids=[f"y{i}" for i in range(len(CLI_CONFIG_ERRORS))])
def test_moalign_train_rejects_bad_yaml_before_loading_a_model(tmp_path, no_model_load, overrides, message):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", **overrides)
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output  # rich wraps long lines
    assert no_model_load == []
    assert not (tmp_path / "run").exists()  # nothing written either


@pytest.mark.parametrize(("text", "message"), [
    ("- model: tiny\n- strategy: fixed\n", "must hold a YAML mapping of settings, but holds a list"),
    ("tiny\n", "must hold a YAML mapping of settings, but holds a str"),
    ("use_cpu: true\nstrategy: fixed\n", "config has no model: set `model: tiny`"),
    ("model: tiny\nuse_cpu: true\nenv: [A, B]\n", "env: must be a mapping of environment variables"),
    ("model: tiny\nuse_cpu: true\nstrategy_param: {mu: 1}\n", "'strategy_param' (did you mean strategy_params"),
])
def test_yaml_file_shape_errors(tmp_path, no_model_load, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError) as err:
        load_config(cfg)
    assert message in str(err.value)
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert no_model_load == []


def test_missing_config_file_is_a_clear_error(tmp_path, no_model_load):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split()) and no_model_load == []


def test_malformed_yaml_is_a_clear_error(tmp_path, no_model_load):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny\nstrategy: [fixed\n")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "c.yaml" in result.output, (result.exit_code, result.output)


def test_wrongly_typed_value_is_rejected_before_loading_a_model(tmp_path, no_model_load):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", learning_rate="abc")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "learning_rate" in result.output, result.output
    assert no_model_load == []


def test_objectives_given_as_a_string_says_a_list_is_expected(tmp_path):
    with pytest.raises(ValueError, match=r"objectives must be a list"):
        _args(tmp_path, objectives="accuracy")


def test_unimportable_objective_path_is_rejected_before_loading_a_model(tmp_path, no_model_load):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", objectives=["accuracy", "conciseness",
                                                                               "no_such_module:reward"])
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "no_such_module" in result.output, result.output
    assert no_model_load == []


def test_validation_strategy_without_eval_split_is_rejected_before_loading_a_model(tmp_path, no_model_load):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", strategy="hypervolume", dataset_eval_split=None,
                       mo_eval_steps=0)
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "eval_dataset" in result.output, result.output
    assert no_model_load == []


# ======================================================================================================================
# 2. Reward faults
# ======================================================================================================================
class KindFaults:
    """User reward function (a TRL-style callable) that fails according to the row's `kind` column."""

    name = "_rel_kinds"
    VALUES = {"ok": 1.0, "nan": float("nan"), "inf": float("inf"), "none": None, "text": "n/a"}

    def __init__(self):
        self.batches: list[list[str]] = []

    def __call__(self, completions, kind, **kwargs):
        if len(completions) > 1:
            self.batches.append(list(kind))
        if "raise" in kind:
            raise RuntimeError("cannot score a 'raise' row")
        return [self.VALUES[k] for k in kind]


def _none_objective(name):
    def fn(completions, **kwargs):
        return [None] * len(completions)

    fn.__name__ = name
    return fn


def _rel_short(completions, **kwargs):
    return [1.0] * (len(completions) - 1)


for _name, _factory in [("_rel_kinds", KindFaults), ("_rel_none_a", _none_objective("_rel_none_a")),
                        ("_rel_none_b", _none_objective("_rel_none_b")),
                        ("_rel_none_c", _none_objective("_rel_none_c")), ("_rel_short", _rel_short)]:
    _register(_name, _factory)


def test_faulty_samples_are_unscored_counted_and_warned_once_per_step(tmp_path, caplog):
    kinds = ["ok", "raise", "nan", "inf", "none", "text"]
    faulty = KindFaults()
    # 6 rows, 24 completions per step = 6 prompts x 4: every step sees every kind once (RepeatSampler, no replacement)
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = _args(tmp_path, objectives=["accuracy", "_rel_kinds"], per_device_train_batch_size=24,
                 max_completion_length=6)
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(6, kind=kinds), processing_class=tok,
                            objectives=[Accuracy(), faulty])
    with caplog.at_level(logging.WARNING, logger="moalign"):
        trainer.train()
    assert len(faulty.batches) == 2 and all(sorted(b) == sorted(kinds * 4) for b in faulty.batches)
    steps = read_jsonl(Path(trainer.run_dir) / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2]  # training went on
    for s in steps:
        assert s["unscored"] == {"accuracy": 0, "_rel_kinds": 20}  # raise, nan, inf, None, text: 5 kinds x 4
        assert s["rewards"]["_rel_kinds"] == 1.0  # the mean over the scored ('ok') completions only
    warned = _records(caplog, r"objective '_rel_kinds' left 20 of 24 completions unscored")
    assert len(warned) == 2, warned  # once per step
    assert all("first error: RuntimeError: cannot score a 'raise' row" in w for w in warned)
    assert _records(caplog, r"objective 'accuracy' left") == []


@pytest.mark.parametrize("strategy", ["ctwa", "gradient"])
def test_unscorable_batch_skips_strategy_and_zeroes_advantages(tmp_path, caplog, strategy):
    """Every objective None on every completion: strategy state unchanged, advantages 0, beta=0 -> loss 0."""
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = _args(tmp_path, objectives=["_rel_none_a", "_rel_none_b", "_rel_none_c"], strategy=strategy, beta=0.0)
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok)
    state_before = copy.deepcopy(trainer.strategy.state_dict())
    weights_before = trainer.strategy.weights()
    params_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    seen_advantages = []
    weigh = trainer._weigh

    def spy(batch):
        weigh(batch)
        seen_advantages.append(batch.advantages.clone())

    trainer._weigh = spy
    with caplog.at_level(logging.WARNING, logger="moalign"):
        trainer.train()

    assert trainer.state.global_step == 2
    assert trainer.strategy.state_dict() == state_before
    assert len(seen_advantages) == 2 and all(torch.equal(a, torch.zeros_like(a)) for a in seen_advantages)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses == [0.0, 0.0]
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p, params_before[name]), name
    for s in read_jsonl(Path(trainer.run_dir) / "steps.jsonl"):
        assert s["unscored"] == {"_rel_none_a": 8, "_rel_none_b": 8, "_rel_none_c": 8}
        assert list(s["weights"].values()) == weights_before.tolist()
        assert all(v is None for v in s["rewards"].values())  # NaN means are written as null
    assert len(_records(caplog, r"kept its previous weights \(no completion could be scored\)")) == 2


def test_objective_returning_wrong_number_of_scores_is_a_clear_error(tmp_path):
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = _args(tmp_path, objectives=["accuracy", "_rel_short"], max_steps=1)
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok)
    with pytest.raises(ValueError, match=r"objective '_rel_short' (returned|produced) 7 scores for 8 completions"):
        trainer.train()
    assert not (Path(trainer.run_dir) / "steps.jsonl").exists()


def test_two_objectives_with_the_same_name_are_rejected(tmp_path):
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    with pytest.raises(ValueError, match=r"objectives has duplicates: \['reward'\]"):  # the config itself refuses them
        _args(tmp_path, objectives=["accuracy", "_reliability_helpers:reward", "_reliability_helpers:Other.reward"])
    with pytest.raises(ValueError, match="reward"):  # so does the trainer, for objectives passed to it
        MOGRPOTrainer(model=model, args=_args(tmp_path, objectives=None), train_dataset=_dataset(),
                      processing_class=tok, objectives=["accuracy", "_reliability_helpers:reward",
                                                        "_reliability_helpers:Other.reward"])


# ======================================================================================================================
# 3. Numerical faults
# ======================================================================================================================
def _stats(rng, step, n=16, k=3, **kw) -> StepStats:
    rewards = rng.integers(0, 2, (n, k)).astype(float)
    g = rng.normal(size=(k, 6))
    base = dict(lr=1e-6, gram=g @ g.T, losses=rng.normal(size=k), clipped_advantage_weights=rng.normal(size=n),
                validation_point=rng.random(k), scalarized_advantages=rng.normal(size=n))
    base.update(kw)
    return StepStats(step, rewards, np.repeat(np.arange(n // 4), 4), rng.normal(size=(n, k)), **base)


def _run(strategy, stats):
    strategy.before_update(stats)
    strategy.after_update(stats)
    return strategy.weights()


def _gram_poisons():
    g = np.eye(3)
    out = {"nan_all": np.full((3, 3), np.nan), "inf_all": np.full((3, 3), np.inf)}
    for label, value in [("nan_one", np.nan), ("inf_one", np.inf), ("neginf_one", -np.inf)]:
        p = g.copy()
        p[0, 1] = p[1, 0] = value
        out[label] = p
    return out


@pytest.mark.parametrize("poison", sorted(_gram_poisons()))
@pytest.mark.parametrize("name", GRAM_STRATEGIES)
def test_non_finite_gram_step_is_as_if_it_never_happened(name, poison):
    """A poisoned step keeps the weights and leaves no trace: the trajectory after it equals one without it."""
    rng = np.random.default_rng(0)
    steps = [_stats(rng, t) for t in range(5)]
    bad = copy.deepcopy(steps[2])
    bad.gram = _gram_poisons()[poison]
    a, b = weighting.build(name, 3, NAMES), weighting.build(name, 3, NAMES)
    wa = [_run(a, s) for s in steps[:2]]
    before = a.weights()
    assert np.array_equal(_run(a, bad), before)
    assert a.metrics()["skipped"] == 1.0
    wa += [_run(a, s) for s in steps[2:]]
    wb = [_run(b, s) for s in steps]
    np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-12)
    assert all(np.all(np.isfinite(w)) and abs(w.sum() - 1) < 1e-9 and np.all(w >= 0) for w in wa)


def test_gradient_overflowing_influence_keeps_weights():
    """A finite Gram whose influence I = G·1 overflows to inf: gradient keeps its weights (skipped = 1)."""
    rng = np.random.default_rng(1)
    g = weighting.build("gradient", 3, NAMES, mu=1e-5)
    g.before_update(_stats(rng, 0))
    before = g.weights()
    with np.errstate(over="ignore"):
        g.before_update(_stats(rng, 1, gram=np.full((3, 3), 1e308)))
    assert np.array_equal(g.weights(), before) and g.metrics()["skipped"] == 1.0


@pytest.mark.parametrize("name", GRAM_STRATEGIES)
def test_huge_finite_gram_gives_finite_simplex_weights(name):
    rng = np.random.default_rng(2)
    s = weighting.build(name, 3, NAMES)
    for scale in (1e-300, 1e150, 1e300, 1e308):
        with np.errstate(all="ignore"):
            w = _run(s, _stats(rng, 0, gram=np.diag([1.0, 2.0, 3.0]) * scale))
        assert np.all(np.isfinite(w)) and abs(w.sum() - 1) < 1e-9 and np.all(w >= 0), (scale, w)


@pytest.mark.parametrize("poison", ["nan", "inf", "overflow"])
def test_ctwa_non_finite_covariance_keeps_weights(poison):
    rng = np.random.default_rng(3)
    s = weighting.build("ctwa", 3, NAMES)
    for t in range(2):
        _run(s, _stats(rng, t))
    before, state = s.weights(), s.state_dict()
    value = {"nan": np.nan, "inf": np.inf, "overflow": 1e308}[poison]
    with np.errstate(all="ignore"):
        w = _run(s, _stats(rng, 2, clipped_advantage_weights=np.full(16, value)))
    assert np.array_equal(w, before) and s.state_dict() == state and s.metrics()["skipped"] == 1.0


HV_TRAIN = {"point_source": "train_batch"}
FUZZ_STRATEGIES = [(n, {}) for n in weighting.available() if not n.startswith("_")] + [("hypervolume", HV_TRAIN)]


@pytest.mark.parametrize(("name", "params"), FUZZ_STRATEGIES,
                         ids=[f"{n}{'-tb' if p else ''}" for n, p in FUZZ_STRATEGIES])
def test_weights_stay_finite_and_on_simplex_under_random_faults(name, params):
    """40 steps where each statistic is poisoned (NaN, inf, ±1e308, unscored rows) with probability 0.25."""
    seed = 1234
    rng = np.random.default_rng(seed)
    s = weighting.build(name, 3, NAMES, **params)
    bad_values = [np.nan, np.inf, -np.inf, 1e308, -1e308]
    for t in range(40):
        st = _stats(rng, t)
        if rng.random() < 0.25:
            st.rewards[rng.random(st.rewards.shape) < 0.5] = np.nan  # unscored (the trainer never passes inf)
        for key in ("gram", "losses", "clipped_advantage_weights", "validation_point"):
            if rng.random() < 0.25:
                arr = getattr(st, key).copy()
                # validation points are normalised to [0, 1] by the trainer: only non-finite faults there (huge
                # finite points: test_hypervolume_state_survives_an_overflowing_hypervolume)
                values = bad_values[:3] if key == "validation_point" else bad_values
                arr.flat[rng.integers(arr.size)] = values[rng.integers(len(values))]
                setattr(st, key, arr)
        if rng.random() < 0.1:
            st.lr = float("nan")
        with np.errstate(all="ignore"):
            st.scalarized_advantages = np.nan_to_num(s.scalarize(st.rewards))
            w = _run(s, st)
        msg = f"{name} {params} seed={seed} step={t}"
        assert w.shape == (3,) and np.all(np.isfinite(w)), msg
        if s.on_simplex:
            assert np.all(w >= -1e-12) and abs(w.sum() - 1) < 1e-9, msg
        assert math.isfinite(s.advantage_scale()), msg
        json.dumps(s.state_dict(), allow_nan=False)  # the state stays writable to moalign_state.json, NaN-free


def test_hypervolume_state_survives_an_overflowing_hypervolume():
    s = weighting.build("hypervolume", 3, NAMES, point_source="train_batch", ref_point=[0, 0, 0])
    with np.errstate(all="ignore"):
        s.before_update(StepStats(0, np.full((8, 3), 1e200), np.repeat(np.arange(2), 4), np.zeros((8, 3))))
    assert math.isfinite(s.advantage_scale()) and np.all(np.isfinite(s.weights()))
    saved = json.loads(json.dumps(rundir.to_jsonable(s.state_dict()), allow_nan=False))  # as in moalign_state.json
    restored = weighting.build("hypervolume", 3, NAMES, point_source="train_batch", ref_point=[0, 0, 0])
    restored.load_state_dict(saved)
    assert restored.advantage_scale() == s.advantage_scale()


@pytest.mark.parametrize("strategy", GRAM_STRATEGIES)
def test_nan_gram_during_training_keeps_weights_and_training_goes_on(tmp_path, monkeypatch, strategy):
    def nan_gram(self):
        return torch.full((self.num_objectives, self.num_objectives), float("nan"), dtype=torch.float64)

    monkeypatch.setattr(GramProbe, "gram", nan_gram)
    trainer = _trainer(tmp_path, strategy=strategy)
    initial = trainer.strategy.weights()
    params_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    steps = read_jsonl(Path(trainer.run_dir) / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert list(s["weights"].values()) == initial.tolist()
        assert s["skip_reason"].startswith("non-finite Gram matrix")  # the probe's true reason, strategy not called
    assert np.array_equal(trainer.strategy.weights(), initial)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(math.isfinite(x) for x in losses)
    assert any(not torch.equal(p, params_before[n]) for n, p in trainer.model.named_parameters())


def test_nan_gram_during_training_is_explained_in_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(GramProbe, "gram", lambda self: torch.full((3, 3), float("nan"), dtype=torch.float64))
    trainer = _trainer(tmp_path, strategy="gradient", max_steps=1)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert _records(caplog, r"(?i)gram.*(nan|non-finite|not finite)|(nan|non-finite|not finite).*gram")


# ======================================================================================================================
# 4. Kill -9 and resume
# ======================================================================================================================
def _check_jsonl_file(path: Path) -> list[dict]:
    """Every line complete, valid JSON, no NaN tokens."""
    text = path.read_text()
    assert text.endswith("\n"), f"{path.name}: torn last line {text[-80:]!r}"
    records = []
    for i, line in enumerate(text.splitlines(), 1):
        records.append(json.loads(line, parse_constant=lambda c: pytest.fail(f"{path.name}:{i} has {c}")))
    return records


def _same(a, b, path="") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=0, abs=1e-12), path
    else:
        assert a == b, path


def _without_timings(record):
    return {k: v for k, v in record.items() if k != "timings"}


def test_sigkill_mid_step_then_resume_matches_uninterrupted_run(tmp_path):
    """`moalign train` is SIGKILLed inside step 4 (checkpoint-2 written, step 3 logged); `--resume_from_checkpoint true`
    finishes the run; logs have no torn or duplicated lines and every step equals an uninterrupted run's."""
    objectives = ["accuracy", "conciseness", "_reliability_helpers:TripwireClarity"]
    settings = dict(objectives=objectives, max_steps=4)
    killed_dir, ref_dir = tmp_path / "killed", tmp_path / "reference"
    cfg = write_config(tmp_path / "killed.yaml", killed_dir, **settings)
    ref_cfg = write_config(tmp_path / "reference.yaml", ref_dir, **settings)
    marker = tmp_path / "inside_step_4"

    proc = helpers.start_train(cfg, tmp_path, env={helpers.TRIPWIRE_ENV: f"{marker}:4"}, tag="killed")
    try:
        helpers.wait_for(marker.exists, proc, timeout=300, what="the run to reach step 4")
    except AssertionError as exc:
        if proc.poll() is None:
            helpers.sigkill(proc)
        raise AssertionError(f"{exc}\n{helpers.log_tail(tmp_path, 'killed')}") from None
    rc = helpers.sigkill(proc)
    assert rc == -signal.SIGKILL
    ckpts = killed_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (ckpts / "checkpoint-2" / STATE_FILE).exists()
    # the killed run got past its checkpoint: these lines must be cut on resume
    assert [s["step"] for s in read_jsonl(killed_dir / "steps.jsonl")] == [1, 2, 3]
    assert [e["step"] for e in read_jsonl(killed_dir / "evals.jsonl")] == [0, 1, 2, 3]
    assert not (killed_dir / "final").exists()

    resumed = helpers.start_train(cfg, tmp_path, "--resume_from_checkpoint", "true", tag="resumed")
    reference = None
    try:
        assert resumed.wait(timeout=300) == 0, helpers.log_tail(tmp_path, "resumed")
        reference = helpers.start_train(ref_cfg, tmp_path, tag="reference")
        assert reference.wait(timeout=300) == 0, helpers.log_tail(tmp_path, "reference")
    finally:
        for p in (resumed, reference):
            if p is not None and p.poll() is None:
                helpers.sigkill(p)

    steps, ref_steps = _check_jsonl_file(killed_dir / "steps.jsonl"), _check_jsonl_file(ref_dir / "steps.jsonl")
    evals, ref_evals = _check_jsonl_file(killed_dir / "evals.jsonl"), _check_jsonl_file(ref_dir / "evals.jsonl")
    assert [s["step"] for s in steps] == [s["step"] for s in ref_steps] == [1, 2, 3, 4]
    assert [e["step"] for e in evals] == [e["step"] for e in ref_evals] == [0, 1, 2, 3, 4]
    for s, r in zip(steps, ref_steps):  # weights, rewards, covariances, advantage scale, CTWA's own statistics
        _same(_without_timings(s), _without_timings(r), f"step {s['step']}")
    assert len({tuple(s["weights"].values()) for s in steps}) == 4  # the weights really moved every step
    for e, r in zip(evals, ref_evals):
        _same(e, r, f"eval {e['step']}")
    state = json.loads((killed_dir / "checkpoints" / "checkpoint-4" / STATE_FILE).read_text())
    ref_state = json.loads((ref_dir / "checkpoints" / "checkpoint-4" / STATE_FILE).read_text())
    _same(state, ref_state, "moalign_state")
    assert (killed_dir / "final" / "model.safetensors").exists()


# A finished 2-step run (checkpoint-2, steps.jsonl, evals.jsonl) that the tests below copy and damage.
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import moalign.trainer
    from moalign.train import train

    base = tmp_path_factory.mktemp("finished")
    cfg = write_config(base / "c.yaml", base / "run")
    written = []

    def recording(path, data):
        written.append(Path(path))
        return atomic_write_json(path, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(moalign.trainer, "atomic_write_json", recording)
        trainer = train(*load_config(cfg))
    return {"base": base, "run": base / "run", "written": written, "trainer": trainer}


def _copy_run(finished_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run["run"], run)
    return run


def _train_in(run: Path, tmp_path, *flags, resume=None, **overrides):
    from moalign.train import train

    cfg = write_config(tmp_path / "c.yaml", run, **overrides)
    return train(*load_config(cfg, list(flags)), resume_from_checkpoint=resume)


def test_resume_true_after_kill_during_checkpoint_save(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    partial = run / "checkpoints" / "checkpoint-4"
    shutil.copytree(run / "checkpoints" / "checkpoint-2", partial)
    (partial / STATE_FILE).unlink()  # killed between TRL's save and moalign's state file
    try:
        _train_in(run, tmp_path, resume=True, max_steps=3)
    except (ValueError, FileNotFoundError) as exc:
        assert "checkpoint-2" in str(exc), str(exc)  # acceptable: an error that names the checkpoint to use
    else:
        assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == [1, 2, 3]


def test_new_run_in_a_killed_runs_directory_does_not_mix_logs(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    with open(run / "steps.jsonl", "a") as f:
        f.write('{"step": 3, "weights": {"accur')  # torn by the kill
    try:
        _train_in(run, tmp_path, max_steps=1, save_strategy="no", mo_eval_steps=0)
    except (ValueError, FileExistsError) as exc:  # acceptable: refuse, naming resume / run_dir
        assert "resume" in str(exc) or "run_dir" in str(exc), str(exc)
        return
    steps = [s["step"] for s in read_jsonl(run / "steps.jsonl")]
    assert steps == sorted(set(steps)), steps


# ======================================================================================================================
# 5. Atomic run files and state-file errors
# ======================================================================================================================
def test_run_files_and_state_are_written_through_atomic_write(finished_run):
    run = finished_run["run"]
    assert {p.name for p in finished_run["written"]} == {"run.json", STATE_FILE}
    assert run / "checkpoints" / "checkpoint-2" / STATE_FILE in finished_run["written"]
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"


def _fail_midway_json_dump(obj, fp, **kwargs):
    fp.write('{"partial": ')
    fp.flush()
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("fault", ["json.dump", "os.fsync", "os.replace", "KeyboardInterrupt"])
def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch, fault):
    path = tmp_path / STATE_FILE
    atomic_write_json(path, {"format_version": 1, "old": True})
    old = path.read_bytes()
    if fault == "json.dump":
        monkeypatch.setattr(rundir.json, "dump", _fail_midway_json_dump)
    elif fault == "os.fsync":
        monkeypatch.setattr(rundir.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    elif fault == "os.replace":
        monkeypatch.setattr(rundir.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(18, "cross-device")))
    else:
        def interrupted(obj, fp, **kwargs):
            fp.write('{"new": ')
            raise KeyboardInterrupt

        monkeypatch.setattr(rundir.json, "dump", interrupted)
    with pytest.raises((OSError, KeyboardInterrupt)):
        atomic_write_json(path, {"format_version": 1, "new": True})
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no temporary file left


def test_atomic_write_text_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "campaign.md"
    rundir.atomic_write_text(path, "old\n")
    monkeypatch.setattr(rundir.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(18, "cross-device")))
    with pytest.raises(OSError):
        rundir.atomic_write_text(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["campaign.md"]
    rundir.atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"


def test_failed_first_write_creates_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir.json, "dump", _fail_midway_json_dump)
    with pytest.raises(OSError):
        atomic_write_json(tmp_path / "run.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_jsonl_append_read_and_repair(tmp_path):
    path = tmp_path / "steps.jsonl"
    for step in (1, 2, 3):
        append_jsonl(path, {"step": step, "value": float("nan") if step == 2 else np.float32(step)})
    assert "NaN" not in path.read_text()  # JSON has no NaN: written as null
    with open(path, "a") as f:
        f.write('{"step": 4, "val')  # torn by a kill
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]  # readers skip the torn line
    assert read_jsonl(path)[1]["value"] is None
    assert truncate_jsonl(path, max_step=2) == 2
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"steps\.jsonl:2 is not valid JSON .* the file is corrupt"):
        read_jsonl(path)


def test_truncate_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "steps.jsonl"
    for step in (1, 2, 3):
        append_jsonl(path, {"step": step})
    old = path.read_bytes()
    monkeypatch.setattr(rundir.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        truncate_jsonl(path, max_step=1)
    assert path.read_bytes() == old


def test_truncate_leaves_no_temporary_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "steps.jsonl"
    append_jsonl(path, {"step": 1})
    monkeypatch.setattr(rundir.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        truncate_jsonl(path, max_step=1)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["steps.jsonl"]


def _state_case(name: str, good: str) -> str:
    state = json.loads(good)
    if name == "truncated":
        return good[: len(good) // 2]
    if name == "empty":
        return ""
    if name == "zeros":  # what a power loss can leave on some file systems
        return "\x00" * 64
    if name == "format_version":
        return json.dumps({**state, "format_version": 99})
    if name == "no_strategy":
        return json.dumps({k: v for k, v in state.items() if k != "strategy"})
    if name == "list":
        return json.dumps([state])
    if name in ("null", "number"):
        return "null" if name == "null" else "42"
    raise KeyError(name)


STATE_CASES = [
    ("truncated", r"is corrupt .*resume from an earlier checkpoint"),
    ("empty", r"is corrupt"),
    ("zeros", r"is corrupt"),
    ("format_version", r"has format_version 99, expected 1"),
    ("no_strategy", r"lacks \['strategy'\]; it was not written by this version of moalign"),
]
STATE_CASES += [(case, r"moalign_state\.json") for case in ("list", "null", "number")]


@pytest.mark.parametrize(("case", "message"), STATE_CASES)
def test_damaged_state_file_is_a_clear_error(finished_run, tmp_path, case, message):
    ckpt = tmp_path / "checkpoint-2"
    shutil.copytree(finished_run["run"] / "checkpoints" / "checkpoint-2", ckpt)
    good = (ckpt / STATE_FILE).read_text()
    (ckpt / STATE_FILE).write_text(_state_case(case, good))
    with pytest.raises(ValueError, match=message):
        read_state_file(ckpt)


RESUME_MISMATCH = [
    ({"objectives": ["accuracy", "clarity", "conciseness"]},
     r"trained with objectives \['accuracy', 'conciseness', 'clarity'\], but this run has \['accuracy', 'clarity', "
     r"'conciseness'\]; resume with the same objectives, in the same order"),
    ({"strategy": "lagrangian"}, r"trained with strategy 'ctwa', but this run uses 'lagrangian'; resume with the same"),
    ({"state": "strategy_weights"}, r"checkpoint-2/moalign_state\.json: strategy 'ctwa' state 'log_weights' has 2 "
                                    r"entries but there are 3 in this run"),
    ({"state": "conciseness"}, r"conciseness state lacks \['count'\]"),
    ({"state": "missing"}, r"moalign_state\.json is missing.*does not silently restart weight adaptation"),
]


@pytest.mark.parametrize(("change", "message"), RESUME_MISMATCH, ids=["objectives", "strategy", "weights", "objective",
                                                                      "missing"])
def test_resume_with_a_mismatched_or_damaged_state_fails_before_training(finished_run, tmp_path, change, message):
    run = _copy_run(finished_run, tmp_path)
    ckpt = run / "checkpoints" / "checkpoint-2"
    state = json.loads((ckpt / STATE_FILE).read_text())
    which = change.get("state")
    change = {k: v for k, v in change.items() if k != "state"}
    if which == "strategy_weights":
        state["strategy"]["state"]["log_weights"] = [0.0, 0.0]
    elif which == "conciseness":
        del state["objectives"]["conciseness"]["count"]
    if which == "missing":
        (ckpt / STATE_FILE).unlink()
    else:
        (ckpt / STATE_FILE).write_text(json.dumps(state))
    logs_before = {n: (run / n).read_bytes() for n in ("steps.jsonl", "evals.jsonl")}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _train_in(run, tmp_path, resume=str(ckpt), max_steps=3, **change)
    assert {n: (run / n).read_bytes() for n in logs_before} == logs_before  # nothing restarted, nothing appended


# ======================================================================================================================
# 6. Untrusted input
# ======================================================================================================================
PAYLOADS = [
    r"\boxed{__import__('os').system('touch {m}')}",
    r"\boxed{1+__import__('os').system('touch {m}')}",
    r"\boxed{eval(\"__import__('os').system('touch {m}')\")}",
    r"\boxed{exec(\"open('{m}', 'w').write('x')\")}",
    r"\boxed{open('{m}', 'w')}",
    r"\boxed{().__class__.__base__.__subclasses__()}",
    r"\boxed{\input{/etc/passwd}} \boxed{\write18{touch {m}}}",
    r"$(touch {m}) `touch {m}` \boxed{1}; import os; os.system('touch {m}')",
    r"\boxed{x = __import__('subprocess').run(['touch', '{m}'])}",
    r"\boxed{lambda: open('{m}','w')}",
    r"\boxed{{}.__class__.__mro__[1].__subclasses__()[0]('{m}')}",
    r"{{7*7}} {% import os %}{{ os.system('touch {m}') }} \boxed{49}",
]


def test_completions_and_answers_are_never_executed(tmp_path):
    marker = tmp_path / "PWNED"
    texts = [p.replace("{m}", str(marker)) for p in PAYLOADS]
    objectives = [Accuracy(timeout_s=2.0), Conciseness(), Clarity()]
    for obj in objectives:
        # completions as plain text and as chat messages; payloads also as the ground truth (datasets are input too)
        for completions in (texts, [[{"role": "assistant", "content": t}] for t in texts]):
            ids = [[1] * (i + 1) for i in range(len(texts))]
            for answer in (["1"] * len(texts), texts):
                out = obj(completions, answer=answer, completion_ids=ids)
                assert len(out) == len(texts) and all(v in (0.0, 1.0, None) for v in out), (obj, out)
    assert not marker.exists(), "a completion was executed"
    assert not list(tmp_path.iterdir())


def _accuracy_texts():
    from hypothesis import strategies as st

    atoms = st.sampled_from(["\\boxed{", "\\fbox{", "\\frac{", "^{", "^", "{", "}", "\\}", "\\{", "(", ")", "!",
                             "\\sqrt{", "\\sum_{n=1}^{", "\\int", "x", "e", "\\pi", "+", "-", "*", "/", "=", ",", ".",
                             " ", "\\left(", "\\right)", "$", "9", "10", "\\infty", "\\cdot", "\\\\"])
    digits = st.integers(1, 2000).map(lambda n: "9" * n)
    tower = st.integers(2, 8).map(lambda n: "{9^" * n + "9" + "}" * n)
    pieces = st.lists(st.one_of(atoms, atoms, atoms, digits, tower, st.text(max_size=8)), max_size=40)
    return pieces.map("".join).map(lambda s: s if "\\boxed" in s[-50:] else s + "\\boxed{" + s[-40:] + "}")


ACCURACY_CALL_BOUND_S = 15.0  # one comparison's budget (timeout_s) + killing the worker + starting a fresh one


@pytest.mark.parametrize("n_examples", [pytest.param(40, id="fast"),
                                        pytest.param(400, id="long", marks=pytest.mark.slow)])
def test_accuracy_fuzz_returns_quickly_with_a_valid_score(n_examples):
    """Random answers built from braces, \\boxed, ^, \\frac and long digit strings: every call is bounded in time."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    acc = Accuracy(timeout_s=1.0)
    acc([r"\boxed{x^2}"], answer=["x**2"])  # start math-verify's worker once, outside the timed calls
    durations = []

    @settings(max_examples=n_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text=_accuracy_texts(), gold=st.sampled_from(["1", "\\frac{1}{2}", "x^2+1", "10^{100}", "\\sqrt{2}", "9"]))
    def check(text, gold):
        start = time.monotonic()
        out = acc([text], answer=[gold])
        durations.append(time.monotonic() - start)
        assert out in ([0.0], [1.0]), (text, gold, out)
        assert durations[-1] < ACCURACY_CALL_BOUND_S, (durations[-1], text)
        assert acc([text], other=[gold]) == [None]  # no ground truth: unscored, never an error

    check()
    print(f"accuracy fuzz: {len(durations)} calls, max {max(durations):.2f} s, "
          f"{sum(d > 0.5 for d in durations)} over 0.5 s")


ADVERSARIAL = [
    r"\boxed{9^{9^{9^{9^{9}}}}}", r"\boxed{10^{10^{10^{10}}}!}", r"\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    r"\boxed{9999999999999999999999999999^{99999999}}", r"\boxed{(10^{1000000})!}", r"\boxed{x^{x^{x^{x^{x}}}}}",
    r"\boxed{\sum_{n=1}^{10^{100}} n}", r"\boxed{\int_0^{\infty} e^{-x^{99}} dx}", r"\boxed{" + "9" * 900 + "}",
    r"\boxed{" + "(" * 400 + "x" + ")" * 400 + "}", r"\boxed{" + "\\frac{1}{" * 30 + "2" + "}" * 30 + "}",
]
MEMORY_SCRIPT = """
import json, resource, sys, time
from moalign.objectives import Accuracy
acc, texts, out = Accuracy(), json.loads(sys.argv[1]), []
for t in texts:
    start = time.monotonic()
    score = acc([t], answer=["1"])
    out.append([time.monotonic() - start, score[0]])
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"calls": out, "children_max_rss_kib": rss}))
"""


@pytest.mark.slow
def test_accuracy_adversarial_answers_are_bounded_in_time_and_memory(tmp_path):
    """Default Accuracy (timeout 2 s) in a fresh process: every call bounded, and the peak RSS of its workers."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, json.dumps(ADVERSARIAL)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    times = [t for t, _ in report["calls"]]
    assert all(score in (0.0, 1.0) for _, score in report["calls"])
    assert max(times) < ACCURACY_CALL_BOUND_S, report
    assert report["children_max_rss_kib"] < 2 * 1024 * 1024, report  # < 2 GiB
    print(f"adversarial accuracy: max call {max(times):.2f} s, worker peak RSS "
          f"{report['children_max_rss_kib'] / 1024:.0f} MiB")


def test_checkpoints_are_safetensors_and_json(finished_run):
    run = finished_run["run"]
    for folder in (run / "checkpoints" / "checkpoint-2", run / "final"):
        names = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in names, names
        assert not {"pytorch_model.bin", "model.bin"} & names
        assert not [n for n in names if n.endswith((".pkl", ".pickle"))]
        # the only pickles are transformers' own (training_args.bin; optimizer/scheduler/RNG .pt/.pth files)
        assert {n for n in names if n.endswith(".bin")} <= {"training_args.bin"}
    state = json.loads((run / "checkpoints" / "checkpoint-2" / STATE_FILE).read_text())
    assert state["format_version"] == 1 and state["strategy"]["name"] == "ctwa"


def test_state_loading_uses_json_only(finished_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("moalign unpickled something")

    for module, attr in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(module, attr, refuse)
    state = read_state_file(finished_run["run"] / "checkpoints" / "checkpoint-2")
    trainer = finished_run["trainer"]
    trainer.load_moalign_state(state)  # the trainer's restore path
    assert trainer.strategy.state_dict() == state["strategy"]["state"]


UNSAFE = {
    r"pickle\.(load|loads|Unpickler)\b": "unpickling",
    r"\btorch\.load\(": "torch.load (pickle)",
    r"(?<![\w.])(eval|exec)\(": "eval/exec",
    r"\byaml\.(load|unsafe_load|full_load)\(": "non-safe YAML loader",
    r"shell\s*=\s*True|os\.system\(|os\.popen\(": "a shell",
    r"parse_expr\(|sympify\(": "sympy's eval-based parsers",
    r"trust_remote_code\s*=\s*True": "remote code",
}


def test_source_never_evaluates_or_unpickles():
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, what in UNSAFE.items():
                if re.search(pattern, line):
                    hits.append(f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()}")
    assert hits == []


# ======================================================================================================================
# 7. Load (slow): memory and in-memory logs stay bounded over a long run
# ======================================================================================================================
LOAD_STEPS = int(os.environ.get("MOALIGN_LOAD_STEPS", "2000"))  # ~2 min on 2 shared cores with one torch thread
# RSS climbs ~120 MiB while the policy's completion lengths change (to ~700 MiB), then stays flat; the plateau is
# the same with evaluations and checkpoints on or off (measured), so it is allocator warm-up, not a leak.
# Warm-up = the first 40% of the run; after it the RSS may grow by at most LOAD_RSS_GROWTH_MIB.
LOAD_WARMUP = max(100, LOAD_STEPS * 2 // 5)
LOAD_RSS_GROWTH_MIB = 32


def _rss_mib() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil comes with accelerate
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise


@pytest.mark.slow
def test_long_run_memory_and_logs_stay_bounded(tmp_path, monkeypatch):
    import moalign.trainer
    from moalign.train import train
    from transformers import TrainerCallback

    samples = []

    class Probe(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            t = self.trainer
            samples.append({
                "step": state.global_step,
                "rss": _rss_mib(),
                "reward_history": len(t.engine.monitor.reward_history),  # the monitor moved into the step engine
                "metrics": max((len(v) for v in t._metrics["train"].values()), default=0),
                "metric_keys": len(t._metrics["train"]),
                "logs": max(len(t._logs[k]) for k in ("prompt", "completion", "advantages")),
                "log_rewards": max((len(v) for v in t._logs["rewards"].values()), default=0),
                "buffer": len(t.strategy.state_dict()["buffer"]["points"]),
                "log_history": len(state.log_history),
            })

    class Traced(moalign.trainer.MOGRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Probe(self))

    monkeypatch.setattr(moalign.trainer, "MOGRPOTrainer", Traced)
    run = tmp_path / "run"
    objectives = ["accuracy", "conciseness", "clarity", "_reliability_helpers:DigitShare"]
    cfg = write_config(
        tmp_path / "load.yaml", run, objectives=objectives, strategy="hypervolume",
        # train_batch points: every step adds a candidate to the Pareto buffer; ref below 0 so zero scores count
        strategy_params={"point_source": "train_batch", "weights": [0.25] * 4, "ref_point": [-0.01] * 4},
        dataset_kwargs={"n_train": 512, "n_val": 8, "n_test": 8}, max_steps=LOAD_STEPS, max_completion_length=16,
        learning_rate=1e-4, logging_steps=10, save_steps=100, save_total_limit=2, mo_eval_steps=100,
    )
    start = time.monotonic()
    trainer = train(*load_config(cfg))
    elapsed = time.monotonic() - start

    assert [s["step"] for s in samples] == list(range(1, LOAD_STEPS + 1))
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, LOAD_STEPS + 1))
    window = trainer.args.interference_window
    gbs = trainer.args.generation_batch_size
    assert max(s["reward_history"] for s in samples) <= window + 1
    assert max(s["metrics"] for s in samples) <= trainer.args.logging_steps  # cleared at every log
    assert all(trainer._logs[k].maxlen == gbs for k in ("prompt", "completion", "advantages"))
    assert max(s["logs"] for s in samples) <= gbs and max(s["log_rewards"] for s in samples) <= gbs
    assert max(s["metric_keys"] for s in samples) == samples[-1]["metric_keys"]  # no new keys per step
    buffer = np.asarray(trainer.strategy.state_dict()["buffer"]["points"])
    sizes = [s["buffer"] for s in samples]
    assert max(sizes) >= 2 and any(b < a for a, b in zip(sizes, sizes[1:]))  # exercised: points added and dropped
    assert len(buffer) >= 1 and pareto.nondominated(buffer).all()  # only non-dominated points are kept
    assert len(sorted((run / "checkpoints").glob("checkpoint-*"))) <= 2  # save_total_limit
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    rss = np.array([s["rss"] for s in samples])
    growth = rss[LOAD_WARMUP:].max() - rss[LOAD_WARMUP]
    every = LOAD_STEPS // 10
    summary = (f"load: {LOAD_STEPS} steps in {elapsed:.0f} s ({elapsed / LOAD_STEPS:.2f} s/step); RSS at step "
               f"{LOAD_WARMUP}: {rss[LOAD_WARMUP]:.0f} MiB, max after: {rss[LOAD_WARMUP:].max():.0f} MiB, growth "
               f"{growth:.1f} MiB; final {rss[-1]:.0f} MiB; Pareto buffer {len(buffer)} points (max "
               f"{max(s['buffer'] for s in samples)}); log_history {samples[-1]['log_history']} entries; mean "
               f"completion length per logging window {min(lengths):.1f}-{max(lengths):.1f} tokens; RSS every "
               f"{every} steps: {', '.join(f'{r:.0f}' for r in rss[every - 1::every])} MiB")
    print(summary)
    (tmp_path / "load_summary.txt").write_text(summary)
    assert growth < LOAD_RSS_GROWTH_MIB, summary

"""MOGRPOTrainer on the tiny CPU model: TRL equivalence, run directory, Gram path, faults, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from moalign import weighting
from moalign.objectives import Accuracy, Clarity, Conciseness
from moalign.rundir import read_jsonl
from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
from moalign.weighting.base import WeightingStrategy, register

OBJECTIVES = ["accuracy", "conciseness", "clarity"]


def _dataset(n=16):
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": [{"role": "user", "content": f"{a}+{b}=?"}], "answer": str(a + b)})
    return Dataset.from_list(rows)


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,  # 2 prompts x 4 generations: the smallest batch with real groups
        num_generations=4,
        max_completion_length=12,  # short completions keep a CPU step well under a second
        max_steps=2,
        learning_rate=1e-2,  # large so that one step visibly moves the tiny model's parameters
        report_to="none",
        logging_steps=1,
        use_cpu=True,
        seed=0,
        save_strategy="no",
        disable_tqdm=True,
    )
    base.update(kw)
    return MOGRPOConfig(**base)


def _trainer(tmp_path, model_seed=0, layers=2, **kw):
    model, tok = tiny_model_and_tokenizer(seed=model_seed, num_hidden_layers=layers)
    return MOGRPOTrainer(model=model, args=_args(tmp_path, **kw), train_dataset=_dataset(), processing_class=tok)


def test_fixed_grpo_matches_trl_grpo_trainer(tmp_path):
    """One step of MOGRPOTrainer(fixed, grpo) == one step of TRL's GRPOTrainer with the same reward_weights."""
    from trl import GRPOConfig, GRPOTrainer

    weights = [0.5, 0.25, 0.25]
    common = dict(
        per_device_train_batch_size=8, num_generations=4, max_completion_length=12, max_steps=1,
        learning_rate=1e-2, report_to="none", logging_steps=1, use_cpu=True, seed=0, save_strategy="no",
        disable_tqdm=True, bf16=False,  # both in float32: TRL's GRPOConfig alone would autocast in bf16
    )
    model_a, tok_a = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    model_b, tok_b = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    before = {n: p.detach().clone() for n, p in model_a.named_parameters()}

    ours = MOGRPOTrainer(
        model=model_a,
        args=MOGRPOConfig(output_dir=str(tmp_path / "a"), strategy="fixed", strategy_params={"weights": weights},
                          **common),
        train_dataset=_dataset(),
        processing_class=tok_a,
    )
    ours.train()
    trl = GRPOTrainer(
        model=model_b,
        reward_funcs=[Accuracy(), Conciseness(), Clarity()],
        args=GRPOConfig(output_dir=str(tmp_path / "b"), reward_weights=weights, **common),
        train_dataset=_dataset(),
        processing_class=tok_b,
    )
    trl.train()

    loss_a = [h["loss"] for h in ours.state.log_history if "loss" in h]
    loss_b = [h["loss"] for h in trl.state.log_history if "loss" in h]
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    moved = 0
    for (name, pa), (_, pb) in zip(model_a.named_parameters(), model_b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
        moved += not torch.equal(pa, before[name])
    assert moved > 0, "the step did not change any parameter"


def test_run_directory_and_logs(tmp_path):
    trainer = _trainer(tmp_path, strategy="fixed", strategy_params={"preset": "accuracy_focused"}, save_strategy="steps",
                       save_steps=2)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    run = Path(trainer.run_dir)
    meta = json.loads((run / "run.json").read_text())
    assert meta["strategy"]["name"] == "fixed"
    assert [o["name"] for o in meta["objectives"]] == OBJECTIVES
    assert {"torch", "trl", "transformers", "moalign"} <= set(meta["versions"])
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert s["weights"] == {"accuracy": 0.5, "conciseness": 0.25, "clarity": 0.25}
        assert set(s["covariance"]) == set(OBJECTIVES) and set(s["rewards"]) == set(OBJECTIVES)
        assert {"generate", "update", "strategy"} <= set(s["timings"])
        assert s["advantage_scale"] == 1.0
    state = json.loads((run / "checkpoint-2" / "moalign_state.json").read_text())
    assert state["strategy"]["name"] == "fixed" and "conciseness" in state["objectives"]
    logged = [h for h in trainer.state.log_history if "weights/accuracy" in h]
    assert logged and "covariance/clarity" in logged[0] and "advantage_scale" in logged[0]
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


@register("_test_gram_recorder")
class _GramRecorder(WeightingStrategy):
    """Test strategy: weights ∝ diag(G) so the Gram visibly drives the scalarization; records what it saw."""

    needs = frozenset({"gram", "post_update"})

    def __init__(self, num_objectives, objective_names=None):
        super().__init__(num_objectives, objective_names)
        self.grams, self.post = [], []

    def before_update(self, stats):
        self.grams.append(stats.gram.copy())
        d = np.diag(stats.gram)
        if d.sum() > 0:
            self._set_weights(d / d.sum())

    def after_update(self, stats):
        self.post.append(stats.clipped_advantage_weights.copy())


@pytest.mark.parametrize("gas,spg", [(1, 1), (2, 2)])
def test_gram_reaches_strategy_and_changes_weights(tmp_path, gas, spg):
    trainer = _trainer(tmp_path, layers=3, strategy="_test_gram_recorder", gradient_accumulation_steps=gas,
                       steps_per_generation=spg, per_device_train_batch_size=8 // spg, advantage_estimator="rloo")
    assert trainer._gram_one_pass == (gas == 1 and spg == 1)
    trainer.train()
    strat = trainer.strategy
    assert len(strat.grams) == 2 and len(strat.post) == 2
    for g in strat.grams:
        assert g.shape == (3, 3) and np.allclose(g, g.T) and np.all(np.linalg.eigvalsh(g) > -1e-10)
    steps = read_jsonl(Path(trainer.run_dir) / "steps.jsonl")
    w = np.array([list(s["weights"].values()) for s in steps])
    expected = np.array([np.diag(g) / np.diag(g).sum() if np.diag(g).sum() > 0 else np.full(3, 1 / 3)
                         for g in strat.grams])
    np.testing.assert_allclose(w, expected, atol=1e-12)
    assert all(p.shape == (8,) and np.all(np.isfinite(p)) for p in strat.post)


class _Flaky:
    """User objective that raises on completions containing '1' and returns NaN on those containing '2'."""

    name = "flaky"
    maximize = True
    __name__ = "flaky"

    def __call__(self, prompts, completions, **kw):
        out = []
        for c in completions:
            text = c[0]["content"] if isinstance(c, list) else c
            if "1" in text:
                raise RuntimeError("cannot score this one")
            out.append(float("nan") if "2" in text else 1.0)
        return out


def test_faulty_objective_leaves_samples_unscored_and_training_goes_on(tmp_path, caplog):
    from moalign.objectives import available_objectives, register_objective

    if "flaky" not in available_objectives():
        register_objective("flaky")(_Flaky)
    model, tok = tiny_model_and_tokenizer(seed=1, num_hidden_layers=2)
    args = _args(tmp_path, objectives=["accuracy", "flaky"], strategy="fixed")
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "1212121212"}], "answer": "3"}] * 8)
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    steps = read_jsonl(Path(trainer.run_dir) / "steps.jsonl")
    assert len(steps) == 2
    assert all(0 <= s["unscored"]["flaky"] <= 8 for s in steps)
    assert all(s["unscored"]["accuracy"] == 0 for s in steps)


def _engine(tmp_path, **kw):
    """The step engine of a config: where strategy parameter *values* are checked (the config checks names)."""
    from moalign.rl.engine import StepEngine

    return StepEngine.from_config(_args(tmp_path, **kw), OBJECTIVES)


def test_config_errors_name_field_and_fix(tmp_path):
    with pytest.raises(ValueError, match="strategy_params.weights has 2 entries but there are 3 objectives"):
        _engine(tmp_path, objectives=OBJECTIVES, strategy_params={"weights": [0.5, 0.5]})
    with pytest.raises(ValueError, match="unknown weighting strategy 'magic'; valid names: .*fixed"):
        _args(tmp_path, strategy="magic")
    with pytest.raises(ValueError, match="advantage_estimator='ppo' is unknown"):
        _args(tmp_path, advantage_estimator="ppo")
    with pytest.raises(ValueError, match="objectives: unknown name"):
        _args(tmp_path, objectives=["accuracy", "beauty"])
    with pytest.raises(ValueError, match="must be non-negative"):
        _engine(tmp_path, objectives=OBJECTIVES, strategy_params={"weights": [0.5, -0.25, 0.25]})
    with pytest.raises(ValueError, match="must not be all zero"):
        _engine(tmp_path, objectives=OBJECTIVES, strategy_params={"weights": [0, 0, 0]})
    with pytest.raises(ValueError, match="accepts: weights, preset"):
        _args(tmp_path, strategy_params={"weight": [1, 1, 1]})


@register("_test_stateful")
class _Stateful(WeightingStrategy):
    """Test strategy whose weights depend on the whole history of reward means (so resume must restore it)."""

    state_fields = {"weights": weighting.base.StateField("_w"), "logits": weighting.base.StateField("logits")}

    def __init__(self, num_objectives, objective_names=None):
        super().__init__(num_objectives, objective_names)
        self.logits = np.zeros(num_objectives)

    def before_update(self, stats):
        self.logits += 1.0 - np.nan_to_num(stats.objective_means)
        self._set_weights(weighting.base.softmax(self.logits))


def test_resume_continues_same_weight_trajectory(tmp_path):
    kw = dict(strategy="_test_stateful", max_steps=4, save_strategy="steps", save_steps=2)
    full = _trainer(tmp_path / "full", **kw)
    full.train()
    full_steps = read_jsonl(Path(full.run_dir) / "steps.jsonl")

    first = _trainer(tmp_path / "split", **{**kw, "max_steps": 2})
    first.train()
    run = Path(first.run_dir)
    # simulate a killed writer: a torn line past the checkpoint must be dropped on resume
    with open(run / "steps.jsonl", "a") as f:
        f.write('{"step": 3, "weights": {"acc')
    resumed = _trainer(tmp_path / "split", **kw)
    resumed.train(resume_from_checkpoint=str(run / "checkpoint-2"))
    split_steps = read_jsonl(run / "steps.jsonl")

    assert [s["step"] for s in split_steps] == [1, 2, 3, 4]
    for a, b in zip(full_steps, split_steps):
        for name in OBJECTIVES:
            assert a["weights"][name] == pytest.approx(b["weights"][name], abs=1e-12), a["step"]
            assert a["rewards"][name] == pytest.approx(b["rewards"][name], abs=1e-12) or (
                math.isnan(a["rewards"][name]) and math.isnan(b["rewards"][name])
            )
    conc_full = full.objectives[1].state_dict()
    conc_split = resumed.objectives[1].state_dict()
    assert conc_full == conc_split


def test_missing_state_file_is_a_clear_error(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    ckpt = Path(trainer.run_dir) / "checkpoint-2"
    (ckpt / "moalign_state.json").unlink()
    again = _trainer(tmp_path, max_steps=3, save_strategy="no")
    with pytest.raises(FileNotFoundError, match="moalign_state.json is missing"):
        again.train(resume_from_checkpoint=str(ckpt))
    (ckpt / "moalign_state.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        _trainer(tmp_path, max_steps=3, save_strategy="no").train(resume_from_checkpoint=str(ckpt))


def test_peft_lora_with_gram_probes_the_adapter(tmp_path):
    """Under PEFT the GramProbe defaults to the trainable (LoRA) parameters, and only those change."""
    from peft import LoraConfig

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = _args(tmp_path, strategy="_test_gram_recorder", advantage_estimator="rloo")
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok,
                            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    frozen_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    probed = set(trainer._gram_probe.param_names)  # the probe is built on the prepared model at the first step
    trainable = {n for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters() if p.requires_grad}
    assert probed == trainable and trainable
    assert len(trainer.strategy.grams) == 2 and all(np.isfinite(g).all() for g in trainer.strategy.grams)
    params = dict(trainer.model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen_before.items())
    assert any(not torch.equal(params[n], v) for n, v in lora_before.items())

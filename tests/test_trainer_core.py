"""MOGRPOTrainer against TRL's GRPOTrainer with rewards that vary in every objective; the trainer's objectives as the
source of truth; JSON-safe config with user callables; the accumulation rule."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer


def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


# Three rewards that vary between the completions of one prompt in every objective (unlike 0/1 accuracy/clarity on
# an untrained model, which are almost always 0), so a weight given to the wrong objective changes the loss.
def length_mod(prompts, completions, **kwargs):
    return [(len(_text(c)) % 5) / 4 for c in completions]


def char_sum(prompts, completions, **kwargs):
    return [(sum(map(ord, _text(c))) % 7) / 6 for c in completions]


def vowel_share(prompts, completions, **kwargs):
    return [sum(ch in "aeiou" for ch in _text(c)) / (1 + len(_text(c))) for c in completions]


FUNCS = [length_mod, char_sum, vowel_share]
WEIGHTS = [0.6, 0.3, 0.1]


def _dataset(n=16):
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": [{"role": "user", "content": f"{a}+{b}=?"}], "answer": str(a + b)})
    return Dataset.from_list(rows)


COMMON = dict(
    per_device_train_batch_size=8,  # 2 prompts x 4 generations: the smallest batch with real groups
    num_generations=4,
    max_completion_length=12,  # short completions keep a CPU step well under a second
    max_steps=2,
    learning_rate=1e-2,  # moves the parameters by more than 100x the tolerance of _assert_same (asserted there)
    # Plain SGD, not AdamW: Adam divides by √v, so an embedding row whose gradient is float noise (~1e-9: the group's
    # advantages cancel) moves by ±lr either way, and two exact implementations disagree there by up to 2 lr.
    # Under SGD a parameter's move is lr x its gradient, so the comparison below checks the gradients themselves.
    optim="sgd",
    report_to="none",
    logging_steps=1,
    use_cpu=True,
    bf16=False,  # TRL's GRPOConfig would autocast in bf16; MOGRPOConfig trains in float32 on CPU (moalign.precision)
    seed=0,
    save_strategy="no",
    disable_tqdm=True,
    beta=0.0,
)


def _ours(tmp_path, weights=WEIGHTS, callbacks=None, **kw):
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(output_dir=str(tmp_path / "ours"), strategy="fixed", strategy_params={"weights": weights},
                        **{**COMMON, **kw})
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok,
                            objectives=FUNCS, callbacks=callbacks)
    trainer.train()
    return trainer


def _trl(tmp_path, **kw):
    from trl import GRPOConfig, GRPOTrainer

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    trainer = GRPOTrainer(model=model, reward_funcs=FUNCS, train_dataset=_dataset(), processing_class=tok,
                          args=GRPOConfig(output_dir=str(tmp_path / "trl"), reward_weights=WEIGHTS,
                                          **{**COMMON, **kw}))
    trainer.train()
    return trainer


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _assert_same(ours, trl):
    assert _losses(ours) == pytest.approx(_losses(trl), abs=1e-6)
    initial, _ = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    moved = max((p - p0).abs().max().item() for p, p0 in zip(trl.model.parameters(), initial.parameters()))
    assert moved > 1e-4, f"training barely moved the parameters ({moved:.1e}): the comparison could not fail"
    for (name, pa), (_, pb) in zip(ours.model.named_parameters(), trl.model.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


SETTINGS = {
    "plain": {},
    "accumulation": {"gradient_accumulation_steps": 2, "steps_per_generation": 2, "per_device_train_batch_size": 4},
    "iterations": {"num_iterations": 2},
}
FAST = [("dapo", "accumulation"), ("grpo", "iterations"), ("dr_grpo", "plain")]
SLOW = [(lt, s) for lt in ("grpo", "dapo", "dr_grpo", "bnpo") for s in SETTINGS if (lt, s) not in FAST]


@pytest.mark.parametrize(
    ("loss_type", "setting"),
    FAST + [pytest.param(lt, s, marks=pytest.mark.slow) for lt, s in SLOW],
)
def test_fixed_weights_match_trl(tmp_path, loss_type, setting):
    """MOGRPOTrainer(fixed) == GRPOTrainer(reward_weights) in loss and parameters, for each loss type and batch
    layout, with rewards that vary in every objective."""
    kw = {"loss_type": loss_type, **SETTINGS[setting]}
    _assert_same(_ours(tmp_path, **kw), _trl(tmp_path, **kw))


def test_the_equivalence_test_would_catch_swapped_weights(tmp_path):
    kw = {"max_steps": 1}
    right, swapped = _ours(tmp_path / "a", **kw), _ours(tmp_path / "b", weights=[0.1, 0.3, 0.6], **kw)
    assert _losses(right) != pytest.approx(_losses(swapped), abs=1e-6)
    apart = max((a - b).abs().max().item() for a, b in zip(right.model.parameters(), swapped.model.parameters()))
    assert apart > 1e-4  # 100x the parameter tolerance of _assert_same


def test_normalize_then_sum_matches_trl(tmp_path):
    """GDPO (multi_objective_aggregation: normalize_then_sum) is honoured: TRL's own result."""
    kw = {"multi_objective_aggregation": "normalize_then_sum"}
    ours, trl = _ours(tmp_path, **kw), _trl(tmp_path, **kw)
    _assert_same(ours, trl)
    default = _ours(tmp_path / "default")
    assert _losses(default) != pytest.approx(_losses(ours), abs=1e-6)


class _LogReader(TrainerCallback):
    """What a TensorBoard/W&B callback does: serialise the config at start, then read every log."""

    def __init__(self):
        self.config, self.logs = None, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.config = json.loads(args.to_json_string())
        args.to_sanitized_dict()

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_trl_port_with_user_callables_trains_and_logs(tmp_path):
    """GRPOTrainer(reward_funcs=[f, g], args=GRPOConfig(reward_weights=[0.7, 0.3])) ported to moalign."""
    reader = _LogReader()
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(output_dir=str(tmp_path / "port"), strategy_params={"weights": [0.7, 0.3]},
                        **{**COMMON, "max_steps": 1})
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok,
                            objectives=[length_mod, char_sum], callbacks=[reader])
    trainer.train()
    assert trainer.objective_names == ["length_mod", "char_sum"]
    assert reader.config["objectives"] == ["length_mod", "char_sum"]
    logged = [h for h in reader.logs if "weights/length_mod" in h]
    assert logged and logged[0]["weights/char_sum"] == pytest.approx(0.3)
    assert "covariance/length_mod" in logged[0]


def test_callables_in_the_config_keep_logging_json(tmp_path):
    """MOGRPOConfig(objectives=[f, g]) with a logging integration: the config serialises, influences are logged."""
    reader = _LogReader()
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(output_dir=str(tmp_path / "cfg"), objectives=[length_mod, char_sum], strategy="gradient",
                        strategy_params={"mu": 1e-2}, **{**COMMON, "max_steps": 1})
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok,
                            callbacks=[reader])
    trainer.train()
    assert reader.config["objectives"] == ["length_mod", "char_sum"]
    json.dumps(args.to_dict())
    logged = [h for h in reader.logs if "weights/length_mod" in h]
    assert logged
    for key in ("covariance/char_sum", "strategy/influence/length_mod", "strategy/influence/char_sum"):
        assert key in logged[0], sorted(logged[0])


def test_objective_count_mismatch_is_reported_by_the_trainer(tmp_path):
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(output_dir=str(tmp_path / "bad"), strategy_params={"weights": [0.7, 0.3]}, **COMMON)
    with pytest.raises(ValueError, match=r"strategy_params.weights has 2 entries but there are 3 objectives"):
        MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok)  # default objectives
    with pytest.raises(ValueError, match=r"got unknown parameter\(s\) \['weight'\]"):
        MOGRPOConfig(output_dir=str(tmp_path / "bad"), strategy_params={"weight": [0.7, 0.3]}, **COMMON)


@pytest.mark.parametrize(
    ("kw", "ok"),
    [
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 1}, False),  # 2 generations per optimizer step
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 3}, False),  # a generation ends mid-step
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 1, "num_iterations": 2}, True),
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 4}, True),
        ({"gradient_accumulation_steps": 3}, True),  # TRL's default steps_per_generation = gradient_accumulation
    ],
)
def test_accumulation_settings_pair_every_before_with_an_after_or_are_refused(tmp_path, kw, ok):
    base = {**COMMON, "per_device_train_batch_size": 4, "generation_batch_size": None}
    base.pop("generation_batch_size")
    if ok:
        MOGRPOConfig(output_dir=str(tmp_path), **{**base, **kw})
        return
    with pytest.raises(ValueError, match=r"must be a multiple of gradient_accumulation_steps"):
        MOGRPOConfig(output_dir=str(tmp_path), **{**base, **kw})


def test_every_generation_batch_gets_its_after_update(tmp_path):
    """steps_per_generation × num_iterations spanning several optimizer steps: one steps.jsonl line per batch."""
    trainer = _ours(tmp_path, max_steps=4, gradient_accumulation_steps=1, steps_per_generation=2,
                    per_device_train_batch_size=4)
    steps = [json.loads(line) for line in (trainer.run_dir / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [2, 4] and [s["rl_step"] for s in steps] == [1, 2]


def test_truncated_strategy_state_is_an_error_naming_file_and_key(tmp_path):
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(output_dir=str(tmp_path / "s"), strategy="ctwa", **COMMON)
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok)
    state = trainer.moalign_state()
    del state["strategy"]["state"]["ema_cov"]
    with pytest.raises(ValueError, match=r"ckpt/moalign_state.json: strategy 'ctwa' state has missing key\(s\) "
                                         r"\['ema_cov'\]"):
        trainer.load_moalign_state(state, source=tmp_path / "ckpt" / "moalign_state.json")
    trainer.load_moalign_state(trainer.moalign_state())  # a complete state loads


def test_step_lines_are_synced_at_checkpoints_not_every_step(tmp_path, monkeypatch):
    """steps.jsonl is fsync'd once per checkpoint (before moalign_state.json), not once per step (~10 ms each)."""
    import os

    import moalign.rundir as rundir

    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(rundir.os, "fsync", recording)
    trainer = _ours(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    lines = (trainer.run_dir / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert sum(p.endswith("steps.jsonl") for p in synced) == 1
    assert (trainer.run_dir / "checkpoint-2" / "moalign_state.json").exists()

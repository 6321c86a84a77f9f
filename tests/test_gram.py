"""GramProbe against brute-force autograd of TRL's own loss, per loss type and mask; refusals; DDP/FSDP2 (gloo)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trl import GRPOTrainer

from moalign.rl.gram import GramProbe, GramSkipped, gram_setup_problem, loss_directions, select_parameters
from moalign.tiny import tiny_model_and_tokenizer
from moalign.weighting.base import WeightingStrategy, register


@register("_test_gram_only")
class _GramOnly(WeightingStrategy):
    """Needs the Gram matrix, keeps its (uniform) weights."""

    needs = frozenset({"gram"})


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from test_trainer import _args, _dataset  # noqa: PLC0415 - shared tiny setup
    from moalign.trainer import MOGRPOTrainer

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=3)
    args = _args(tmp_path_factory.mktemp("gram"), strategy="_test_gram_only", gradient_checkpointing=False,
                 bf16=False)  # fp32 matmuls, so that probe and autograd agree to float precision
    t = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok)
    t.model.train()
    t.current_gradient_accumulation_steps = 1
    return t


def _inputs(trainer, seed, b=6, p=5, t=8, k=3, on_policy=False):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, 5:] = 0
    mask[3, 2:] = 0
    inputs = {
        "prompt_ids": torch.randint(10, 60, (b, p), generator=g), "prompt_mask": torch.ones(b, p, dtype=torch.long),
        "completion_ids": torch.randint(10, 60, (b, t), generator=g), "completion_mask": mask,
        "num_items_in_batch": mask.sum() * 2,  # the generation batch spans more tokens than this micro-batch
    }
    if not on_policy:
        with torch.no_grad():
            logps, _, _ = trainer._forward_logps(trainer.model, inputs)
        inputs["old_per_token_logps"] = logps + 0.3 * torch.randn(b, t, generator=g)  # ratios ≠ 1: clipping active
    adv = torch.randn(b, k, generator=g)
    adv[1, 0] = 0.0
    return inputs, adv


def _brute_force(trainer, inputs, adv, params, scale=1.0):
    """Per objective: TRL's own _compute_loss with that objective's advantages, autograd w.r.t. the subset."""
    rows, losses = [], []
    for k in range(adv.shape[1]):
        loss = GRPOTrainer._compute_loss(trainer, trainer.model, dict(inputs, advantages=adv[:, k])) * scale
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params)]).double())
        losses.append(loss.item())
    return torch.stack(rows), np.array(losses)


def _probe(trainer, chunks, adv_chunks, scale=1.0):
    probe = trainer._gram_probe_now()
    probe.reset(len(chunks))
    for inputs, adv in zip(chunks, adv_chunks):
        with probe.capture():
            logps, ent, _ = trainer._forward_logps(trainer.model, inputs)
        probe.accumulate(logps, trainer._policy_loss_fn(trainer.model, inputs, ent), adv, scale=scale)
    gram, losses = probe.finish()
    return gram, losses.numpy()


CASES = {
    "grpo": {}, "bnpo": {"loss_type": "bnpo"}, "dr_grpo": {"loss_type": "dr_grpo"}, "dapo": {"loss_type": "dapo"},
    "cispo": {"loss_type": "cispo"}, "sapo": {"loss_type": "sapo"}, "luspo": {"loss_type": "luspo"},
    "vespo": {"loss_type": "vespo"},
    "dapo+entropy_mask": {"loss_type": "dapo", "top_entropy_quantile": 0.5},
    "grpo+off_policy_mask": {"off_policy_mask_threshold": 0.01},
    "bnpo+delta": {"loss_type": "bnpo", "args.delta": 1.05},
    "grpo+sequence_ratio": {"importance_sampling_level": "sequence"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_probe_equals_autograd_of_trl_loss_per_objective(trainer, monkeypatch, case):
    """G = V Vᵀ with V_k = ∇ TRL._compute_loss(A_k) on the probed subset, and the losses are TRL's values."""
    monkeypatch.setattr(trainer, "loss_type", "grpo")
    for key, value in CASES[case].items():
        target, name = (trainer.args, key[5:]) if key.startswith("args.") else (trainer, key)
        monkeypatch.setattr(target, name, value)
    assert trainer.beta == 0.0
    inputs, adv = _inputs(trainer, seed=sorted(CASES).index(case))
    params = [p for _, p in select_parameters(trainer.model)]
    v, losses = _brute_force(trainer, inputs, adv, params)
    gram, probe_losses = _probe(trainer, [inputs], [adv])
    assert v.abs().sum() > 0
    torch.testing.assert_close(gram, v @ v.T, rtol=2e-4, atol=1e-10)
    np.testing.assert_allclose(probe_losses, losses, rtol=1e-4, atol=1e-7)


def test_on_policy_loss_needs_one_direction_and_two_micro_batches_sum_before_the_gram(trainer, monkeypatch):
    monkeypatch.setattr(trainer, "loss_type", "dapo")
    (a, adv_a), (b, adv_b) = _inputs(trainer, 11, on_policy=True), _inputs(trainer, 12, on_policy=True)
    logps, ent, _ = trainer._forward_logps(trainer.model, a)
    directions, _, _ = loss_directions(trainer._policy_loss_fn(trainer.model, a, ent), logps)
    assert len(directions) == 1  # ratio = 1, no active clip: the loss is linear in A
    params = [p for _, p in select_parameters(trainer.model)]
    va, la = _brute_force(trainer, a, adv_a, params, scale=0.5)
    vb, lb = _brute_force(trainer, b, adv_b, params, scale=0.5)
    gram, losses = _probe(trainer, [a, b], [adv_a, adv_b], scale=0.5)
    v = va + vb  # the Gram of the summed gradient, not the sum of per-micro-batch Grams
    torch.testing.assert_close(gram, v @ v.T, rtol=2e-4, atol=1e-10)
    np.testing.assert_allclose(losses, la + lb, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(gram, va @ va.T + vb @ vb.T, rtol=1e-3)


def test_probe_memory_is_one_tensor_at_a_time(trainer):
    """No K × probed-parameters buffer with one micro-batch: the largest block is K × the largest probed tensor."""
    inputs, adv = _inputs(trainer, 3)
    _probe(trainer, [inputs], [adv])
    probe = trainer._gram_probe
    largest = max(getattr(m, n).numel() for m, names in probe.modules for n in names)
    assert probe.peak_block_bytes == 3 * largest * 4
    assert probe.peak_block_bytes < 3 * probe.numel * 4 / 4


def test_probe_without_captured_modules_is_a_skip_with_its_reason(trainer):
    inputs, adv = _inputs(trainer, 4)
    probe = trainer._gram_probe_now()
    probe.reset(1)
    logps, ent, _ = trainer._forward_logps(trainer.model, inputs)  # not inside probe.capture()
    with pytest.raises(GramSkipped, match="no probed module ran"):
        probe.accumulate(logps, trainer._policy_loss_fn(trainer.model, inputs, ent), adv)


def test_tied_parameters_are_refused():
    model, _ = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)  # tie_word_embeddings
    with pytest.raises(ValueError, match="several modules"):
        GramProbe(model, select_parameters(model, regex="embed_tokens"), 3)


@pytest.mark.parametrize(("kwargs", "fix"), [
    ({"zero_stage": 3}, "zero_stage: 2"),
    ({"fsdp_version": 1}, "fsdp_version: 2"),
    ({"gradient_checkpointing": True, "use_reentrant": True}, "use_reentrant: false"),
])
def test_unsupported_parallel_setups_are_refused_with_the_fix(kwargs, fix):
    assert fix in gram_setup_problem(**kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"zero_stage": 2}, {"fsdp_version": 2},
                                    {"gradient_checkpointing": True, "use_reentrant": False}])
def test_supported_parallel_setups_pass(kwargs):
    assert gram_setup_problem(**kwargs) is None


def test_reentrant_checkpointing_is_refused_at_trainer_construction(tmp_path):
    from test_trainer import _trainer

    with pytest.raises(ValueError, match="use_reentrant: false"):
        _trainer(tmp_path, strategy="_test_gram_only", gradient_checkpointing=True,
                 gradient_checkpointing_kwargs={"use_reentrant": True})


def test_two_process_ddp_and_fsdp2_gram_is_the_gram_of_the_global_gradient(tmp_path):
    """2 CPU processes (gloo), different local batches: probe == Gram of brute-force global gradients (DDP's averaged
    .grad; FSDP2's reduce-scattered DTensor shards, gathered), and != the mean of per-rank Grams."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "gram.json"
    script = Path(__file__).with_name("_gram_dist.py")
    proc = subprocess.run([sys.executable, str(script), "ddp,fsdp2", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for mode in ("ddp", "fsdp2"):
        gram, brute = np.array(results[mode]["gram"]), np.array(results[mode]["brute"])
        np.testing.assert_allclose(gram, brute, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(results["fsdp2"]["gram"], results["ddp"]["gram"], rtol=1e-5)
    per_rank = np.array(results["ddp"]["mean_of_rank_grams"])
    assert np.all(np.diag(per_rank) > 1.5 * np.diag(np.array(results["ddp"]["gram"])))  # the old, biased Gram


@pytest.mark.parametrize(("gas", "spg", "loss_type"), [(1, 1, "dapo"), (2, 2, "grpo")])
def test_gram_path_with_fixed_weights_is_exactly_trls_update(tmp_path, gas, spg, loss_type):
    """The probe (one-pass when gas = spg = 1, a separate pass otherwise) leaves TRL's update untouched."""
    from trl import GRPOConfig

    from moalign.objectives import Accuracy, Clarity, Conciseness
    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
    from test_trainer import _dataset

    common = dict(
        per_device_train_batch_size=8 // spg, num_generations=4, max_completion_length=12, max_steps=1,
        learning_rate=1e-2, report_to="none", logging_steps=1, use_cpu=True, seed=0, save_strategy="no",
        disable_tqdm=True, gradient_accumulation_steps=gas, steps_per_generation=spg, loss_type=loss_type, bf16=False,  # both in float32: TRL's GRPOConfig alone would autocast in bf16
    )
    model_a, tok_a = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    model_b, tok_b = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    ours = MOGRPOTrainer(model=model_a, train_dataset=_dataset(), processing_class=tok_a,
                         args=MOGRPOConfig(output_dir=str(tmp_path / "a"), strategy="_test_gram_only", **common))
    assert ours._gram_one_pass == (gas == 1)
    ours.train()
    assert ours._gram_probe is not None and np.isfinite(ours._gram_probe.gram()).all()
    trl = GRPOTrainer(model=model_b, reward_funcs=[Accuracy(), Conciseness(), Clarity()], train_dataset=_dataset(),
                      processing_class=tok_b,
                      args=GRPOConfig(output_dir=str(tmp_path / "b"), reward_weights=[1 / 3] * 3, **common))
    trl.train()
    loss_a = [h["loss"] for h in ours.state.log_history if "loss" in h]
    loss_b = [h["loss"] for h in trl.state.log_history if "loss" in h]
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    for (name, pa), (_, pb) in zip(model_a.named_parameters(), model_b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


def test_all_zero_gram_with_varying_rewards_is_a_logged_skip_with_its_reason(tmp_path, monkeypatch):
    from moalign.rundir import read_jsonl
    from test_trainer import _trainer

    monkeypatch.setattr(GramProbe, "gram", lambda self: torch.zeros(3, 3, dtype=torch.float64))
    trainer = _trainer(tmp_path, strategy="_test_gram_only", max_steps=1, advantage_estimator="rloo")
    trainer.train()
    (step,) = read_jsonl(trainer.run_dir / "steps.jsonl")
    assert step["skip_reason"].startswith("all-zero Gram matrix although objective advantages are non-zero")


class _ToyLM(torch.nn.Module):
    """Embedding, biased Linear, LayerNorm, an unused module and one module called twice: every probe path."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8, padding_idx=0)
        self.mix = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.unused = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 20)

    def forward(self, ids):
        h = self.embed(ids)
        h = torch.tanh(self.mix(h))
        h = self.mix(self.norm(h)) + h  # `mix` runs twice
        return torch.log_softmax(self.head(h), -1)


def test_probe_module_kinds_against_brute_force():
    torch.manual_seed(0)
    model = _ToyLM()
    ids = torch.randint(0, 20, (5, 7))
    adv = torch.randn(5, 3)
    old = torch.randn(5, 6) * 0.1 - 3.0

    def logps_of():
        return model(ids[:, :-1]).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)

    def loss_fn(lp, a):  # clipped, off-policy: two directions
        ratio = torch.exp(lp - old)
        return -torch.min(ratio * a[:, None], ratio.clamp(0.9, 1.1) * a[:, None]).mean()

    params = list(model.named_parameters())
    probe = GramProbe(model, params, 3)
    probe.reset(1)
    with probe.capture():
        lp = logps_of()
    probe.accumulate(lp, loss_fn, adv)
    gram, losses = probe.finish()
    rows, expected_losses = [], []
    for k in range(3):
        loss = loss_fn(logps_of(), adv[:, k])
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, (_, p) in zip(grads, params)]).double())
        expected_losses.append(loss.item())
    v = torch.stack(rows)
    torch.testing.assert_close(gram, v @ v.T, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(losses.numpy(), expected_losses, rtol=1e-5)


def test_two_process_ddp_trainer_gram_is_the_gram_of_trls_global_gradients(tmp_path):
    """MOGRPOTrainer under accelerate's DDP (2 gloo processes, dapo, objectives that vary on every rank): the Gram
    the strategy receives equals the Gram of the rank-averaged autograd gradients of TRL's own loss per objective."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "trainer_gram.json"
    script = Path(__file__).with_name("_gram_dist_trainer.py")
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert min(result["adv_std"]) > 0.01  # every objective's advantages vary on rank 0
    np.testing.assert_allclose(result["gram"], result["brute"], rtol=1e-5, atol=1e-10)


@register("_test_gram_record")
class _GramRecorder(WeightingStrategy):
    """Keeps its (uniform) weights and records every Gram matrix it is given."""

    needs = frozenset({"gram"})
    seen: list = []

    def before_update(self, stats):
        self.seen.append(np.array(stats.gram))


def _checkpointed_step(tmp_path, checkpointing: bool, keep_activations: bool):
    """One gradient-strategy step of the 3-layer tiny model probing layer 1; returns (trainer, grad-enabled forward
    calls of each decoder layer's attention, counted over the step: the forward and every recomputation)."""
    from test_trainer import _trainer

    _GramRecorder.seen.clear()
    t = _trainer(tmp_path, layers=3, strategy="_test_gram_record", max_steps=1, gram_layers="1", bf16=False,
                 gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
                 gram_keep_activations=keep_activations)
    calls = [0, 0, 0]
    for i, layer in enumerate(t.model.model.layers):
        def count(*_, i=i):
            calls[i] += torch.is_grad_enabled()  # generation and evaluation run without grad
        layer.self_attn.register_forward_hook(count)
    t.train()
    return t, calls, _GramRecorder.seen[-1]


def test_checkpointed_probe_recomputes_only_the_layers_below_the_probed_ones(tmp_path):
    """With gram_keep_activations under activation checkpointing, the one-pass Gram probe keeps the activations of the
    layers from the lowest probed one upward for its forward, so neither its backward nor the update's recomputes
    them: layer 0 runs twice (forward, recomputed by the update's backward), layers 1-2 once. Without it (the default)
    layers 1-2 run three times (the probe's backward recomputes them, then the update's). The Gram and the updated
    parameters equal those without checkpointing either way."""
    on, calls, gram_on = _checkpointed_step(tmp_path / "on", checkpointing=True, keep_activations=True)
    assert on._gram_one_pass
    assert calls == [2, 1, 1]
    assert all(layer.gradient_checkpointing for layer in on.model.model.layers)  # restored after the forward
    off, calls_off, gram_off = _checkpointed_step(tmp_path / "off", checkpointing=False, keep_activations=True)
    assert calls_off == [1, 1, 1]
    assert np.abs(gram_on).max() > 0
    np.testing.assert_allclose(gram_on, gram_off, rtol=1e-5, atol=1e-12)
    recomputed, calls_recomputed, gram_recomputed = _checkpointed_step(tmp_path / "recompute", True, False)
    assert calls_recomputed == [2, 3, 3]  # gram_keep_activations: false (the default)
    np.testing.assert_allclose(gram_recomputed, gram_off, rtol=1e-5, atol=1e-12)
    for (name, p_on), p_off in zip(on.model.named_parameters(), off.model.parameters()):
        torch.testing.assert_close(p_on, p_off, rtol=1e-5, atol=1e-6, msg=name)

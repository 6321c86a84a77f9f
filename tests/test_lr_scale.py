"""A strategy's learning-rate multiplier (``lr_scale``) reaches the parameter update in full.

This is where the hypervolume meta-reward acts by default (``apply_to="lr"``): a multiplier on the advantages is
largely undone by Adam's normalisation, a multiplier on the step's learning rate is not.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset

from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
from moalign.weighting.fixed import Fixed

OBJ = ["accuracy", "conciseness", "clarity"]


class _ScaledLR(Fixed):
    """Fixed weights whose learning rate is multiplied by a constant (test only)."""

    def __init__(self, *args, factor: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.factor = factor

    def lr_scale(self) -> float:
        return self.factor


def _dataset(n=16):
    rows = [{"prompt": [{"role": "user", "content": f"{i % 7 + 1}+{i % 5 + 2}=?"}], "answer": str(i % 7 + i % 5 + 3)}
            for i in range(n)]
    return Dataset.from_list(rows)


def _one_step(tmp_path, strategy, steps=1, optim="adamw_torch", **strategy_kwargs):
    torch.manual_seed(0)
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = MOGRPOConfig(
        output_dir=str(tmp_path), objectives=OBJ, max_steps=steps, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=12, learning_rate=1e-3, report_to="none", logging_steps=1, use_cpu=True, seed=0,
        save_strategy="no", disable_tqdm=True, log_level="error", optim=optim,
        strategy=strategy if isinstance(strategy, str) else "fixed", strategy_params=strategy_kwargs,
    )
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok,
                            strategy=None if isinstance(strategy, str) else strategy)
    trainer.train()
    delta = {n: (p.detach() - before[n]) for n, p in trainer.model.named_parameters()}
    steps_log = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    return trainer, delta, steps_log


@pytest.mark.parametrize("optim", ["adamw_torch", "sgd"])
def test_lr_scale_multiplies_the_parameter_update_by_its_factor(tmp_path, optim):
    _, plain, _ = _one_step(tmp_path / "plain", _ScaledLR(3, OBJ, factor=1.0), optim=optim)
    trainer, doubled, log = _one_step(tmp_path / "doubled", _ScaledLR(3, OBJ, factor=2.0), optim=optim)
    # parameters whose change is well above float32 resolution (|p| ≈ 1 resolves ≈ 6e-8)
    moved = [n for n in plain if plain[n].abs().max() > 1e-5]
    assert len(moved) > 5
    for n in moved:  # same batch (generation precedes the update), so only the learning rate differs
        # float32 differences p_after − p_before carry rounding of |p| ≫ |Δp|: tolerance at that resolution
        torch.testing.assert_close(doubled[n], 2.0 * plain[n], rtol=1e-3, atol=1e-7, msg=n)
    assert log[0]["lr_scale"] == 2.0
    assert log[0]["lr"] == pytest.approx(1e-3)  # the logged schedule is the scheduler's, not the scaled value
    # the multiplier applies to that step only: the optimizer's learning rate is the scheduler's again
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.lr_scheduler.get_last_lr()[0])


def test_advantage_scale_is_largely_undone_by_adam_but_lr_scale_is_not(tmp_path):
    """Why the hypervolume default moved to the learning rate: ×0.5 on the advantages changes Adam's first update
    by (almost) nothing, ×0.5 on the learning rate halves it."""

    class _HalfAdvantage(Fixed):
        def advantage_scale(self) -> float:
            return 0.5

    _, plain, _ = _one_step(tmp_path / "plain", Fixed(3, OBJ))
    _, half_adv, _ = _one_step(tmp_path / "adv", _HalfAdvantage(3, OBJ))
    _, half_lr, _ = _one_step(tmp_path / "lr", _ScaledLR(3, OBJ, factor=0.5))
    norm = lambda d: torch.sqrt(sum((v.double() ** 2).sum() for v in d.values()))  # noqa: E731
    assert float(norm(half_adv) / norm(plain)) == pytest.approx(1.0, abs=0.05)
    assert float(norm(half_lr) / norm(plain)) == pytest.approx(0.5, rel=1e-4)


def test_hypervolume_r_pareto_is_the_logged_lr_scale(tmp_path):
    _, _, log = _one_step(tmp_path, "hypervolume", steps=4, point_source="train_batch")
    for line in log:
        assert line["lr_scale"] == pytest.approx(line["strategy"]["r_pareto"], abs=0), line
        assert line["advantage_scale"] == 1.0
    assert log[0]["lr_scale"] == 1.0  # the first batch sets the reference point: neutral


def test_hypervolume_validation_points_come_from_their_own_split(tmp_path):
    """With a validation_dataset the meta-reward's points are greedy evaluations of that split (``val`` lines in
    evals.jsonl: step 0 = reference point, then every hv_eval_every RL steps); the reported split is untouched by it."""
    torch.manual_seed(0)
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(
        output_dir=str(tmp_path), objectives=OBJ, max_steps=4, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=12, learning_rate=1e-3, report_to="none", logging_steps=1, use_cpu=True, seed=0,
        save_strategy="no", disable_tqdm=True, log_level="error", strategy="hypervolume",
        strategy_params={"hv_eval_every": 2}, mo_eval_steps=4, mo_eval_size=4, mo_validation_size=3,
    )
    test, val = _dataset(8), _dataset(6)
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(), eval_dataset=test,
                            validation_dataset=val, processing_class=tok, eval_split_name="test")
    trainer.train()
    evals = [json.loads(line) for line in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert [(e["split"], e["step"]) for e in evals] == [
        ("test", 0), ("val", 0), ("val", 2), ("val", 4), ("test", 4)]
    assert len(trainer._validator.rows) == 3 and len(trainer._evaluator.rows) == 4
    buffer = trainer.strategy.state_dict()["buffer"]
    val0 = next(e for e in evals if e["split"] == "val" and e["step"] == 0)
    from moalign.evaluation import normalised_point

    assert val0["metrics"]
    assert buffer["ref"] == [0.0, 0.0, 0.0]  # default reference: the origin of the normalised space
    first = trainer.strategy.state_dict()
    assert first["last_point_step"] == 4  # the val point of step 4 was the last one observed
    assert set(buffer["steps"]) <= {0, 2, 4}  # buffer members are val-split evaluations
    for p, step in zip(buffer["points"], buffer["steps"]):  # ... with the metrics written under split "val"
        e = next(e for e in evals if e["split"] == "val" and e["step"] == step)
        np.testing.assert_allclose(p, normalised_point(e["metrics"], trainer.objectives, 12))

"""The whole MOGRPOTrainer, two CPU processes (gloo, launched by torchrun from tests/test_trainer_dist.py), with the
gradient strategy (Gram probe every step) under FSDP2 (``fsdp: full_shard``, ``fsdp_config.version: 2``) or plain
DDP, so the two runs can be compared step by step.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 tests/_trainer_fsdp.py fsdp2|ddp OUT_DIR``; rank 0 writes
``OUT_DIR/<mode>.json`` with every step's weights and reward means and the gathered rewards, Gram and learning rate
the strategy received.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset

from moalign import weighting
from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer


def _text(c):
    return c[0]["content"] if isinstance(c, list) else c


def distinct(prompts, completions, **kwargs):
    return [len(set(_text(c))) / 8 for c in completions]


def alpha(prompts, completions, **kwargs):
    return [sum(ch.isalpha() for ch in _text(c)) / max(len(_text(c)), 1) for c in completions]


def _allow_fsdp_on_cpu() -> None:
    """accelerate turns its FSDP plugin on only for multi-GPU-type setups and silently drops it on CPU
    (``AcceleratorState``: ``MULTI_CPU`` is not in the list); FSDP2's ``fully_shard`` itself runs on CPU with gloo.
    Keep the plugin there, so the trainer's model goes through accelerate's own FSDP2 preparation."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does on GPUs

    AcceleratorState.__init__ = init


def main(mode: str, out: Path) -> None:
    torch.set_num_threads(1)
    if mode == "fsdp2":
        _allow_fsdp_on_cpu()
    seen = []

    class Recording(weighting.STRATEGIES["gradient"]):  # the gradient strategy, recording what it receives
        def before_update(self, stats):
            seen.append({"gram": stats.gram.tolist(), "rewards": stats.rewards.tolist(), "lr": stats.lr})
            super().before_update(stats)

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    rows = [{"prompt": [{"role": "user", "content": f"{i % 7 + 1}+{i % 5 + 2}=?"}]} for i in range(16)]
    sharding = {"fsdp": True, "fsdp_config": {"version": 2}} if mode == "fsdp2" else {}
    args = MOGRPOConfig(
        output_dir=str(out / mode), strategy="gradient", strategy_params={"mu": 1e-2, "normalize": "none"}, advantage_estimator="rloo",
        per_device_train_batch_size=4, num_generations=4, max_completion_length=8, max_steps=2, learning_rate=1e-2,
        report_to="none", logging_steps=1, use_cpu=True, seed=0, save_strategy="no", disable_tqdm=True, bf16=False,
        loss_type="dapo", beta=0.0, **sharding,
    )
    strategy = Recording(2, ["distinct", "alpha"], mu=1e-2, normalize="none")
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                            objectives=[distinct, alpha], strategy=strategy)
    assert trainer.accelerator.num_processes == 2
    assert bool(getattr(trainer, "is_fsdp_enabled", False)) == (mode == "fsdp2")
    trainer.train()
    if trainer.accelerator.is_main_process:
        steps = [json.loads(line) for line in (Path(trainer.run_dir) / "steps.jsonl").read_text().splitlines()]
        (out / f"{mode}.json").write_text(json.dumps({
            "weights": [list(s["weights"].values()) for s in steps],
            "rewards": [list(s["rewards"].values()) for s in steps],
            "skip": [s.get("skip_reason") for s in steps],
            "seen": seen,
        }))
    trainer.accelerator.wait_for_everyone()  # as `moalign train` does: no rank ends the group while another uses it
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

"""Two CPU processes (gloo, torchrun, from tests/test_reward_model_dist.py): a tiny two-head reward model as two
objectives under DDP. Each rank scores its own completions (one forward per step), the gathered rewards are the
ones each rank computed, and the range calibrated on the main process reaches every rank.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 tests/_reward_model_dist.py OUT_DIR RM_DIR``; each rank
writes ``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset

from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer


def _dataset(n):
    rows = [{"prompt": [{"role": "user", "content": f"{i % 7 + 1}+{i % 5 + 2}=?"}], "answer": "0"} for i in range(n)]
    return Dataset.from_list(rows)


def main(out: Path, rm_dir: str) -> None:
    torch.set_num_threads(1)
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=1)
    args = MOGRPOConfig(
        output_dir=str(out / "run"), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=1e-2, report_to="none", logging_steps=1, use_cpu=True, seed=0, bf16=False,
        save_strategy="no", disable_tqdm=True, beta=0.0, mo_eval_steps=1, mo_eval_size=2,
        per_device_eval_batch_size=2, strategy="gradient",
    )
    entry = {"model": rm_dir, "heads": ["helpful", {"name": "verbose", "index": 1, "maximize": False}]}
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(16), eval_dataset=_dataset(4),
                            processing_class=tok, objectives=[entry])
    rm = trainer.objectives[0].reward_model
    steps = []
    calculate = trainer._calculate_rewards

    def recorded(inputs, prompts, completions, completion_ids_list):
        before = rm.forward_count
        rewards = calculate(inputs, prompts, completions, completion_ids_list)
        steps.append({"prompts": prompts, "completions": completions, "forwards": rm.forward_count - before,
                      "gathered": rewards.tolist()})
        return rewards

    trainer._calculate_rewards = recorded
    trainer.train()
    rank = trainer.accelerator.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world": trainer.accelerator.num_processes, "steps": [s for s in steps if len(s["gathered"]) == 8],
        "ranges": {o.name: o.score_range for o in trainer.objectives},
        "device": str(rm.device), "weights": trainer.strategy.state_dict(),
    }))
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])

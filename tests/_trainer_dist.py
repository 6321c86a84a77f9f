"""Two CPU processes (gloo, launched by torchrun from tests/test_trainer_dist.py): MOGRPOTrainer's rank-level
behaviour -- unscored counts summed over ranks, evaluation on the main process only with the result broadcast, and the
same strategy state on every rank.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 tests/_trainer_dist.py OUT_DIR``; each rank writes
``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset

import moalign.trainer_eval as trainer_eval
from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer


def _text(c):
    return c[0]["content"] if isinstance(c, list) else c


def first_unscored(prompts, completions, **kwargs):
    """Leaves the first completion each rank scores unscored: one per rank and step."""
    return [None if i == 0 else (len(_text(c)) % 5) / 4 for i, c in enumerate(completions)]


def char_sum(prompts, completions, **kwargs):
    return [(sum(map(ord, _text(c))) % 7) / 6 for c in completions]


def _dataset(n):
    rows = [{"prompt": [{"role": "user", "content": f"{i % 7 + 1}+{i % 5 + 2}=?"}], "answer": "0"} for i in range(n)]
    return Dataset.from_list(rows)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    calls = []
    real = trainer_eval.evaluate_policy

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    trainer_eval.evaluate_policy = counted
    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    args = MOGRPOConfig(
        output_dir=str(out / "run"), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=1e-2, report_to="none", logging_steps=1, use_cpu=True, seed=0,
        save_strategy="no", disable_tqdm=True, beta=0.0, strategy="hypervolume",
        strategy_params={"hv_eval_every": 1, "weights": [0.5, 0.5]}, mo_eval_steps=1, mo_eval_size=2,
        per_device_eval_batch_size=2,
    )
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=_dataset(16), eval_dataset=_dataset(4),
                            processing_class=tok, objectives=[first_unscored, char_sum])
    trainer.train()
    rank = trainer.accelerator.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world": trainer.accelerator.num_processes,
        "evaluate_calls": len(calls),
        "strategy_state": trainer.strategy.state_dict(),
    }))
    trainer.accelerator.wait_for_everyone()  # as `moalign train` does: no rank ends the group while another uses it
    trainer.accelerator.end_training()  # and no process group is left alive at exit


if __name__ == "__main__":
    main(Path(sys.argv[1]))

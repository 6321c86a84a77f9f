"""A 2-step run of the warm-started synthetic task with a report_to logger (tests/test_live_front.py).

As a script (``python tests/_live_front_run.py trackio OUT``) it trains with ``report_to: trackio`` into the local
trackio directory given by $TRACKIO_DIR and prints the logged rows as JSON, read back with trackio's own storage."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run(report_to: str, out: Path, strategy: str = "fixed", steps: int = 2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moalign.data.synthetic import load_synthetic
    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
    from moalign.warmstart import warm_start

    model_dir = warm_start(progress=False)
    splits = load_synthetic(seed=0, n_train=64, n_val=8, n_test=12)
    args = MOGRPOConfig(
        output_dir=str(out / "checkpoints"), run_dir=str(out), run_name="live-front",
        project="moalign-test", objectives=["accuracy", "conciseness"], strategy=strategy, max_steps=steps, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=48, learning_rate=2e-4, beta=0.0, mo_eval_steps=1,
        per_device_eval_batch_size=12, logging_steps=1, save_strategy="no", report_to=report_to, use_cpu=True,
        seed=0, disable_tqdm=True,
    )
    trainer = MOGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                            train_dataset=splits["train"], eval_dataset=splits["test"],
                            processing_class=AutoTokenizer.from_pretrained(model_dir), eval_split_name="test")
    trainer.train()
    return trainer


if __name__ == "__main__":
    report_to, out = sys.argv[1], Path(sys.argv[2])
    run(report_to, out)
    from trackio.sqlite_storage import SQLiteStorage

    print(json.dumps(SQLiteStorage.get_logs("moalign-test", "live-front"), default=str))

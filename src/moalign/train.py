"""``moalign train``: build model, data and :class:`~moalign.trainer.MOGRPOTrainer` from a config, then train."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .config import DataArguments
from .loading import TINY, build_datasets, build_model_and_tokenizer

__all__ = ["build_model_and_tokenizer", "build_datasets", "train"]

logger = logging.getLogger(__name__)


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The highest ``checkpoint-N`` that has ``moalign_state.json`` (written last, so a checkpoint killed while
    saving is skipped)."""
    from .rundir import STATE_FILE

    root = Path(output_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / STATE_FILE).is_file()]
    if not done:
        return None
    best = max(done, key=lambda p: int(p.name.split("-")[-1]))
    skipped = [p.name for p in root.glob("checkpoint-*") if p not in done and p.name.split("-")[-1].isdigit()
               and int(p.name.split("-")[-1]) > int(best.name.split("-")[-1])]
    if skipped:
        logger.warning("skipping incomplete checkpoint(s) %s (no moalign_state.json); resuming from %s",
                       ", ".join(sorted(skipped)), best.name)
    return str(best)


def train(data_args: DataArguments, model_args, train_args, resume_from_checkpoint: str | bool | None = None):
    """Run one training job; returns the trainer (its ``run_dir`` holds the run directory)."""
    from trl import get_peft_config

    from .mo_config import resolve_objectives
    from .rl.engine import StepEngine
    from .trainer import MOGRPOTrainer

    # Data, strategy and checkpoint first: a wrong path, missing columns, an unknown split, a bad strategy parameter
    # or a missing checkpoint fail before any model is built or written.
    train_ds, eval_ds = build_datasets(data_args)
    names = [o.name for o in resolve_objectives(train_args)[0]]
    engine = StepEngine.from_config(train_args, names)  # the run's only strategy instance
    resume = resume_from_checkpoint if resume_from_checkpoint is not None else train_args.resume_from_checkpoint
    if resume is True or (isinstance(resume, str) and resume.lower() in ("true", "last")):
        resume = last_complete_checkpoint(train_args.output_dir)
        if resume is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint is set but {train_args.output_dir} holds no checkpoint-N directory; "
                "drop the flag to start a new run"
            )
    if isinstance(resume, str) and not Path(resume).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint={resume!r} is not a directory")
    model, tokenizer = build_model_and_tokenizer(model_args, data_args, seed=train_args.seed)
    if model_args.model_name_or_path == TINY:
        # TRL builds the KL reference model (beta > 0) from the policy's path, so the random-init model needs one;
        # it also lets `moalign eval` reload the exact initial policy.
        initial = Path(train_args.run_dir or train_args.output_dir) / "initial_model"
        with train_args.main_process_first(desc="saving the initial tiny model"):
            if train_args.process_index == 0:
                model.save_pretrained(initial)
                tokenizer.save_pretrained(initial)
        model.config._name_or_path = str(initial)
    trainer = MOGRPOTrainer(
        model=model,
        args=train_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        eval_split_name=data_args.dataset_eval_split or "eval",
        engine=engine,
    )
    trainer.extra_run_info = {
        "data": dataclasses.asdict(data_args),
        "model": {"model_name_or_path": model_args.model_name_or_path, "use_peft": model_args.use_peft},
    }
    trainer.train(resume_from_checkpoint=resume or None)
    trainer.save_model(str(Path(trainer.run_dir) / "final"))
    return trainer

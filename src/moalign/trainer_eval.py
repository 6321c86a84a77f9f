"""Evaluations (greedy unless ``mo_eval_temperature`` > 0) while :class:`~moalign.trainer.MOGRPOTrainer` trains: ``evals.jsonl`` lines (every
``mo_eval_steps`` RL steps and at step 0), the live Pareto metrics of the reported split (:mod:`moalign.live_front`,
through ``report_to``) and the validation points of strategies that need them."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import Trainer, TrainerCallback

from .evaluation import calibrate_ranges, eval_seed, evaluate_policy, normalised_point
from .live_front import FrontTracker, log_front_table
from .rundir import append_jsonl

__all__ = ["FrontTableCallback", "TrainingEvaluator", "default_tensorboard_dir"]


class TrainingEvaluator:
    """Evaluations during training: ``evals.jsonl`` lines and the hypervolume strategy's validation points."""

    def __init__(self, trainer, dataset, split: str, size: int | None, live: bool = False):
        rows = [dict(r) for r in (dataset.select(range(min(size, len(dataset)))) if size else dataset)]
        self.trainer, self.rows, self.split = trainer, rows, split
        self._last: tuple[int, dict[str, Any]] | None = None
        # The reported split's evaluations also go to the report_to loggers, with the front so far (live_front.py).
        self.front = FrontTracker(trainer.objectives_meta(), trainer.max_completion_length, split) if live else None

    def evaluate(self, step: int) -> dict[str, Any]:
        """Evaluation of the current policy. With several processes the main process evaluates and broadcasts
        the metrics (every rank gets the same validation point); with sharded parameters (FSDP, ZeRO-3), whose
        generation needs every rank, all ranks evaluate the same rows and the main process writes the line."""
        if self._last is not None and self._last[0] == step:
            return self._last[1]
        t = self.trainer
        acc = t.accelerator
        sharded = getattr(t, "is_fsdp_enabled", False) or (
            getattr(t, "is_deepspeed_enabled", False) and acc.state.deepspeed_plugin.zero_stage == 3)
        if acc.num_processes == 1 or sharded or acc.is_main_process:
            metrics = self._run(step)
        else:
            metrics = None
        if acc.num_processes > 1 and not sharded:
            from accelerate.utils import broadcast_object_list

            metrics = broadcast_object_list([metrics], from_process=0)[0]
        calibrated = metrics.pop("_calibrated_ranges", None)
        if calibrated:  # the main process's calibration, applied on every rank (validation points use it)
            for o in t.objectives:
                if o.name in calibrated:
                    o.score_range, o.range_source = list(calibrated[o.name]), "calibrated"
            t.write_run_json()  # frozen in run.json now; moalign_state.json holds it from the next checkpoint
            for evaluator in {id(e): e for e in (t._evaluator, t._validator) if e is not None}.values():
                if evaluator.front is not None:
                    evaluator.front.objectives_meta = t.objectives_meta()
        self._last = (step, metrics)
        if t.accelerator.is_main_process:
            append_jsonl(t.run_dir / "evals.jsonl", {"step": step, "split": self.split, "metrics": metrics},
                         fsync=False)  # synced at every checkpoint
            if self.front is not None:
                # transformers' Trainer.log, not GRPOTrainer.log, which would flush TRL's per-step metrics early;
                # its on_log clears control.should_log, which would drop TRL's own log of this step: keep it.
                should_log = t.control.should_log
                Trainer.log(t, self.front.add(step, metrics))
                t.control.should_log = should_log
        return metrics

    def _run(self, step: int) -> dict[str, Any]:
        from trl.models import unwrap_model_for_generation

        t = self.trainer
        with unwrap_model_for_generation(t.model_wrapped, t.accelerator) as model:
            metrics = evaluate_policy(
                model, t.processing_class, self.rows, t.objectives, max_new_tokens=t.max_completion_length,
                batch_size=max(t.args.per_device_eval_batch_size, 1), chat_template_kwargs=t.chat_template_kwargs,
                temperature=t.args.mo_eval_temperature, seed=eval_seed(t.args.seed, step),
            )
        if step == 0:  # reward models without a range: calibrated once, on the initial policy (docs/objectives.md)
            metrics["_calibrated_ranges"] = calibrate_ranges(t.objectives, metrics["per_row"])
        for key in ("completions", "per_row"):
            metrics.pop(key)
        return metrics

    def validation_point(self, step: int) -> np.ndarray:
        return normalised_point(self.evaluate(step), self.trainer.objectives, self.trainer.max_completion_length)


class FrontTableCallback(TrainerCallback):
    """At the end of training, the reported split's Pareto front goes to the loggers as a table."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        evaluator = self.trainer._evaluator
        if evaluator is not None and evaluator.front is not None:
            log_front_table(self.trainer, *evaluator.front.front_table())


def default_tensorboard_dir(trainer) -> None:
    """TensorBoard logs go to ``<run_dir>/tensorboard`` unless $TENSORBOARD_LOGGING_DIR says otherwise
    (transformers' own default is ``./runs/<time>_<host>``, away from the run)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(trainer.run_dir / "tensorboard")

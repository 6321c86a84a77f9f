"""Live Pareto metrics: every evaluation during training goes to the loggers of TRL's ``report_to``
(TensorBoard, W&B, trackio, ...), with the hypervolume of the run's evaluation front so far.

:class:`FrontTracker` is framework-free: it keeps one split's evaluations and computes, with the same functions as
``moalign report`` (:func:`moalign.evaluation.summarize_front`), what each new evaluation adds. The trainer logs
its :meth:`FrontTracker.add` result through ``transformers.Trainer.log`` and, at the end of training, the front as a
table (:func:`log_front_table`).

Logged keys (before transformers' ``rewrite_logs``, which every TRL logger applies: ``eval_x`` shows as ``eval/x``,
any other key ``k`` as ``train/k``):

- ``eval_<metric>``: the evaluation's mean of every objective, and ``length`` (mean tokens);
- ``pareto/hypervolume``: HV of the non-dominated evaluations so far, in the normalised space (length as
  ``1 - length/max_completion_length``) against the reference point in ``run.json`` (``pareto.reference_point``,
  the origin);
- ``pareto/front_size``: the number of distinct evaluations on that front;
- ``pareto/new_point_nondominated``: 1 when no earlier evaluation dominates this one, else 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import pareto
from .evaluation import eval_matrix, metric_space, summarize_front

__all__ = ["FrontTracker", "log_front_table"]


class FrontTracker:
    """The evaluations of one split of one run, and the front they form so far."""

    def __init__(self, objectives_meta: Sequence[dict[str, Any]], max_completion_length: int, split: str):
        self.objectives_meta = [dict(o) for o in objectives_meta]
        self.space = metric_space(self.objectives_meta)
        self._maximize = [mx for _, mx in self.space]
        self.max_completion_length = int(max_completion_length)
        self.split = split
        self.evals: list[dict[str, Any]] = []

    @property
    def reference_point(self) -> list[float]:
        """The HV reference point in the normalised space (the origin, as ``moalign report`` uses)."""
        return [0.0] * len(self.space)

    def restore(self, evals: Sequence[dict[str, Any]]) -> None:
        """Continue from ``evals.jsonl`` records (a resumed run): those of this split are the history."""
        self.evals = [e for e in evals if e.get("split") == self.split]

    def add(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
        """Record one evaluation; returns the metrics to log for it (keys in the module docstring)."""
        self.evals.append({"step": int(step), "split": self.split, "metrics": dict(metrics)})
        front = summarize_front(self.evals, self.objectives_meta, self.max_completion_length)
        newest_on_front = bool(pareto.nondominated(eval_matrix(self.evals, self.space), maximize=self._maximize)[-1])
        logs = {f"eval_{key}": float(value) for key, value in metrics.items()
                if key != "n" and isinstance(value, (int, float)) and math.isfinite(float(value))}
        logs["pareto/hypervolume"] = front.hypervolume
        logs["pareto/front_size"] = float(len(front.steps))
        logs["pareto/new_point_nondominated"] = float(newest_on_front)
        return logs

    def front_table(self) -> tuple[list[str], list[list[float]]]:
        """``(columns, rows)`` of the current front: its steps and raw metrics, as ``moalign report`` lists them."""
        if not self.evals:
            return ["step"] + [m for m, _ in self.space], []
        front = summarize_front(self.evals, self.objectives_meta, self.max_completion_length)
        rows = sorted([[step, *point] for step, point in zip(front.steps, front.points)], key=lambda r: r[0])
        return ["step", *front.metrics], rows


def _markdown_table(columns: list[str], rows: list[list[float]]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(f"{v:g}" for v in row) + " |\n" for row in rows)


def log_front_table(trainer, columns: list[str], rows: list[list[float]], key: str = "pareto/front") -> None:
    """Send the front as a table to each ``report_to`` logger that shows tables: a W&B Table, a trackio Table, and
    a TensorBoard text summary (markdown). Like TRL's completions table, this goes to each backend directly,
    since ``Trainer.log`` passes only scalars and strings through every logger."""
    if not trainer.accelerator.is_main_process or not rows:
        return
    report_to = trainer.args.report_to or []
    step = int(trainer.state.global_step)
    if "wandb" in report_to:
        import wandb

        if wandb.run is not None:
            wandb.log({key: wandb.Table(columns=columns, data=rows)})
    if "trackio" in report_to:
        import pandas as pd
        import trackio

        trackio.log({key: trackio.Table(dataframe=pd.DataFrame(rows, columns=columns))})
    if "tensorboard" in report_to:
        from transformers.integrations import TensorBoardCallback

        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                callback.tb_writer.add_text(key, _markdown_table(columns, rows), step)
                callback.tb_writer.flush()

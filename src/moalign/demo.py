"""``moalign demo``: fixed presets vs dynamic weighting on the embedded synthetic task, on CPU, in minutes.

Warm start (SFT of the tiny char model, cached) -> RL with each method on the same budget and seeds, greedy
evaluation on the test split every few steps (step 0 included) -> ``moalign report`` over all runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoConfig", "METHODS", "run_demo"]

logger = logging.getLogger(__name__)

# (run label, strategy, strategy_params, advantage estimator)
METHODS: list[tuple[str, str, dict[str, Any], str]] = [
    ("fixed-accuracy", "fixed", {"preset": "accuracy_focused"}, "grpo"),
    ("fixed-balanced", "fixed", {"preset": "balanced"}, "grpo"),
    ("fixed-efficiency", "fixed", {"preset": "efficiency_focused"}, "grpo"),
    ("hypervolume", "hypervolume", {"preset": "balanced", "point_source": "train_batch"}, "grpo"),
    # The gradient method assumes an update linear in the weights: rloo keeps it (arXiv 2509.11452 §5). μ is scaled
    # up from the paper's 1e-5 by the same factor (100) as the demo's learning rate is above the paper's 1e-6, so
    # that η_t/μ, the step of the weight update, stays the paper's.
    ("gradient", "gradient", {"mu": 1e-3}, "rloo"),
    ("ctwa", "ctwa", {}, "grpo"),
]


@dataclass
class DemoConfig:
    """Budget of the demo; `quick` shrinks everything for a smoke run."""

    steps: int = 30
    seeds: int = 1
    out: str = "runs/demo"
    quick: bool = False
    methods: list[str] = field(default_factory=lambda: [m[0] for m in METHODS])
    eval_every: int = 5
    eval_size: int = 48
    prompts_per_step: int = 4
    generations: int = 8
    learning_rate: float = 1e-4  # 3e-4 and above collapse accuracy within 20 steps; 5e-5 barely moves
    max_completion_length: int = 64

    def __post_init__(self):
        if self.quick:
            self.steps = min(self.steps, 4)
            self.eval_every = 2
            self.eval_size = 16
            self.generations = 4
        unknown = sorted(set(self.methods) - {m[0] for m in METHODS})
        if unknown:
            raise ValueError(f"unknown demo method(s) {unknown}; choose from {', '.join(m[0] for m in METHODS)}")
        if self.steps < 1 or self.seeds < 1:
            raise ValueError(f"--steps and --seeds must be >= 1, got {self.steps} and {self.seeds}")


_LIBRARY_MODULES = r"(transformers|trl|accelerate|datasets|peft)(\.|$)"


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Only errors from transformers, datasets and TRL, and none of their progress bars, while the demo runs.

    The demo shows its own progress bar; the per-run "Loading weights" bars and the libraries' advice (aimed at a
    user who configured a trainer by hand) would bury it. Uses the libraries' own logging and progress-bar switches
    and restores them after. Python warnings are ignored only when issued from inside those libraries (their
    deprecation notices, e.g. TRL calling transformers' ``gradient_checkpointing_*``), which their logging switches
    do not reach; warnings from moalign or user code still show.
    """
    import warnings

    import datasets
    import transformers

    tf_log, ds_log = transformers.utils.logging, datasets.utils.logging
    saved = (tf_log.get_verbosity(), tf_log.is_progress_bar_enabled(), ds_log.get_verbosity(),
             datasets.is_progress_bar_enabled(), logging.getLogger("trl").level)
    tf_log.set_verbosity_error()
    tf_log.disable_progress_bar()
    ds_log.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_LIBRARY_MODULES)
            yield
    finally:
        tf_log.set_verbosity(saved[0])
        if saved[1]:
            tf_log.enable_progress_bar()
        ds_log.set_verbosity(saved[2])
        if saved[3]:
            datasets.enable_progress_bars()
        logging.getLogger("trl").setLevel(saved[4])


def _train_one(label, strategy, params, estimator, seed, model_dir, splits, cfg: DemoConfig, run_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from .trainer import MOGRPOConfig, MOGRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    args = MOGRPOConfig(
        output_dir=str(run_dir / "checkpoints"),
        run_dir=str(run_dir),
        objectives=["accuracy", "conciseness", "clarity"],
        strategy=strategy,
        strategy_params=params,
        advantage_estimator=estimator,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.generations,
        num_generations=cfg.generations,
        max_completion_length=cfg.max_completion_length,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        temperature=1.0,
        beta=0.0,
        mo_eval_steps=cfg.eval_every,
        mo_eval_size=cfg.eval_size,
        per_device_eval_batch_size=cfg.eval_size,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
    )
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["test"],
                            processing_class=tok, eval_split_name="test")
    trainer.remove_callback(PrinterCallback)  # the demo shows its own progress; metrics are in steps.jsonl
    trainer.extra_run_info = {"name": f"{label}-seed{seed}", "method": label, "seed_index": seed}
    trainer.train()
    return trainer


def run_demo(cfg: DemoConfig, progress: bool = True) -> Path:
    """Run the whole demo; returns the path of the report's ``index.html``."""
    with quiet_libraries():
        return _run_demo(cfg, progress)


def _run_demo(cfg: DemoConfig, progress: bool) -> Path:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .data.synthetic import load_synthetic
    from .report import build_report
    from .warmstart import warm_start

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = warm_start(progress=progress)
    splits = load_synthetic(seed=0)
    methods = [m for m in METHODS if m[0] in cfg.methods]
    jobs = [(m, seed) for seed in range(cfg.seeds) for m in methods]
    run_dirs = []
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("RL runs", total=len(jobs))
        for (label, strategy, params, estimator), seed in jobs:
            bar.update(task, description=f"RL: {label} (seed {seed})")
            run_dir = out / f"{label}-seed{seed}"
            _train_one(label, strategy, params, estimator, seed, model_dir, splits, cfg, run_dir)
            run_dirs.append(run_dir)
            bar.advance(task)
    index = build_report(run_dirs, out / "report", split="test")
    logger.info("demo finished in %.0f s", time.perf_counter() - started)
    return index

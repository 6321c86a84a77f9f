"""``moalign demo``: fixed presets vs dynamic weighting on the embedded synthetic task, on CPU, in minutes.

Warm start (SFT of the tiny char model, cached) -> RL with each method on the same budget and seeds, greedy
evaluation on the test split every few steps (step 0 included) -> ``moalign report`` over all runs.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoConfig", "GRADIENT_NOTE", "METHODS", "run_demo", "seeds_note"]

logger = logging.getLogger(__name__)

# (run label, strategy, strategy_params, advantage estimator). Every method uses the same estimator (grpo, as the
# paper's main tables), so a difference between methods is the weighting's, not the estimator's.
GRADIENT_MU = 3e-3  # η/μ = 1e-4/3e-3: chosen on calibration seeds 0-2 (docs/BENCHMARKS.md), reported on others
# How each member of the synthetic task family is evaluated. The async member's warm start shows every habit in most
# but not all of its answers (numbered lines 77 %, filler 62 % sampled), so greedy decoding shows each in all of them
# (clarity 1.0 from step 0, every run) and hides the rates the objectives are learned through: its evaluations sample
# one completion per problem at the rollouts' temperature (docs/demo_task.md). Chosen on calibration seeds 0-2.
TASK_EVAL_TEMPERATURE = {"coupled": 0.0, "async": 1.0, "habits": 1.0}  # habits: as async, for the same reason

METHODS: list[tuple[str, str, dict[str, Any], str]] = [
    ("fixed-accuracy", "fixed", {"preset": "accuracy_focused"}, "grpo"),
    ("fixed-balanced", "fixed", {"preset": "balanced"}, "grpo"),
    ("fixed-efficiency", "fixed", {"preset": "efficiency_focused"}, "grpo"),
    # validation points on the val split every 2 steps (the paper's setup; the test split only reports)
    ("hypervolume", "hypervolume", {"preset": "balanced", "hv_eval_every": 2}, "grpo"),
    ("gradient", "gradient", {"mu": GRADIENT_MU}, "grpo"),
    ("ctwa", "ctwa", {}, "grpo"),
]


# The demo trains every method with GRPO, the paper's setting, so that methods differ only in their weighting. The
# gradient method's influences assume an update linear in the weights, which GRPO's per-group std breaks; its
# config warning says so in general terms, and the demo says it here instead, in its own words.
GRADIENT_NOTE = (
    "gradient: trained with GRPO like every demo method (the paper's setting). GRPO divides each prompt's advantages by "
    "their std, so the update is only approximately linear in the weights, and the gradient method's per-objective "
    "influences are a first-order approximation here; they are exact with advantage_estimator: rloo or "
    "scale_rewards: none (docs/strategies/gradient.md)."
)


class _DemoKnowsLinearity(logging.Filter):
    """Drops the config's linearity warning for the demo's own gradient run (:data:`GRADIENT_NOTE` replaces it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "assumes the update is linear in the weights" not in str(record.msg)


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
    validation_size: int = 64  # val-split problems per hypervolume validation point
    task: str = "coupled"  # member of the synthetic task family (moalign.data.synthetic.VARIANTS)
    workers: int = 2  # runs trained at once, one process and one thread each (the tiny model gains nothing from more)

    def __post_init__(self):
        if self.quick:
            self.steps = min(self.steps, 4)
            self.eval_every = 2
            self.eval_size = 16
            self.validation_size = 8
            self.generations = 4
        unknown = sorted(set(self.methods) - {m[0] for m in METHODS})
        if unknown:
            raise ValueError(f"unknown demo method(s) {unknown}; choose from {', '.join(m[0] for m in METHODS)}")
        if self.steps < 1 or self.seeds < 1:
            raise ValueError(f"--steps and --seeds must be >= 1, got {self.steps} and {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        check_task(self.task)
        if self.task == "habits":
            raise ValueError("the habits member has K objectives (accuracy and K - 1 habits), not the demo's three; "
                             "run it with `moalign bench --task habits --objectives K` (docs/BENCHMARKS.md)")


def check_task(task: str) -> None:
    """Raise a ``ValueError`` naming the valid members when ``task`` is not one of the synthetic task family."""
    from .data.synthetic import VARIANTS

    if task not in VARIANTS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(VARIANTS)} (docs/demo_task.md)")


def task_warm_start(task: str, progress: bool = True, rebuild: bool = False) -> Path:
    """The warm-start model of a member of the synthetic task family (shipped for every member)."""
    from .data.synthetic import SyntheticConfig
    from .warmstart import WarmStartConfig, warm_start

    check_task(task)
    return warm_start(WarmStartConfig(task=SyntheticConfig(variant=task)), progress=progress, rebuild=rebuild)


def seeds_note(seeds: int) -> str:
    """What the demo's runs can and cannot show (its terminal output and report say it)."""
    head = ("One seed per method cannot rank the methods" if seeds == 1
            else f"{seeds} seeds per method are too few to rank the methods")
    return (f"{head}: a run's outcome changes with its seed as much as with its method. On the default task outcomes "
            "are bimodal (a run either settles into step-by-step answers, clear, long and more accurate, or collapses "
            "to short direct ones), so one run's hypervolume says more about its mode than about its method. To "
            "compare methods, run `moalign bench` (5 seeds, differences paired by seed with bootstrap 95 % CIs); its "
            "tables are in docs/BENCHMARKS.md.")


def train_synthetic_run(
    *, label: str, strategy: str, params: dict[str, Any], estimator: str, seed: int, model_dir: Path, splits,
    run_dir: Path, steps: int, eval_every: int, eval_size: int, validation_size: int, prompts_per_step: int,
    generations: int, learning_rate: float, max_completion_length: int, extra_info: dict[str, Any] | None = None,
    trainer_args: dict[str, Any] | None = None, eval_temperature: float = 0.0,
    objectives: list[Any] | None = None, callbacks: list[Any] | None = None,
):
    """One RL run of the embedded task (shared by ``moalign demo`` and ``moalign bench``): warm-started model,
    train split, test evaluations every ``eval_every`` steps (greedy, or sampled at ``eval_temperature`` > 0),
    validation points (hypervolume) on the val split, so the reported split never steers training. ``trainer_args``
    are further :class:`MOGRPOConfig` fields (e.g. ``multi_objective_aggregation``). ``objectives`` replaces the
    demo's three (accuracy, conciseness, clarity); ``callbacks`` are built as ``callback(trainer)`` and added to the
    trainer before it trains."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from .trainer import MOGRPOConfig, MOGRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    args = MOGRPOConfig(
        output_dir=str(run_dir / "checkpoints"),
        run_dir=str(run_dir),
        objectives=objectives or ["accuracy", "conciseness", "clarity"],
        strategy=strategy,
        strategy_params=params,
        advantage_estimator=estimator,
        max_steps=steps,
        per_device_train_batch_size=prompts_per_step * generations,
        num_generations=generations,
        max_completion_length=max_completion_length,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        temperature=1.0,
        beta=0.0,
        mo_eval_steps=eval_every,
        mo_eval_size=eval_size,
        mo_eval_temperature=eval_temperature,
        mo_validation_size=validation_size,
        per_device_eval_batch_size=min(eval_size, 100),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
        log_level="error",
        **(trainer_args or {}),
    )
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["test"],
                            validation_dataset=splits["val"], processing_class=tok, eval_split_name="test")
    trainer.remove_callback(PrinterCallback)  # progress is shown by the caller; metrics are in steps.jsonl
    for make_callback in callbacks or ():
        trainer.add_callback(make_callback(trainer))
    trainer.extra_run_info = {"name": f"{label}-seed{seed}", "method": label, **(extra_info or {})}
    trainer.train()
    return trainer


def _train_one(label, strategy, params, estimator, seed, model_dir, splits, cfg: DemoConfig, run_dir: Path):
    return train_synthetic_run(
        label=label, strategy=strategy, params=params, estimator=estimator, seed=seed, model_dir=model_dir,
        splits=splits, run_dir=run_dir, steps=cfg.steps, eval_every=cfg.eval_every, eval_size=cfg.eval_size,
        validation_size=cfg.validation_size, prompts_per_step=cfg.prompts_per_step, generations=cfg.generations,
        learning_rate=cfg.learning_rate, max_completion_length=cfg.max_completion_length,
        extra_info={"seed_index": seed, "task": cfg.task}, eval_temperature=TASK_EVAL_TEMPERATURE[cfg.task],
    )


def _demo_job(job: dict[str, Any]) -> float:
    """One demo run, in a worker process (or in this one with one worker), on one thread; returns its wall time."""
    import torch

    from .data.synthetic import load_synthetic

    cfg = DemoConfig(**job["cfg"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    linearity = _DemoKnowsLinearity()
    logging.getLogger("moalign.mo_config").addFilter(linearity)
    started = time.perf_counter()
    try:
        _train_one(job["label"], job["strategy"], job["params"], job["estimator"], job["seed"], Path(job["model_dir"]),
                   load_synthetic(seed=0, variant=cfg.task), cfg, Path(job["run_dir"]))
    finally:
        logging.getLogger("moalign.mo_config").removeFilter(linearity)
        torch.set_num_threads(threads)
    return time.perf_counter() - started


class _DemoProgress:
    """The demo's bar over its runs (what :func:`moalign.runpool.train_in_workers` reports to)."""

    def __init__(self, total: int, enabled: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn()]
        self.bar = Progress(*columns, disable=not enabled)
        self.task = self.bar.add_task("RL runs", total=total)

    def __enter__(self) -> _DemoProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def running(self, job: dict[str, Any]) -> None:
        self.bar.update(self.task, description=f"RL: {job['label']} (seed {job['seed']})")

    def finished(self, job: dict[str, Any], seconds: float) -> None:
        self.bar.update(self.task, advance=1, description=f"RL: {job['label']} (seed {job['seed']}) done")


def run_demo(cfg: DemoConfig, progress: bool = True) -> Path:
    """Run the whole demo; returns the path of the report's ``index.html``.

    ``cfg.workers`` runs train at once, each in its own process on one thread (as ``moalign bench`` trains). The
    libraries' warnings and bars follow their own settings here; ``moalign demo`` hides them (``moalign._quiet``).
    """
    from .runpool import stop_on_signals, train_in_workers
    from .precision import log_for_runs
    from .report import build_report

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = task_warm_start(cfg.task, progress=progress)
    log_for_runs(model_dir)
    methods = [m for m in METHODS if m[0] in cfg.methods]
    jobs = [{"label": label, "strategy": strategy, "params": params, "estimator": estimator, "seed": seed,
             "model_dir": str(model_dir), "run_dir": str(out / f"{label}-seed{seed}"),
             "cfg": dataclasses.asdict(cfg) | {"quick": False}}
            for seed in range(cfg.seeds) for label, strategy, params, estimator in methods]
    with _DemoProgress(len(jobs), progress) as bar, stop_on_signals():
        train_in_workers(jobs, min(cfg.workers, len(jobs)), bar, _demo_job)
    run_dirs = [Path(job["run_dir"]) for job in jobs]
    note = html.escape(seeds_note(cfg.seeds)).replace("`moalign bench`", "<code>moalign bench</code>")
    index = build_report(run_dirs, out / "report", split="test", extra_html=f"<p><b>{note}</b></p>")
    logger.info("demo finished in %.0f s", time.perf_counter() - started)
    return index

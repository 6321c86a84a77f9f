"""The ``moalign`` command. Each command is a thin wrapper over a library function."""

from __future__ import annotations

import csv
import functools
import inspect
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._quiet import command_output

app = typer.Typer(
    help="Multi-objective RL alignment of language models with dynamic reward weighting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
Task = Annotated[str, typer.Option(help="Member of the synthetic task family: coupled (default), async, or (bench "
                                        "only) habits (docs/demo_task.md).")]
Verbose = Annotated[bool, typer.Option("--verbose", help="Also show the libraries' warnings, log lines and progress "
                                       "bars (transformers, TRL, datasets...), hidden by default.")]


def _own_output(level: int = logging.WARNING):
    """Run a command with only its own output and moalign's log records from ``level`` up on the console; its
    ``verbose`` parameter (``--verbose``) lets the libraries' warnings, logs and progress bars through too."""

    def decorate(command):
        if "verbose" not in inspect.signature(command).parameters:
            raise TypeError(f"{command.__name__} needs a `verbose: Verbose = False` parameter")

        @functools.wraps(command)  # typer reads the signature, --verbose included, through __wrapped__
        def run(*args, **kwargs):
            with command_output(kwargs.get("verbose", False), level):
                return command(*args, **kwargs)

        return run

    return decorate


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # paths stay on one line
    raise typer.Exit(code=2)


def _split_list(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def read_points(path: Path, columns: list[str] | None = None) -> tuple[list[str], list[list[float]]]:
    """Points from a CSV (header row) or JSON file (list of lists, or list of objects)."""
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "points" in data:
            data = data["points"]
        if not isinstance(data, list) or not data:
            raise ValueError(f"{path} must hold a non-empty JSON list of points")
        if isinstance(data[0], dict):
            names = columns or list(data[0].keys())
            rows = [[row[c] for c in names] for row in data]
        else:
            names = columns or [f"f{i}" for i in range(len(data[0]))]
            rows = data
    else:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise ValueError(f"{path} is empty; expected a CSV with a header row")
            names = columns or list(reader.fieldnames)
            missing = [c for c in names if c not in reader.fieldnames]
            if missing:
                raise ValueError(f"{path} has no column(s) {missing}; columns are {reader.fieldnames}")
            rows = [[row[c] for c in names] for row in reader]
    try:
        points = [[float(x) for x in row] for row in rows]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: every value in columns {names} must be a number ({exc})") from exc
    return names, points


@app.command("hv")
@_own_output()
def hv_command(
    file: Annotated[Path, typer.Argument(help="CSV (with header) or JSON file of points, one per row.")],
    ref: Annotated[list[str], typer.Option(help="Reference point, comma-separated (one value per objective).")],
    minimize: Annotated[
        list[str] | None, typer.Option(help="Columns to minimize (names or 0-based indices); others are maximized.")
    ] = None,
    columns: Annotated[list[str] | None, typer.Option(help="Columns to use (default: all).")] = None,
    verbose: Verbose = False,
) -> None:
    """Hypervolume, front size and each point's exclusive contribution for a file of points."""
    import numpy as np

    from . import pareto

    try:
        names, points = read_points(file, _split_list(columns) or None)
        ref_point = [float(x) for x in _split_list(ref)]
        if len(ref_point) != len(names):
            raise ValueError(
                f"--ref has {len(ref_point)} values but there are {len(names)} columns ({', '.join(names)}); "
                "give one reference value per column, or pick columns with --columns"
            )
        minimize_cols = _split_list(minimize)
        maximize = []
        for i, name in enumerate(names):
            maximize.append(not (name in minimize_cols or str(i) in minimize_cols))
        unknown = [c for c in minimize_cols if c not in names and not (c.isdigit() and int(c) < len(names))]
        if unknown:
            raise ValueError(f"--minimize names unknown column(s) {unknown}; columns are {names}")
        pts = np.asarray(points, dtype=float)
        total = pareto.hypervolume(pts, ref_point, maximize=maximize)
        front = pareto.nondominated(pts, maximize=maximize)
        contributions = [
            pareto.hv_contribution(pts[i], np.delete(pts, i, axis=0), ref_point, maximize=maximize)
            for i in range(len(pts))
        ]
    except ValueError as exc:
        _fail(str(exc))
        return
    table = Table(title=f"{file.name}: {len(pts)} points, {int(front.sum())} non-dominated")
    table.add_column("#", justify="right")
    for name, mx in zip(names, maximize):
        table.add_column(f"{name} ({'max' if mx else 'min'})", justify="right")
    table.add_column("front", justify="center")
    table.add_column("contribution", justify="right")
    for i, row in enumerate(points):
        table.add_row(str(i), *[f"{v:g}" for v in row], "✓" if front[i] else "", f"{contributions[i]:.6g}")
    console.print(table)
    console.print(f"hypervolume: {total:.10g}")
    console.print(f"front size: {int(front.sum())}")


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@_own_output(logging.INFO)
def train_command(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Argument(help="YAML config; --key value flags override it.")] = None,
    verbose: Verbose = False,
) -> None:
    """Train with MOGRPOTrainer from a YAML config (TRL's convention: YAML sets defaults, flags override)."""
    from .config import load_config

    try:
        data_args, model_args, train_args = load_config(config, list(ctx.args))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    from .train import train

    try:
        trainer = train(data_args, model_args, train_args)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    accelerator = trainer.accelerator
    accelerator.wait_for_everyone()
    # Under torchrun / accelerate launch a process that exits with its gloo/NCCL group still alive can abort at
    # interpreter shutdown ("terminate called without an active exception"); end it explicitly on every rank.
    accelerator.end_training()
    if not accelerator.is_main_process:
        return
    console.print(f"[green]run directory:[/] {trainer.run_dir}")
    console.print(f"  steps:       {trainer.run_dir / 'steps.jsonl'}")
    console.print(f"  checkpoints: {train_args.output_dir}")
    console.print(f"  final model: {trainer.run_dir / 'final'}")
    report = f"moalign report {trainer.run_dir}  (fronts, weights and tables in {trainer.run_dir / 'report'})"
    if (trainer.run_dir / "evals.jsonl").exists():
        console.print(f"  evaluations: {trainer.run_dir / 'evals.jsonl'}", soft_wrap=True)
        console.print(f"next: {report}", soft_wrap=True)
    else:  # mo_eval_steps: 0 -- the report needs evaluations first
        console.print(f"next: moalign eval {trainer.run_dir}, then {report}", soft_wrap=True)


@app.command("eval")
@_own_output()
def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `moalign train`.")],
    split: Annotated[str, typer.Option(help="Dataset split to evaluate on.")] = "test",
    max_rows: Annotated[int | None, typer.Option(help="Evaluate only the first N rows.")] = None,
    batch_size: Annotated[int, typer.Option(help="Generation batch size.")] = 16,
    verbose: Verbose = False,
) -> None:
    """Evaluate the initial policy and every checkpoint of a run -> evals.jsonl (greedy, or sampled as the run's
    mo_eval_temperature)."""
    from .evaluation import evaluate_run

    try:
        new = evaluate_run(run_dir, split, max_rows=max_rows, batch_size=batch_size)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    for record in new:
        m = record["metrics"]
        console.print(f"step {record['step']:>5}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "n"))
    console.print(f"[green]{len(new)} evaluation(s) appended to[/] {Path(run_dir) / 'evals.jsonl'}")


@app.command("report")
@_own_output()
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories.")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: <first run>/report).")] = None,
    split: Annotated[str | None, typer.Option(help="Only evaluations on this split (default: all).")] = None,
    verbose: Verbose = False,
) -> None:
    """HTML report (fronts, weights, covariance, tables) + PNGs + summary.json."""
    from .report import build_report

    try:
        index = build_report(run_dirs, out or Path(run_dirs[0]) / "report", split=split)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]report:[/] {index}")
    console.print(f"  summary: {index.parent / 'summary.json'}")


@app.command("warmstart")
@_own_output()
def warmstart_command(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Train it again instead of using the shipped one.")] = False,
    task: Task = "coupled",
    verbose: Verbose = False,
) -> None:
    """SFT warm start of the tiny model on the synthetic task (shipped and cached; the demo uses it)."""
    from .demo import task_warm_start

    try:
        path = task_warm_start(task, rebuild=rebuild)
    except ValueError as exc:  # an unknown task, named with the valid ones
        _fail(str(exc))
        return
    console.print(f"[green]warm-start model:[/] {path}", soft_wrap=True)  # paths stay on one line
    console.print(f"  calibration: {path / 'warmstart.json'}", soft_wrap=True)


@app.command("demo")
@_own_output()
def demo_command(
    quick: Annotated[bool, typer.Option("--quick", help="Smoke-size run (CI): a few steps per method.")] = False,
    steps: Annotated[int | None, typer.Option(help="RL steps per run.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per method.")] = 1,
    out: Annotated[Path, typer.Option(help="Where the runs and the report go.")] = Path("runs/demo"),
    methods: Annotated[list[str] | None, typer.Option(help="Subset of methods (comma-separated).")] = None,
    task: Task = "coupled",
    workers: Annotated[int, typer.Option(help="Runs trained at once (one process and one thread each).")] = 2,
    verbose: Verbose = False,
) -> None:
    """Warm start -> RL with fixed presets and dynamic strategies on the synthetic task -> evaluation -> report."""
    from .demo import GRADIENT_NOTE, DemoConfig, run_demo, seeds_note
    from .report import MODE_NAMES

    kwargs = {"quick": quick, "seeds": seeds, "out": str(out), "task": task, "workers": workers}
    if steps is not None:
        kwargs["steps"] = steps
    if methods:
        kwargs["methods"] = _split_list(methods)
    try:
        index = run_demo(DemoConfig(**kwargs))
    except ValueError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the demo's workers are stopped
        console.print(f"interrupted: the finished runs are in {out}")
        raise typer.Exit(code=130) from None
    runs = json.loads((index.parent / "summary.json").read_text())["runs"]
    table = Table()
    for column in ("run", "normalised HV", "mode (last evaluation)"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, run in runs.items():
        table.add_row(name, f"{run['hypervolume']:.3f}", MODE_NAMES.get(run.get("mode"), "–"))
    console.print(table)
    console.print(seeds_note(seeds), markup=False)
    if any(name.startswith("gradient") for name in runs):
        console.print(GRADIENT_NOTE, markup=False)
    console.print(f"[green]report:[/] {index}")
    console.print(f"  runs:    {out}")
    console.print(f"  summary: {index.parent / 'summary.json'}")


@app.command("bench")
@_own_output()
def bench_command(
    quick: Annotated[bool, typer.Option("--quick", help="Smoke-size bench (CI): 2 seeds, 4 steps, one estimator.")] = False,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, e.g. 100,101,102,103,104.")] = "100,101,102,103,104",
    data_seed: Annotated[int, typer.Option(help="Seed of the synthetic task's problems and splits.")] = 0,
    estimators: Annotated[str, typer.Option(help="Comma-separated advantage estimators (each is its own set of "
                                                "tables), e.g. grpo,rloo.")] = "grpo",
    methods: Annotated[str | None, typer.Option(help="Comma-separated subset of methods (default: all).")] = None,
    steps: Annotated[int | None, typer.Option(help="RL steps per run.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N RL steps.")] = None,
    eval_size: Annotated[int | None, typer.Option(help="Test problems per evaluation.")] = None,
    gradient_mu: Annotated[float | None, typer.Option(help="μ of the gradient method.")] = None,
    eval_temperature: Annotated[float | None, typer.Option(
        help="0: greedy evaluations; > 0: one sampled completion per problem at this temperature. Default: the "
             "task's (coupled 0, async 1; docs/demo_task.md).")] = None,
    workers: Annotated[int, typer.Option(help="Runs trained in parallel (one process each).")] = 2,
    out: Annotated[Path, typer.Option(help="Where the runs, tables and reports go.")] = Path("runs/bench"),
    task: Task = "coupled",
    objectives: Annotated[int | None, typer.Option(
        help="--task habits: K objectives, accuracy and the first K - 1 habits (2 to 8).")] = None,
    sweep_presets: Annotated[int | None, typer.Option(
        help="--task habits: Dirichlet presets trained per seed for the sweep baseline.")] = None,
    sweep_alpha: Annotated[float | None, typer.Option(
        help="--task habits: draw the sweep's presets from Dirichlet(alpha) instead (> 1: nearer uniform weights; "
             "its own runs and bench_sweep-a<alpha>.md beside the Dirichlet(1) sweep).")] = None,
    verbose: Verbose = False,
) -> None:
    """Tables 1-3 of arXiv 2509.11452 on the embedded task: paired by seed, with bootstrap 95 % CIs. With
    --task habits --objectives K: methods at K objectives against uniform weights and a preset sweep."""
    from .bench import BenchConfig, run_bench

    try:
        seed_list = [int(s) for s in _split_list([seeds])]
    except ValueError:
        _fail(f"--seeds must be comma-separated integers, e.g. 100,101,102; got {seeds!r}")
        return
    if task == "habits":
        _habits_bench(seed_list, methods, steps, eval_every, eval_size, gradient_mu, eval_temperature, workers, out,
                      objectives, sweep_presets, sweep_alpha)
        return
    if objectives is not None or sweep_presets is not None or sweep_alpha is not None:
        _fail("--objectives, --sweep-presets and --sweep-alpha apply to --task habits only")
        return
    kwargs = {"quick": quick, "seeds": seed_list, "data_seed": data_seed, "estimators": _split_list([estimators]),
              "workers": workers, "out": str(out), "task": task}
    if methods:
        kwargs["methods"] = _split_list([methods])
    for key, value in (("steps", steps), ("eval_every", eval_every), ("eval_size", eval_size),
                       ("gradient_mu", gradient_mu), ("eval_temperature", eval_temperature)):
        if value is not None:
            kwargs[key] = value
    try:
        md = run_bench(BenchConfig(**kwargs))
    except ValueError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: run_bench stopped its workers and said what is kept
        raise typer.Exit(code=130) from None
    typer.echo(md.read_text())
    done = json.loads((md.parent / "bench.json").read_text())["estimators"]
    console.print(f"[green]tables:[/] {md}")
    console.print(f"  data:    {md.parent / 'bench.json'}")
    console.print(f"  reports: {', '.join(str(md.parent / e / 'report' / 'index.html') for e in done)}")


def _habits_bench(seeds, methods, steps, eval_every, eval_size, gradient_mu, eval_temperature, workers, out,
                  objectives, sweep_presets, sweep_alpha) -> None:
    """``moalign bench --task habits``: :func:`moalign.bench_habits.run_habits_bench`."""
    from .bench_habits import HabitsBenchConfig, run_habits_bench

    kwargs: dict = {"seeds": seeds, "workers": workers, "out": str(out) if str(out) != "runs/bench"
                    else "runs/bench_habits"}
    for key, value in (("objectives", objectives), ("sweep_presets", sweep_presets), ("sweep_alpha", sweep_alpha),
                       ("steps", steps), ("eval_every", eval_every), ("eval_size", eval_size),
                       ("gradient_mu", gradient_mu), ("eval_temperature", eval_temperature)):
        if value is not None:
            kwargs[key] = value
    if methods:
        kwargs["methods"] = _split_list([methods])
    try:
        md = run_habits_bench(HabitsBenchConfig(**kwargs))
    except ValueError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers are stopped, finished runs kept
        console.print(f"interrupted: the finished runs are kept in {out}; the same command trains the rest")
        raise typer.Exit(code=130) from None
    typer.echo(md.read_text())
    console.print(f"[green]tables:[/] {md}")


experts_app = typer.Typer(help="Meta-policy experts: one LoRA adapter per objective (docs/meta_policy.md).",
                          no_args_is_help=True)
app.add_typer(experts_app, name="experts")


@experts_app.command("train")
@_own_output()
def experts_train_command(
    config: Annotated[Path | None, typer.Argument(help="YAML experts config (default: one expert per objective).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke size: 4 RL steps per expert.")] = False,
    out: Annotated[Path | None, typer.Option(help="Run directory (overrides the config's `out`).")] = None,
    steps: Annotated[int | None, typer.Option(help="RL steps per expert (overrides the config).")] = None,
    verbose: Verbose = False,
) -> None:
    """Train K LoRA experts on one base with MOGRPOTrainer (each with its objective emphasis and strategy)."""
    from .meta.experts import load_experts_config, train_experts

    try:
        cfg = load_experts_config(config, quick=quick or None, out=str(out) if out else None, steps=steps)
        run = train_experts(cfg)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]experts run:[/] {run}")
    console.print(f"  manifest: {run / 'experts.json'}")
    for e in cfg.experts:
        console.print(f"  {e.name}: adapter {run / e.name / 'adapter'}, logs {run / e.name / 'steps.jsonl'}",
                      soft_wrap=True)  # paths stay on one line


@app.command("generate")
@_own_output()
def generate_command(
    experts: Annotated[Path, typer.Option(help="Experts run directory (`moalign experts train`).")],
    preference: Annotated[str, typer.Option(help="One weight per objective, e.g. 0.6,0.2,0.2.")],
    prompt: Annotated[list[str] | None, typer.Option(help="Prompt(s); default: 4 test problems of the task.")] = None,
    aggregation: Annotated[str, typer.Option(help="hidden | logit | parameter.")] = "hidden",
    gate: Annotated[bool, typer.Option("--gate", help="Let the trained gate (<experts>/gate.json) pick mixtures.")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion.")] = 64,
    out: Annotated[Path | None, typer.Option(help="Also write the completions to this JSONL file.")] = None,
    verbose: Verbose = False,
) -> None:
    """Generate with the experts combined for a preference, chosen at inference time (no retraining)."""
    from .meta import MixtureGate, load_experts
    from .meta import generate as meta_generate
    from .meta.experts import load_splits

    try:
        ex = load_experts(experts)
        pref = [float(x) for x in _split_list([preference])]
        g = MixtureGate.load(experts / "gate.json") if gate else None
        prompts = [[{"role": "user", "content": p}] for p in prompt or []]
        if not prompts:
            cfg = ex.manifest.get("config", {})
            test = load_splits(cfg.get("dataset", "synthetic"), cfg.get("dataset_kwargs", {}))["test"]
            prompts = [r["prompt"] for r in test.select(range(4))]
        result = meta_generate(ex, prompts, pref, aggregation=aggregation, gate=g, max_new_tokens=max_new_tokens)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    mixtures = result.extra.get("mixtures") or [result.mixture] * len(prompts)
    for p, text, m in zip(prompts, result.texts, mixtures):
        console.print(f"[bold]{p[-1]['content']}[/]  [dim](mixture {', '.join(f'{w:.2f}' for w in m)})[/]")
        console.print(text, markup=False)
    ms = 1000 * result.seconds / max(result.num_tokens, 1)
    console.print(f"[dim]{aggregation}: {result.num_tokens} tokens in {result.seconds:.2f} s ({ms:.1f} ms/token)[/]")
    if out is not None:
        with out.open("w") as f:
            for p, text, m in zip(prompts, result.texts, mixtures):
                f.write(json.dumps({"prompt": p, "completion": text, "mixture": m, "preference": pref}) + "\n")
        console.print(f"[green]completions:[/] {out}")


@app.command("meta-eval")
@_own_output()
def meta_eval_command(
    experts: Annotated[Path, typer.Argument(help="Experts run directory.")],
    aggregation: Annotated[list[str] | None, typer.Option(help="Aggregations (default: parameter,logit,hidden).")] = None,
    grid_step: Annotated[float, typer.Option(help="Preference grid step on the simplex (0.5: 6 points for K=3).")] = 0.5,
    rows: Annotated[int, typer.Option(help="Test problems per preference.")] = 32,
    baseline: Annotated[list[Path] | None, typer.Option(help="Single-policy run directories to compare with.")] = None,
    gate_steps: Annotated[int, typer.Option(help="Online steps to train the gate (0: no gate).")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion.")] = 64,
    temperature: Annotated[float, typer.Option(
        help="0: greedy; above 0 every policy samples at this temperature (as the habits bench's test evaluations).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed (batch b samples from seed + b); ignored when greedy.")] = 0,
    centroid: Annotated[bool, typer.Option(help="Add the uniform preference to the grid.")] = False,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: <experts>/meta_eval).")] = None,
    verbose: Verbose = False,
) -> None:
    """Sweep preferences per aggregation, build the fronts, compare with single-policy runs (HV, IGD+, utility...)."""
    from .meta.evaluate import meta_eval

    try:
        path = meta_eval(experts, aggregations=tuple(_split_list(aggregation) or ("parameter", "logit", "hidden")),
                         grid_step=grid_step, rows=rows, baselines=tuple(baseline or ()), gate_steps=gate_steps,
                         max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, centroid=centroid,
                         out=out)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    summary = json.loads(path.read_text())
    table = Table(title=f"meta-eval on {summary['rows']} {summary['split']} problems (normalised; ↑ better unless ↓)")
    cols = ["hypervolume", "igd_plus", "expected_utility", "max_utility_loss", "sparsity", "cardinality",
            "training_steps", "ms_per_token"]
    table.add_column("method")
    for c in cols:
        table.add_column(c + (" ↓" if c in ("igd_plus", "max_utility_loss", "sparsity", "ms_per_token") else ""),
                         justify="right")
    for name, m in summary["methods"].items():
        table.add_row(name, *[f"{m[c]:.4g}" if isinstance(m.get(c), float) else str(m.get(c, "")) for c in cols])
    console.print(table)
    console.print(f"[green]summary:[/] {path}")
    console.print(f"  sweep:  {path.parent / 'sweep.jsonl'}")
    console.print(f"  fronts: {path.parent / 'fronts.png'}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

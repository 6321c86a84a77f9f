"""Issue 19, item 7: SmolLM2-135M-Instruct, fixed-balanced vs a dynamic method vs SAW over 5 seeds, resumable.

Every (method, seed) run is one ``moalign train`` run (a child process) of the same base config
(examples/smollm2_additions.yaml: two-number additions where the worked-steps format saturates within a few steps
and accuracy rises slowly, the real-model analogue of the bench's ``async`` task), written to
``<out>/<method>-seed<seed>/`` with its full config beside it (``campaign_config.yaml``). Runs go one at a time,
seed by seed, so the paired tables fill in as the campaign goes:

* a run whose final model exists is skipped;
* a run that was killed resumes from its last complete checkpoint (``resume_from_checkpoint``; one every
  ``--save-steps`` RL steps);
* after each finished run the analysis is redone over every finished run and written to ``<out>/campaign.json``
  and ``<out>/campaign.md``: per method and seed the front hypervolume of the run's evaluations (``evals.jsonl``,
  the same HV as ``moalign bench``) and the final policy's greedy accuracy on the test split
  (benchmarks/real_model_eval.py's evaluation, cached per run in ``final_greedy.json``); then every method against
  fixed-balanced, paired by seed, with bootstrap 95 % CIs (``moalign.bench.paired_comparison``; for greedy accuracy
  also the two-level seeds x problems CI of real_model_eval.py);
* ``--commit-results DIR`` copies campaign.md/json to DIR and commits just those two files after each run.

    python benchmarks/real_model_campaign.py --dry-run          # the run list and each run's state
    python benchmarks/real_model_campaign.py                    # run (or resume) the campaign
    python benchmarks/real_model_campaign.py --dynamic hypervolume-balanced --commit-results \\
        benchmarks/results/real_model_campaign
    python benchmarks/real_model_campaign.py --smoke            # 2 RL steps, tiny evaluations, 2 seeds

See docs/real_model.md, "Campaign: fixed vs dynamic vs SAW over 5 seeds (issue 19)".
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "examples" / "smollm2_additions.yaml"
DEFAULT_SEEDS = [200, 201, 202, 203, 204]  # docs/real_model.md used seeds 0, 1 and 2
REFERENCE = "fixed-balanced"
# Strategy parameters of docs/real_model.md's SmolLM2 runs, where they differ from `moalign bench`'s (tiny model):
# the gradient method's μ 3.3e-3 (η/μ = 0.03 per step) and hypervolume's train-batch points (no extra validation
# decoding on CPU). `--dynamic-params` overrides them.
REAL_MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "gradient": {"mu": 3.3e-3},
    "hypervolume": {"point_source": "train_batch"},
}
# Wall minutes of one 20-step run on 2 idle cores, docs/real_model.md (TRL's train_runtime, evaluations included);
# the ETA uses them until the campaign has timed runs of its own. Other strategies: the fixed figure.
DOC_MINUTES_PER_20_STEPS = {"fixed": 16.3, "gradient": 20.7, "hypervolume": 15.0}
ANALYSIS_SECONDS = 60.0  # first guess per finished run: load, merge and decode 48 problems greedily (x2 per seed)
# --smoke: the plumbing only (steps, batch and evaluations shrunk; the numbers mean nothing). The replies keep their
# length: cut at 16 tokens SmolLM2's never reach their box, and every reward and score is 0.
SMOKE_OVERRIDES: dict[str, Any] = {"max_steps": 2, "save_steps": 1, "mo_eval_steps": 1, "mo_eval_size": 4,
                                   "per_device_train_batch_size": 8, "per_device_eval_batch_size": 4}
# keys the campaign sets itself; a run directory started with other values of the rest belongs to another campaign
_LOCATION_KEYS = ("run_dir", "output_dir")


# ---------------------------------------------------------------------------------------------------------------------
# the run list
# ---------------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Method:
    label: str
    strategy: str
    params: dict[str, Any]
    trainer_args: dict[str, Any]


def campaign_methods(dynamic: str = "gradient", dynamic_params: dict[str, Any] | None = None) -> list[Method]:
    """fixed-balanced, the dynamic method (any ``moalign bench`` method label) and SAW, in that order."""
    from moalign.bench import METHOD_TRAINER_ARGS, bench_methods

    table = {label: (strategy, params) for label, strategy, params in bench_methods()}
    if dynamic not in table:
        raise SystemExit(f"--dynamic {dynamic!r} is not a bench method; choose from {', '.join(table)}")
    if dynamic in (REFERENCE, "saw"):
        raise SystemExit(f"--dynamic {dynamic} is already in the campaign; pick the dynamic method to compare")
    out = []
    for label in (REFERENCE, dynamic, "saw"):
        strategy, params = table[label]
        params = {**params, **REAL_MODEL_PARAMS.get(strategy, {})}
        if strategy == "hypervolume" and params.get("point_source") == "train_batch":
            params.pop("hv_eval_every", None)  # a validation period means nothing without validation points
        if label == dynamic:
            params.update(dynamic_params or {})
        out.append(Method(label, strategy, params, dict(METHOD_TRAINER_ARGS.get(label, {}))))
    return out


def lr_control_method(base: dict[str, Any], scale: float) -> Method:
    """Fixed balanced weights at ``scale`` x the base config's learning rate (issue 29, item 6): a run that learns as
    slowly as a dynamic method that scaled its step size, in the fixed method's direction."""
    from moalign.bench import bench_methods

    strategy, params = {label: (s, p) for label, s, p in bench_methods()}[REFERENCE]
    lr = float(base.get("learning_rate", 1e-4)) * scale
    return Method(f"{REFERENCE}-lr{scale:g}x", strategy, dict(params), {"learning_rate": lr})


def load_base_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"--config {path} does not exist")
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict):
        raise SystemExit(f"--config {path} must hold a YAML mapping of `moalign train` settings")
    return cfg


def run_config(base: dict[str, Any], method: Method, seed: int, run_dir: Path, *, save_steps: int,
               eval_temperature: float, smoke: bool) -> dict[str, Any]:
    """The ``moalign train`` config of one run: the base config with the method's strategy, the seed, the run's
    directories, a checkpoint every ``save_steps`` steps (the last two kept) and the evaluation temperature."""
    cfg = copy.deepcopy(base)
    cfg.update(strategy=method.strategy, strategy_params=dict(method.params), seed=int(seed), run_dir=str(run_dir),
               output_dir=str(run_dir / "checkpoints"), save_strategy="steps", save_steps=int(save_steps),
               save_total_limit=2, mo_eval_temperature=float(eval_temperature))
    cfg.update(method.trainer_args)
    if smoke:
        cfg.update(SMOKE_OVERRIDES)
    return cfg


@dataclasses.dataclass
class RunState:
    status: str  # done | partial | started | todo
    step: int = 0  # partial: the step of the checkpoint it resumes from; started/partial: steps logged so far
    checkpoint: str | None = None
    logged: int = 0

    def describe(self, max_steps: int) -> str:
        if self.status == "done":
            return "done"
        if self.status == "partial":
            return f"partial at step {self.step} of {max_steps} (resumes from {Path(self.checkpoint).name})"
        if self.status == "started":
            return f"started, no checkpoint ({self.logged} steps logged; restarts from step 0)"
        return "todo"


def final_model_exists(run_dir: Path) -> bool:
    final = run_dir / "final"
    return any((final / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors",
                                                    "adapter_model.bin", "pytorch_model.bin"))


def run_state(run_dir: Path) -> RunState:
    """done (the final model exists), partial (a complete checkpoint to resume from), started (logs, no checkpoint)
    or todo."""
    from moalign.rundir import read_jsonl
    from moalign.train import last_complete_checkpoint

    if final_model_exists(run_dir):
        return RunState("done")
    logged = len(read_jsonl(run_dir / "steps.jsonl"))
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints")
    if checkpoint is not None:
        return RunState("partial", int(checkpoint.rsplit("-", 1)[-1]), checkpoint, logged)
    if (run_dir / "run.json").exists() or logged:
        return RunState("started", logged=logged)
    return RunState("todo")


def check_same_campaign(run_dir: Path, cfg: dict[str, Any]) -> None:
    """A run directory already holding a config of other settings belongs to another campaign (e.g. a --smoke one):
    resuming it, or counting its results, would mix the two."""
    path = run_dir / "campaign_config.yaml"
    if not path.exists():
        return
    old = yaml.safe_load(path.read_text()) or {}
    keys = sorted(k for k in set(old) | set(cfg) if k not in _LOCATION_KEYS and old.get(k) != cfg.get(k))
    if keys:
        diffs = "; ".join(f"{k}: {old.get(k)!r} there, {cfg.get(k)!r} now" for k in keys)
        raise SystemExit(f"{run_dir} was started with other settings ({diffs}); give this campaign its own --out, "
                         "or delete that run directory to start it again")


LOCK_NAME = "campaign.lock"


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Hold ``run_dir`` for this process while it trains the run: yields False when another campaign process holds it.

    Several campaign processes (e.g. one per core, ``--threads 1``) may then share one run list: each trains the runs
    nobody else is training. An ``flock`` rather than a pid file because the kernel drops it when its process dies,
    so a killed campaign leaves no stale lock to clean up. The file keeps the holder's pid for the dry run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_NAME, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the campaign process training ``run_dir`` now, or None."""
    path = run_dir / LOCK_NAME
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


@dataclasses.dataclass
class Run:
    method: Method
    seed: int
    run_dir: Path
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def max_steps(self) -> int:
        return int(self.config.get("max_steps") or 0)


def plan(args) -> list[Run]:
    """Every (seed, method) run in the order they train: seed by seed, methods in campaign order."""
    base = load_base_config(args.config)
    if getattr(args, "lr_control", None) is not None:
        methods = [lr_control_method(base, args.lr_control)]
    else:
        methods = campaign_methods(args.dynamic, args.dynamic_params)
    runs = []
    for seed in args.seeds:
        for m in methods:
            run_dir = args.out / f"{m.label}-seed{seed}"
            cfg = run_config(base, m, seed, run_dir, save_steps=args.save_steps,
                             eval_temperature=args.eval_temperature, smoke=args.smoke)
            check_same_campaign(run_dir, cfg)
            runs.append(Run(m, seed, run_dir, cfg))
    return runs


# ---------------------------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------------------------
def train_argv(config_path: Path, resume: str | None) -> list[str]:
    """The ``moalign train`` arguments of one run (resuming from ``resume`` when given)."""
    argv = ["train", str(config_path)]
    if resume:
        argv += ["--resume_from_checkpoint", resume]
    return argv


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it: the committed tables name no machine's directories."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def launch(argv: list[str], log_path: Path, threads: int, on_poll=None) -> int:
    """``moalign train`` in a child process with ``threads`` torch threads, its output appended to ``log_path``;
    ``on_poll()`` is called every few seconds while it runs. Returns its exit code. Ctrl-C stops the child (which
    leaves its last checkpoint to resume from) and re-raises."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} moalign {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "moalign.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        try:
            while proc.poll() is None:
                if on_poll is not None:
                    on_poll()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        return proc.returncode


class Watcher:
    """While a run trains: a transient progress bar of its steps on a terminal, and one printed line per new
    evaluation (in a log file too). A resumed or restarted run first truncates or sets aside the logs it finds (a
    new file each time), so until then those files are the killed run's and are not shown."""

    def __init__(self, console, run: Run, state: RunState):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console, self.run, self.started = console, run, time.perf_counter()
        self.stale = {name: _inode(run.run_dir / name) for name in ("steps.jsonl", "evals.jsonl")}
        self.shown = state.step if state.status == "partial" else -1  # evaluations up to here are not news
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True, disable=not console.is_terminal)
        self.task = self.bar.add_task(f"{run.method.label} seed {run.seed}", total=run.max_steps,
                                      completed=state.step)

    def _read(self, name: str) -> list[dict[str, Any]]:
        from moalign.rundir import read_jsonl

        path = self.run.run_dir / name
        inode = _inode(path)
        return [] if inode is None or inode == self.stale[name] else read_jsonl(path)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def poll(self) -> None:
        steps = self._read("steps.jsonl")
        if steps:
            self.bar.update(self.task, completed=int(steps[-1]["step"]))
        for e in self._read("evals.jsonl"):
            if int(e["step"]) <= self.shown:
                continue
            m = e.get("metrics", {})
            shown = ", ".join(f"{k} {m[k]:.3f}" if k != "length" else f"length {m[k]:.1f}"
                              for k in ("accuracy", "clarity", "length") if k in m)
            self.console.print(f"    step {e['step']}/{self.run.max_steps}: {e.get('split')} evaluation {shown} "
                               f"({_clock(time.perf_counter() - self.started)})", highlight=False)
            self.shown = int(e["step"])


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def record_timing(run: Run, wall: float, cpu: float, threads: int, resumed_from: str | None, steps: int) -> None:
    """Add this session's wall and CPU seconds to the run's ``timing.json`` (a resumed run has several sessions)."""
    from moalign.rundir import atomic_write_json

    path = run.run_dir / "timing.json"
    timing = json.loads(path.read_text()) if path.exists() else {"wall_seconds": 0.0, "cpu_seconds": 0.0,
                                                                 "sessions": []}
    timing["wall_seconds"] += wall
    timing["cpu_seconds"] += cpu
    timing["threads"] = threads
    timing["sessions"].append({"wall_seconds": wall, "cpu_seconds": cpu, "resumed_from": resumed_from,
                               "steps": steps, "ended": time.strftime("%Y-%m-%dT%H:%M:%S")})
    atomic_write_json(path, timing)


def seconds_per_step(runs: list[Run]) -> dict[str, float]:
    """Wall seconds per RL step of each strategy (evaluations, saving and start-up included), from the campaign's own
    timed sessions; strategies without any from docs/real_model.md's figures."""
    measured: dict[str, list[tuple[float, int]]] = {}
    for r in runs:
        path = r.run_dir / "timing.json"
        if path.exists():
            for s in json.loads(path.read_text()).get("sessions", []):
                if s.get("steps"):
                    measured.setdefault(r.method.strategy, []).append((s["wall_seconds"], s["steps"]))
    out = {}
    for r in runs:
        if r.method.strategy in measured:
            pairs = measured[r.method.strategy]
            out[r.method.strategy] = sum(w for w, _ in pairs) / sum(n for _, n in pairs)
        else:
            out[r.method.strategy] = DOC_MINUTES_PER_20_STEPS.get(r.method.strategy,
                                                                  DOC_MINUTES_PER_20_STEPS["fixed"]) * 60 / 20
    return out


def eta_seconds(runs: list[Run], analysis_seconds: float) -> float:
    """Training still to do (steps left x seconds per step of the run's strategy) plus the analysis of each run."""
    rate = seconds_per_step(runs)
    total = 0.0
    for r in runs:
        state = run_state(r.run_dir)
        if state.status != "done":
            total += max(r.max_steps - state.step, 0) * rate[r.method.strategy] + analysis_seconds
    return total


def _clock(seconds: float) -> str:
    from moalign.bench import _clock as bench_clock  # the bench's progress lines' format

    return bench_clock(seconds)


def run_campaign(args) -> int:
    """Train every run not done yet (resuming partial ones), analysing after each; returns the number of failed
    runs."""
    from rich.console import Console

    console = Console(highlight=False)
    runs = plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    total = len(runs)
    failed, analysis_times = [], []
    started = time.perf_counter()
    todo = [r for r in runs if run_state(r.run_dir).status != "done"]
    console.print(f"campaign: {total} runs ({total - len(todo)} done) in {args.out}; "
                  f"ETA {_clock(eta_seconds(runs, ANALYSIS_SECONDS))} (docs/real_model.md's per-run times until runs "
                  "of this campaign are timed)", soft_wrap=True)
    if len(todo) < total:  # tables of what is already there, e.g. after a change of analysis
        analysis_times.append(_analyse_and_commit(args, runs, console, note="runs already done"))
    elsewhere = []
    for run in todo:
        with claim(run.run_dir) as mine:
            if not mine:
                elsewhere.append(run)
                console.print(f"[{runs.index(run) + 1}/{total}] {run.method.label} seed {run.seed}: being trained by "
                              f"another campaign process (pid {lock_holder(run.run_dir)}); skipped", soft_wrap=True)
                continue
            run_failed = _train_one(args, run, runs, console, analysis_times, started)
        if run_failed:
            failed.append(run)
    console.print(f"results: {args.out / 'campaign.md'} and {args.out / 'campaign.json'}", soft_wrap=True)
    if args.commit_results:
        console.print(f"committed copies: {args.commit_results}", soft_wrap=True)
    if elsewhere:
        console.print(f"{len(elsewhere)} run(s) were left to the other campaign process(es) training them: "
                      f"{', '.join(r.name for r in elsewhere)}; the last process to finish writes the complete tables",
                      soft_wrap=True)
    if failed:
        console.print(f"{len(failed)} run(s) failed: {', '.join(r.name for r in failed)}; rerun the same command to "
                      "resume them", soft_wrap=True)
    return len(failed)


def _train_one(args, run: Run, runs: list[Run], console, analysis_times: list[float], started: float) -> bool:
    """Train (or resume) one run this process has claimed, then analyse every finished run; True when it failed."""
    total = len(runs)
    state = run_state(run.run_dir)  # read under the claim: another process may have finished it meanwhile
    if state.status == "done":
        return False
    config_path = run.run_dir / "campaign_config.yaml"
    config_path.write_text(yaml.safe_dump(run.config, sort_keys=False))
    resume = state.checkpoint if state.status == "partial" else None
    index = runs.index(run) + 1
    how = f"resuming from {Path(resume).name}" if resume else (
        "restarting (no checkpoint)" if state.status == "started" else "starting")
    console.print(f"[{index}/{total}] {run.method.label} seed {run.seed}: {how} -> {run.run_dir} "
                  f"(log: {run.run_dir / 'train.log'})", soft_wrap=True)
    wall0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with Watcher(console, run, state) as watch:
        code = launch(train_argv(config_path, resume), run.run_dir / "train.log", args.threads, watch.poll)
        watch.poll()
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    record_timing(run, wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), args.threads,
                  resume, max(run.max_steps - state.step, 0) if code == 0 else 0)
    if code != 0 or run_state(run.run_dir).status != "done":
        tail = "".join((run.run_dir / "train.log").read_text().splitlines(keepends=True)[-15:])
        console.print(f"[{index}/{total}] {run.method.label} seed {run.seed}: FAILED (exit code {code}) after "
                      f"{_clock(wall)}; last lines of {run.run_dir / 'train.log'}:\n{tail}", markup=False)
        return True
    analysis_times.append(_analyse_and_commit(args, runs, console,
                                              note=f"after {run.method.label} seed {run.seed}"))
    done = sum(run_state(r.run_dir).status == "done" for r in runs)
    per_analysis = float(np.mean(analysis_times)) if analysis_times else ANALYSIS_SECONDS
    console.print(f"[{index}/{total}] {run.method.label} seed {run.seed}: {_run_result(args, run)}, run "
                  f"{_clock(wall)} | {done}/{total} done, elapsed {_clock(time.perf_counter() - started)}, "
                  f"ETA {_clock(eta_seconds(runs, per_analysis))}", soft_wrap=True)
    return False


def _run_result(args, run: Run) -> str:
    data = json.loads((args.out / "campaign.json").read_text()) if (args.out / "campaign.json").exists() else {}
    rec = data.get("runs", {}).get(run.method.label, {}).get(str(run.seed))
    if not rec:
        return "not analysed"
    acc = rec.get("greedy", {}).get("accuracy")
    base = rec.get("greedy_base", {}).get("accuracy")
    greedy = f", greedy accuracy {acc:.3f} (base {base:.3f})" if acc is not None and base is not None else ""
    return f"front HV {rec['hv']:.4f}{greedy}"


def _analyse_and_commit(args, runs: list[Run], console, note: str) -> float:
    """Write campaign.json/md (and commit copies); an analysis error is reported, not fatal to the campaign."""
    from moalign._quiet import quiet_libraries

    t0 = time.perf_counter()
    try:
        with quiet_libraries():  # the libraries' progress bars and notices would bury the campaign's lines
            summary = analyse(runs, args, console)
        write_results(summary, args.out)
        if args.commit_results:
            commit_results(args.out, args.commit_results, f"real-model campaign results {note} "
                           f"({summary['done']} of {summary['total']} runs)", console)
    except Exception:  # noqa: BLE001 -- the next run must still train; the traceback says what broke
        console.print(f"analysis failed ({note}); the campaign goes on:\n{traceback.format_exc()}", markup=False)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------------------------------------------------
@functools.cache  # loaded once per process: final_greedy and compare both use it for every run
def _eval_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_model_eval", ROOT / "benchmarks" / "real_model_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_greedy(run_dir: Path, split: str, max_rows: int | None, batch_size: int, base_cache: Path,
                 threads: int) -> dict[str, Any]:
    """Per-row greedy scores of the run's initial policy (``base``) and final policy (``trained``, LoRA merged) on
    ``split``, as benchmarks/real_model_eval.py computes them; cached in ``run_dir/final_greedy.json`` (and the base
    model's, shared by runs of the same model, data and seed, under ``base_cache``)."""
    cache = run_dir / "final_greedy.json"
    if cache.exists():
        got = json.loads(cache.read_text())
        if got.get("split") == split and got.get("max_rows") == max_rows:
            return got
    import torch

    from moalign.evaluation import load_initial_policy, load_run_rows
    from moalign.rundir import atomic_write_json

    torch.set_num_threads(threads)
    script = _eval_script()
    meta, rows = load_run_rows(run_dir, split, max_rows)
    key = json.dumps([meta["model"], meta["data"], meta.get("seed"), split, max_rows], sort_keys=True, default=str)
    base_path = base_cache / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    model, tok = load_initial_policy(run_dir, meta)
    if base_path.exists():
        base = json.loads(base_path.read_text())
    else:
        base = script._evaluate(model, tok, rows, meta, batch_size)
        atomic_write_json(base_path, base)
    trained = script._evaluate(script._trained(run_dir, model), tok, rows, meta, batch_size)
    out = {"split": split, "max_rows": max_rows, "rows": len(rows), "base": base, "trained": trained}
    atomic_write_json(cache, out)
    return out


def _mean(values: list) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else math.nan


def run_record(run: Run, split: str, greedy: dict[str, Any] | None) -> dict[str, Any]:
    """One finished run's numbers: its front (``evals.jsonl`` on ``split``: HV in the normalised space, as
    ``moalign bench``), last evaluation, final weights and the greedy means of the final and initial policy."""
    from moalign.evaluation import summarize_front
    from moalign.report import load_run

    data = load_run(run.run_dir)
    ev = data.evals_for(split)
    if not ev:
        raise ValueError(f"{run.run_dir} has no {split} evaluations in evals.jsonl (mo_eval_steps > 0 is needed)")
    front = summarize_front(ev, data.objectives, data.max_completion_length)
    timing = json.loads((run.run_dir / "timing.json").read_text()) if (run.run_dir / "timing.json").exists() else {}
    rec = {"seed": run.seed, "hv": front.hypervolume, "steps_to_front": front.steps_to_front,
           "front_steps": front.steps, "last_eval": max(ev, key=lambda e: e["step"]),
           "weights_final": data.steps[-1]["weights"] if data.steps else None,
           "wall_seconds": timing.get("wall_seconds"), "cpu_seconds": timing.get("cpu_seconds")}
    if greedy is not None:
        rec["greedy"] = {m: _mean(v) for m, v in greedy["trained"].items()}
        rec["greedy_base"] = {m: _mean(v) for m, v in greedy["base"].items()}
        rec["greedy_rows"] = greedy["rows"]
    return rec


def compare(records: dict[str, dict[int, dict[str, Any]]], greedy: dict[str, dict[int, dict[str, Any]]],
            methods: list[str], n_boot: int, pairs: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every method against the first (fixed-balanced), or the given (method, reference) ``pairs``, paired by seed:
    front HV and the final policy's greedy accuracy, clarity and length (seed means, ``paired_comparison``: bootstrap
    over seeds; plus real_model_eval's two-level CI over seeds and problems where both sides' per-problem scores are
    here; records imported from an earlier campaign.json carry only their seed means)."""
    from moalign.bench import paired_comparison

    script = _eval_script()
    rows = []
    for method, ref in pairs or [(m, methods[0]) for m in methods[1:]]:
        common = sorted(set(records.get(method, {})) & set(records.get(ref, {})))
        if not common:
            continue
        row: dict[str, Any] = {"method": method, "reference": ref, "seeds": common,
                               "hv": paired_comparison({s: records[method][s]["hv"] for s in common},
                                                       {s: records[ref][s]["hv"] for s in common}, n_boot)}
        row["hv"]["per_seed"] = [records[method][s]["hv"] - records[ref][s]["hv"] for s in common]
        both = [s for s in common if s in greedy.get(method, {}) and s in greedy.get(ref, {})]
        if both:
            results = {f"{m}/{s}": {"trained": greedy[m][s]["trained"]} for m in (ref, method) for s in both}
            meta = {f"{m}/{s}": {"strategy": {"name": m}, "seed": s} for m in (ref, method) for s in both}
            for metric in ("accuracy", "clarity", "length"):
                if metric not in greedy[ref][both[0]]["trained"]:
                    continue
                (two_level,) = script.across_seeds(results, meta, metric, n_boot)
                seed_level = paired_comparison(
                    {s: _mean(greedy[method][s]["trained"][metric]) for s in both},
                    {s: _mean(greedy[ref][s]["trained"][metric]) for s in both}, n_boot,
                    higher_is_better=metric != "length")
                seed_level.update(per_seed=two_level["per_seed"], ci_seeds_x_problems=two_level["ci"])
                row[f"greedy_{metric}"] = seed_level
        elif all("greedy" in records[m][s] for m in (ref, method) for s in common):
            for metric in ("accuracy", "clarity", "length"):
                if metric in records[ref][common[0]]["greedy"]:
                    seed_level = paired_comparison({s: records[method][s]["greedy"][metric] for s in common},
                                                   {s: records[ref][s]["greedy"][metric] for s in common}, n_boot,
                                                   higher_is_better=metric != "length")
                    seed_level["per_seed"] = [records[method][s]["greedy"][metric] - records[ref][s]["greedy"][metric]
                                              for s in common]
                    row[f"greedy_{metric}"] = seed_level
        rows.append(row)
    return rows


def analyse(runs: list[Run], args, console=None) -> dict[str, Any]:
    """campaign.json's content from every finished run (greedy evaluations computed once per run and cached)."""
    methods = list(dict.fromkeys(r.method.label for r in runs))
    records: dict[str, dict[int, dict[str, Any]]] = {}
    greedy: dict[str, dict[int, dict[str, Any]]] = {}
    states = {}
    for r in runs:
        state = run_state(r.run_dir)
        states[r.name] = state.describe(r.max_steps)
        if state.status != "done":
            if lock_holder(r.run_dir) is not None:
                states[r.name] += "; training now"
            continue
        g = None
        if not args.no_greedy:
            if console is not None and not (r.run_dir / "final_greedy.json").exists():
                console.print(f"    greedy evaluation of {r.name} (base and final policy)", highlight=False)
            g = final_greedy(r.run_dir, args.split, args.max_rows, args.batch_size, args.out / "base_greedy",
                             args.threads)
            greedy.setdefault(r.method.label, {})[r.seed] = g
        records.setdefault(r.method.label, {})[r.seed] = run_record(r, args.split, g)
    done = sum(len(v) for v in records.values())  # this campaign's finished runs (not the imported ones)
    pairs = None
    if getattr(args, "reference_results", None) is not None:
        earlier = json.loads(Path(args.reference_results).read_text())
        for m in earlier["methods"]:
            records.setdefault(m, {int(seed): rec for seed, rec in earlier["runs"].get(m, {}).items()})
        own = methods
        methods = list(dict.fromkeys([*earlier["methods"], *own]))
        # each method against fixed-balanced, and the earlier dynamic methods against this campaign's own (the control)
        pairs = [(m, REFERENCE) for m in methods if m != REFERENCE]
        pairs += [(m, o) for o in own for m in earlier["methods"] if m not in (REFERENCE, o)]
    first = runs[0]
    return {
        "issue": "29, item 6" if getattr(args, "lr_control", None) is not None else "19, item 7", "smoke": bool(args.smoke), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "done": done, "total": len(runs), "methods": methods,
        "method_settings": {r.method.label: {"strategy": r.method.strategy, "strategy_params": r.method.params,
                                             **r.method.trainer_args} for r in runs},
        "seeds": list(dict.fromkeys(r.seed for r in runs)), "split": args.split,
        "base_config": _repo_relative(args.config),
        "model": first.config.get("model") or first.config.get("model_name_or_path"),
        "max_steps": first.max_steps, "eval_every": first.config.get("mo_eval_steps"),
        "eval_size": first.config.get("mo_eval_size"), "eval_temperature": first.config.get("mo_eval_temperature"),
        "train_temperature": first.config.get("temperature"), "states": states,
        "runs": {m: {str(s): rec for s, rec in per.items()} for m, per in records.items()},
        "comparisons": compare(records, greedy, methods, args.bootstrap, pairs),
        "reference_results": _repo_relative(Path(args.reference_results))
        if getattr(args, "reference_results", None) is not None else None,
    }


def _ci(c: dict[str, Any], key: str = "ci", digits: int = 3) -> str:
    lo, hi = c[key]
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def campaign_markdown(s: dict[str, Any]) -> str:
    temp = s.get("eval_temperature") or 0.0
    decoding = "greedy" if not temp else f"sampled at temperature {temp:g}, one completion per problem"
    lines = [f"# Real-model campaign: {', '.join(s['methods'])} (issue {s['issue']})\n",
             f"{'**Smoke run: the settings are shrunk and the numbers mean nothing.** ' if s['smoke'] else ''}"
             f"Model {s['model']}, base config `{s['base_config']}`, {s['max_steps']} RL steps per run, seeds "
             f"{', '.join(map(str, s['seeds']))}. Front HV: the Pareto front of each run's evaluations of "
             f"{s['eval_size']} {s['split']} problems every {s['eval_every']} step(s) and at step 0 ({decoding}), "
             "normalised space as in `moalign bench`. Greedy accuracy: the final policy (LoRA merged) decoded greedily "
             f"on the {s['split']} split (benchmarks/real_model_eval.py). Differences are paired by seed: mean "
             "[bootstrap 95 % CI over seeds] and seeds won/tied/lost; the accuracy table adds the two-level CI "
             f"(seeds, then problems within each seed). Updated {s['updated']}: {s['done']} of {s['total']} runs "
             "done.\n"]
    if s["done"] < s["total"]:
        lines.append("**Partial results: the campaign is still running.**\n")
    lines.append("## Runs\n")
    lines.append("| method | seed | front HV | steps on front | last evaluation: accuracy / length / clarity | "
                 "greedy accuracy base → final | greedy length / clarity (final) | weights at the end | wall |")
    lines.append("|---|---:|---:|---|---|---|---|---|---:|")
    for m in s["methods"]:
        for seed, rec in sorted(s["runs"].get(m, {}).items(), key=lambda kv: int(kv[0])):
            last = rec["last_eval"]["metrics"]
            g, b = rec.get("greedy"), rec.get("greedy_base")
            acc = f"{b['accuracy']:.3f} → {g['accuracy']:.3f}" if g and b and "accuracy" in g else "–"
            fmt = f"{g.get('length', math.nan):.1f} / {g.get('clarity', math.nan):.3f}" if g else "–"
            w = rec.get("weights_final")
            weights = "[" + ", ".join(f"{v:.3f}" for v in w.values()) + "]" if w else "–"
            wall = _clock(rec["wall_seconds"]) if rec.get("wall_seconds") else "–"
            lines.append(f"| {m} | {seed} | {rec['hv']:.4f} | {', '.join(map(str, rec['front_steps']))} | "
                         f"{last.get('accuracy', math.nan):.3f} / {last.get('length', math.nan):.1f} / "
                         f"{last.get('clarity', math.nan):.3f} | {acc} | {fmt} | {weights} | {wall} |")
    comps = s["comparisons"]
    if comps:
        lines.append("\n## Front HV: method − reference, paired by seed\n")
        lines.append("| method | reference | seeds | HV method | HV reference | per-seed difference | "
                     "difference [95 % CI] | W/T/L |")
        lines.append("|---|---|---|---:|---:|---|---|---|")
        for c in comps:
            h = c["hv"]
            lines.append(f"| {c['method']} | {c['reference']} | {','.join(map(str, c['seeds']))} | {h['mean_a']:.4f} | "
                         f"{h['mean_b']:.4f} | {' '.join(f'{d:+.4f}' for d in h['per_seed'])} | {h['diff']:+.4f} "
                         f"{_ci(h, digits=4)} | {h['wins']}/{h['ties']}/{h['losses']} |")
        if any("greedy_accuracy" in c for c in comps):
            lines.append("\n## Final greedy accuracy: method − reference, paired by seed\n")
            lines.append("| method | reference | metric | seeds | mean method / reference | per-seed difference | "
                         "difference [95 % CI, seeds] | [95 % CI, seeds x problems] | seeds W/T/L |")
            lines.append("|---|---|---|---|---|---|---|---|---|")
            for c in comps:
                for metric in ("accuracy", "clarity", "length"):
                    g = c.get(f"greedy_{metric}")
                    if g is None:
                        continue
                    d = 1 if metric == "length" else 3
                    two_level = _ci(g, "ci_seeds_x_problems", d) if "ci_seeds_x_problems" in g else "–"
                    lines.append(f"| {c['method']} | {c['reference']} | {metric} | {','.join(map(str, c['seeds']))} | "
                                 f"{g['mean_a']:.{d}f} / {g['mean_b']:.{d}f} | "
                                 f"{' '.join(f'{x:+.{d}f}' for x in g['per_seed'])} | {g['diff']:+.{d}f} "
                                 f"{_ci(g, digits=d)} | {two_level} | "
                                 f"{g['wins']}/{g['ties']}/{g['losses']} |")
            lines.append("\n(length: fewer tokens is a win.)")
    todo = {k: v for k, v in s["states"].items() if v != "done"}
    if todo:
        lines.append("\n## Runs not done\n")
        lines.extend(f"- {k}: {v}" for k, v in todo.items())
    return "\n".join(lines) + "\n"


def write_results(summary: dict[str, Any], out: Path) -> None:
    from moalign.rundir import atomic_write_json, atomic_write_text

    # atomic: parallel campaign processes may write them at the same moment, and commit_results may be copying them
    atomic_write_json(out / "campaign.json", summary)
    atomic_write_text(out / "campaign.md", campaign_markdown(summary))


def commit_results(out: Path, dest: Path, message: str, console=None) -> bool:
    """Copy campaign.md/json to ``dest`` (inside a git work tree) and commit only those two files (a busy index is
    retried; a failure is reported, not raised)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for name in ("campaign.md", "campaign.json"):
        shutil.copyfile(out / name, dest / name)
        files.append(str((dest / name).resolve()))
    top = subprocess.run(["git", "-C", str(dest), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0:
        if console is not None:
            console.print(f"--commit-results {dest} is not inside a git work tree; copies left uncommitted")
        return False
    repo = top.stdout.strip()
    for attempt in range(10):
        add = subprocess.run(["git", "-C", repo, "add", "--", *files], capture_output=True, text=True)
        staged = subprocess.run(["git", "-C", repo, "diff", "--cached", "--quiet", "--", *files])
        if add.returncode == 0 and staged.returncode == 0:
            return False  # nothing changed since the last commit
        res = add if add.returncode != 0 else subprocess.run(
            ["git", "-C", repo, "commit", "-q", "-m", message, "--", *files], capture_output=True, text=True)
        if res.returncode == 0:
            return True
        if "index.lock" not in res.stderr:
            break
        time.sleep(3)  # another git command holds the index
    if console is not None:
        console.print(f"could not commit {dest}: {res.stderr.strip()}", markup=False)
    return False


# ---------------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------------
def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, e.g. 200,201,202; got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds must be distinct integers, e.g. 200,201,202; got {text!r}")
    return seeds


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"--dynamic-params must be a JSON/YAML mapping ({exc})")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--dynamic-params must be a mapping such as '{{\"mu\": 1e-3}}'; got {text!r}")
    return value


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="campaign directory (default runs/real_model_campaign, or runs/real_model_campaign_smoke)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="base `moalign train` config of every run")
    p.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS, help="comma-separated (default 200-204)")
    p.add_argument("--dynamic", default="gradient",
                   help="the dynamic method: a `moalign bench` method label (gradient, hypervolume-balanced, gdpo, "
                        "mo-grpo, ...); default gradient with docs/real_model.md's mu 3.3e-3")
    p.add_argument("--dynamic-params", type=_json_object, default=None,
                   help="JSON mapping merged into the dynamic method's strategy_params")
    p.add_argument("--lr-control", type=float, default=None, metavar="SCALE",
                   help="train only fixed-balanced at SCALE x the base learning rate (issue 29: the control for a "
                        "dynamic method that scaled its step size), e.g. 0.86")
    p.add_argument("--reference-results", type=Path, default=None,
                   help="an earlier campaign.json whose runs join the tables (paired by seed) as if finished here")
    p.add_argument("--eval-temperature", type=float, default=0.7,
                   help="temperature of the evaluations in evals.jsonl that the front HV is computed from "
                        "(default 0.7, the training temperature; 0: greedy)")
    p.add_argument("--save-steps", type=int, default=5, help="checkpoint every N RL steps (what a killed run resumes "
                                                             "from)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each run (runs go one at a time)")
    p.add_argument("--split", default="test", help="split of the front and of the greedy evaluation")
    p.add_argument("--max-rows", type=int, default=None, help="greedy evaluation: first N rows of the split")
    p.add_argument("--batch-size", type=int, default=16, help="greedy evaluation batch size")
    p.add_argument("--bootstrap", type=int, default=10000)
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy evaluation (front HV tables only)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    p.add_argument("--analyze-only", action="store_true", help="redo the analysis of the finished runs; train nothing")
    p.add_argument("--smoke", action="store_true",
                   help=f"plumbing check: the first 2 seeds, {SMOKE_OVERRIDES['max_steps']} RL steps, tiny evaluations")
    p.add_argument("--commit-results", type=Path, default=None,
                   help="after each run copy campaign.md/json here (e.g. benchmarks/results/real_model_campaign) "
                        "and git-commit only those two files")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/real_model_campaign_smoke" if args.smoke else "runs/real_model_campaign")
    if args.smoke:
        args.seeds = args.seeds[:2]
        if args.max_rows is None:
            args.max_rows = SMOKE_OVERRIDES["mo_eval_size"]
        args.bootstrap = min(args.bootstrap, 500)
    for key in ("save_steps", "threads", "batch_size", "bootstrap"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1, but got {getattr(args, key)}")
    if args.lr_control is not None and not (math.isfinite(args.lr_control) and args.lr_control > 0):
        p.error(f"--lr-control must be a positive learning-rate factor such as 0.86, but got {args.lr_control}")
    if args.reference_results is not None and not args.reference_results.is_file():
        p.error(f"--reference-results {args.reference_results} does not exist; give an earlier campaign.json, e.g. "
                "benchmarks/results/real_model_campaign/campaign.json")
    if not (math.isfinite(args.eval_temperature) and args.eval_temperature >= 0):
        p.error(f"--eval-temperature must be >= 0 (0: greedy), but got {args.eval_temperature}")
    return args


def dry_run(args) -> list[tuple[Run, RunState]]:
    runs = plan(args)
    states = [(r, run_state(r.run_dir)) for r in runs]
    width = max(len(r.name) for r in runs)
    print(f"{len(runs)} runs in {args.out} (base config {args.config}; {runs[0].max_steps} RL steps, a checkpoint "
          f"every {runs[0].config['save_steps']}):")
    for r, st in states:
        params = json.dumps(r.method.params, sort_keys=True)
        extra = "".join(f", {k}: {v}" for k, v in r.method.trainer_args.items())
        holder = lock_holder(r.run_dir) if st.status != "done" else None
        state = st.describe(r.max_steps) + (f"; training now (pid {holder})" if holder is not None else "")
        print(f"  {r.name:<{width}}  {state:<48}  {r.method.strategy} {params}{extra}")
    left = sum(st.status != "done" for _, st in states)
    print(f"{len(runs) - left} done, {left} to train; ETA {_clock(eta_seconds(runs, ANALYSIS_SECONDS))}")
    return states


def stop_on_signals() -> None:
    """SIGTERM, and SIGINT also in a background job (which starts with SIGINT ignored, so Python never installs its
    handler), end the campaign as Ctrl-C does: :func:`launch` stops the running child, which keeps its last
    checkpoint, instead of leaving it to train on as an orphan."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        dry_run(args)
        return 0
    if args.analyze_only:
        from moalign._quiet import quiet_libraries

        runs = plan(args)
        with quiet_libraries():
            summary = analyse(runs, args)
        write_results(summary, args.out)
        if args.commit_results:
            commit_results(args.out, args.commit_results,
                           f"real-model campaign results ({summary['done']} of {summary['total']} runs)")
        print(f"results: {args.out / 'campaign.md'} and {args.out / 'campaign.json'}")
        return 0
    stop_on_signals()
    try:
        return 1 if run_campaign(args) else 0
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (the run goes on from its last checkpoint)")
        return 130


if __name__ == "__main__":
    sys.exit(main())

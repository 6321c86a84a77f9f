"""Evaluation of a policy on a split, and the objective point used for Pareto fronts.

Metrics per evaluation (one line of ``evals.jsonl``): the mean score of every objective on the split under greedy
decoding, plus ``length``: the mean completion length in tokens (generated tokens up to and including the first
EOS, as TRL's ``completion_ids`` count them). Both papers evaluate greedily on the test split every 5 steps and at
step 0. With ``temperature > 0`` (``mo_eval_temperature``) each row gets one sampled completion instead, drawn from a
fixed seed: greedy decoding reports only each prompt's most likely habit, so a small policy whose habits all sit on
one side of 50 % scores 0 or 1 on them whatever their rates (docs/demo_task.md, the ``async`` member).

The *normalised point* of an evaluation (docs/design.md, "Normalised space") maps every objective to [0, 1] with
1 = better: an objective whose ``eval_metric`` is ``"length"`` (conciseness) becomes
``1 - length / max_completion_length``, the others are their mean scores. Hypervolume is computed in this space
with the reference point at the origin.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .scoring import normalised_length, score_completions

__all__ = [
    "FrontSummary",
    "calibrate_ranges",
    "coverage",
    "eval_matrix",
    "eval_metric_name",
    "eval_seed",
    "evaluate_policy",
    "evaluate_run",
    "load_initial_policy",
    "load_run_rows",
    "metric_ranges",
    "metric_space",
    "normalise_metrics",
    "normalised_point",
    "run_objectives",
    "summarize_front",
]

logger = logging.getLogger(__name__)


def eval_seed(run_seed: int, step: int) -> int:
    """The sampling seed of a run's evaluation at ``step`` (used when ``mo_eval_temperature`` > 0): runs with the same
    seed draw alike at the same step, and ``moalign eval`` reproduces the training's evaluations."""
    return int(run_seed) * 1_000_003 + int(step)


def eval_metric_name(objective) -> str:
    """The metric an objective is reported as in evaluations (``length`` for conciseness, else its name)."""
    return getattr(objective, "eval_metric", None) or objective.name


def normalised_point(metrics: dict[str, float], objectives: Sequence, max_completion_length: int) -> np.ndarray:
    """``(K,)`` point in [0, 1]^K (all maximised) from an evaluation's metrics."""
    point = []
    for obj in objectives:
        metric = eval_metric_name(obj)
        value = float(metrics[metric])
        if hasattr(obj, "normalise"):  # a reward model's affine map of its range (docs/objectives.md)
            point.append(obj.normalise(value))
        else:
            point.append(normalised_length(value, max_completion_length) if metric == "length" else value)
    return np.asarray(point, dtype=np.float64)


@torch.no_grad()
def evaluate_policy(
    model,
    tokenizer,
    rows: Sequence[dict[str, Any]],
    objectives: Sequence,
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    chat_template_kwargs: dict[str, Any] | None = None,
    progress=None,
    temperature: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Greedy-decode every row's ``prompt`` and score it with every objective (objective state is not updated).

    ``temperature > 0`` samples one completion per row at that temperature instead (no top-k/top-p cut, as TRL's
    rollouts by default), from torch's generator seeded with ``seed`` inside :func:`torch.random.fork_rng`: the same
    ``seed`` gives the same draws for the same policy, and the training's random stream is left where it was.

    Returns ``{"n": rows, "length": mean tokens, <eval metric of each objective>: mean, "completions": [...],
    "per_row": {"length": [...], <objective name>: [...]}}``. ``completions`` holds the decoded texts and ``per_row``
    each row's length and scores (None where an objective could not score the row), for paired comparisons of two
    policies on the same rows; callers drop both before writing ``evals.jsonl``.
    """
    if not rows:
        raise ValueError("evaluation split is empty; give an eval dataset with at least one row")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be >= 0 (0: greedy), but got {temperature}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos_ids = {tokenizer.eos_token_id} | set(np.atleast_1d(getattr(model.generation_config, "eos_token_id", []) or []))
    decoding = (dict(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0) if temperature > 0
                else dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    texts, lengths, all_ids = [], [], []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                prompts = [_render(r["prompt"], tokenizer, chat_template_kwargs or {}) for r in batch]
                enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     **decoding)
                for seq in out[:, enc["input_ids"].shape[1] :].tolist():
                    cut = next((i + 1 for i, t in enumerate(seq) if t in eos_ids), len(seq))
                    ids = seq[:cut]
                    all_ids.append(ids)
                    lengths.append(len(ids))
                    texts.append(tokenizer.decode(ids, skip_special_tokens=True))
                if progress is not None:
                    progress(len(batch))
    finally:
        tokenizer.padding_side = previous_side
        model.train(was_training)

    columns = {key: [r.get(key) for r in rows] for key in rows[0] if key != "prompt"}
    completions = [[{"role": "assistant", "content": t}] for t in texts] if _is_chat(rows[0]["prompt"]) else texts
    metrics: dict[str, Any] = {"n": len(rows), "length": float(np.mean(lengths))}
    per_row: dict[str, list] = {"length": lengths}
    scores = score_completions(objectives, [r["prompt"] for r in rows], completions, all_ids, columns)
    for obj in objectives:
        per_row[obj.name] = scores[obj.name]
        valid = [s for s in per_row[obj.name] if s is not None]
        metrics[obj.name] = float(np.mean(valid)) if valid else float("nan")
    metrics["completions"] = texts
    metrics["per_row"] = per_row
    return metrics


def _is_chat(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict)


def _render(prompt: Any, tokenizer, chat_template_kwargs: dict[str, Any]) -> str:
    if _is_chat(prompt):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **chat_template_kwargs)
    return str(prompt)


# ---------------------------------------------------------------------------------------------------------------
# Fronts and table metrics over a run's evaluations (Tables 1-3 of arXiv 2509.11452)
# ---------------------------------------------------------------------------------------------------------------
def metric_space(objectives_meta: Sequence[dict[str, Any]]) -> list[tuple[str, bool]]:
    """``[(metric, maximize)]`` for a run's objectives (``run.json``'s ``objectives``): length is minimised."""
    space = []
    for o in objectives_meta:
        metric = o.get("eval_metric") or o["name"]
        space.append((metric, False if metric == "length" else bool(o.get("maximize", True))))
    return space


def eval_matrix(evals: Sequence[dict[str, Any]], space: Sequence[tuple[str, bool]]) -> np.ndarray:
    """``(n, K)`` raw metric values of a list of ``evals.jsonl`` records."""
    rows = []
    for e in evals:
        missing = [m for m, _ in space if m not in e["metrics"]]
        if missing:
            raise ValueError(f"evaluation at step {e.get('step')} lacks metric(s) {missing}")
        rows.append([float(e["metrics"][m]) for m, _ in space])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(space))


def metric_ranges(objectives_meta: Sequence[dict[str, Any]]) -> list[list[float] | None]:
    """Each objective's normalisation range as ``run.json`` records it (reward models; None for the others).

    A reward-model objective (one whose record has a ``range`` key) without a range yet is an error naming the fix.
    """
    ranges = []
    for o in objectives_meta:
        if "range" in o and o["range"] is None:
            raise ValueError(
                f"objective {o['name']!r} is a reward model without a normalisation range: fronts and hypervolumes "
                "need one. Set range: [lo, hi] in its objectives entry, or evaluate the initial policy (mo_eval_steps "
                "> 0, or `moalign eval RUN_DIR`), which calibrates and records it"
            )
        ranges.append(o.get("range"))
    return ranges


def normalise_metrics(values: np.ndarray, space: Sequence[tuple[str, bool]], max_completion_length: int,
                      ranges: Sequence[Sequence[float] | None] | None = None) -> np.ndarray:
    """Raw metrics -> the normalised space (docs/design.md): length as ``1 - length/max_completion_length``; an
    objective with a range ``[lo, hi]`` (a reward model) by its affine map, clipped to [0, 1], 1 = better."""
    from .objectives.reward_model import normalise_in_range

    out = np.array(values, dtype=np.float64, copy=True)
    for j, (metric, maximize) in enumerate(space):
        if ranges is not None and ranges[j] is not None:
            out[:, j] = [normalise_in_range(v, ranges[j], maximize) for v in out[:, j]]
        elif metric == "length":
            out[:, j] = normalised_length(out[:, j], max_completion_length)
    return out


@dataclass
class FrontSummary:
    """The Pareto front of one run's evaluations and the papers' table metrics."""

    steps: list[int]
    points: list[list[float]]  # raw metrics of the front, in `metrics` order
    metrics: list[str]
    hypervolume: float  # normalised space, reference point at the origin
    front_means: dict[str, float]  # Tables 1-2: mean of each metric over the front
    steps_to_front: float  # Table 3: mean step of the front's points

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize_front(
    evals: Sequence[dict[str, Any]], objectives_meta: Sequence[dict[str, Any]], max_completion_length: int
) -> FrontSummary:
    """Front = non-dominated evaluations of one run (duplicates kept once, earliest step)."""
    from . import pareto

    if not evals:
        raise ValueError("no evaluations to summarize; run with mo_eval_steps > 0 or `moalign eval RUN_DIR` first")
    space = metric_space(objectives_meta)
    raw = eval_matrix(evals, space)
    maximize = [mx for _, mx in space]
    keep = pareto.nondominated(raw, maximize=maximize)
    seen, idx = set(), []
    for i in np.flatnonzero(keep):
        key = tuple(raw[i])
        if key not in seen:
            seen.add(key)
            idx.append(int(i))
    norm = normalise_metrics(raw, space, max_completion_length, metric_ranges(objectives_meta))
    hv = pareto.hypervolume(norm[idx], np.zeros(len(space)), maximize=True)
    steps = [int(evals[i]["step"]) for i in idx]
    return FrontSummary(
        steps=steps,
        points=raw[idx].tolist(),
        metrics=[m for m, _ in space],
        hypervolume=float(hv),
        front_means={m: float(np.mean(raw[idx, j])) for j, (m, _) in enumerate(space)},
        steps_to_front=float(np.mean(steps)),
    )


def coverage(front_a: np.ndarray, front_b: np.ndarray, maximize: Sequence[bool]) -> float:
    """Zitzler's C-metric C(A, B): the share of B's points weakly dominated by some point of A."""
    a, b = np.atleast_2d(front_a), np.atleast_2d(front_b)
    if len(b) == 0:
        return 0.0
    sign = np.where(np.asarray(maximize), 1.0, -1.0)
    a, b = a * sign, b * sign  # now every objective is maximised
    covered = [bool(np.any(np.all(a >= q, axis=1))) for q in b]
    return float(np.mean(covered))


# ---------------------------------------------------------------------------------------------------------------
# `moalign eval RUN_DIR`: greedy evaluation of a run's checkpoints
# ---------------------------------------------------------------------------------------------------------------
def load_run_rows(run_dir: str | Path, split: str = "test", max_rows: int | None = None):
    """``(run.json as a dict, rows of split)`` of a run directory written by `moalign train`: the dataset it recorded,
    rebuilt, with ``split`` as the evaluation split (its first ``max_rows`` rows when given)."""
    from .loading import DataArguments, build_datasets

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no run.json)")
    meta = json.loads((run_dir / "run.json").read_text())
    if not meta.get("data"):
        raise ValueError(f"{run_dir}/run.json does not record its dataset; it was not written by `moalign train`")
    _, eval_ds = build_datasets(DataArguments(**{**meta["data"], "dataset_eval_split": split}))
    rows = [dict(r) for r in eval_ds]
    return meta, rows[:max_rows] if max_rows else rows


def load_initial_policy(run_dir: str | Path, meta: dict[str, Any]):
    """``(model, tokenizer)`` of a run's initial policy: ``initial_model/`` when `moalign train` saved the exact one,
    else the configured model rebuilt (a short name, a path, or ``tiny`` with the run's seed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import ModelConfig

    from .loading import DataArguments, build_model_and_tokenizer

    initial = Path(run_dir) / "initial_model"
    if initial.is_dir():
        return AutoModelForCausalLM.from_pretrained(initial), AutoTokenizer.from_pretrained(initial)
    return build_model_and_tokenizer(ModelConfig(model_name_or_path=meta["model"]["model_name_or_path"]),
                                     DataArguments(**meta["data"]), seed=int(meta.get("seed", 0)))


def run_objectives(meta: dict[str, Any], warn: bool = True) -> list:
    """A run's objectives rebuilt from its ``run.json``, with the parameters it recorded.

    ``config.objectives`` holds each entry as the run was configured: a registry name, a ``module:callable`` path or
    ``{name: ..., <parameter>: ...}``, so ``{name: conciseness, max_tokens: 512}`` comes back with its budget. Runs
    written before objectives had parameters hold names only, which still load. An objective that was passed to the
    trainer as an object (``params`` null in ``run.json``'s ``objectives``) is rebuilt from its name with default
    parameters, with a warning.
    """
    from .objectives import build_objectives

    specs = meta.get("config", {}).get("objectives")
    if not specs:
        raise ValueError("run.json records no config.objectives; it was not written by moalign's trainer")
    recorded = meta.get("objectives") or []
    unknown = [o["name"] for o in recorded if "params" in o and o["params"] is None]
    if unknown and warn:
        logger.warning("objective(s) %s were passed to the trainer as objects, so run.json does not record their "
                       "parameters; they are rebuilt from their names with default parameters", unknown)
    objectives = build_objectives(specs, field="run.json config.objectives")
    names = [o["name"] for o in recorded]
    if names and names != [o.name for o in objectives]:
        raise ValueError(
            f"run.json config.objectives {specs} rebuild objectives named {[o.name for o in objectives]}, but the run "
            f"recorded {names}"
        )
    for obj, record in zip(objectives, recorded):
        if record.get("range") is not None and hasattr(obj, "load_state_dict") and hasattr(obj, "score_range"):
            obj.score_range, obj.range_source = list(record["range"]), record.get("range_source")  # frozen map
    return objectives


def calibrate_ranges(objectives: Sequence, per_row: dict[str, list]) -> dict[str, list[float]]:
    """Freeze the normalisation range of every reward-model objective that has none from one evaluation's
    per-completion scores (the initial policy's); returns ``{name: [lo, hi]}`` of those it set."""
    calibrated = {}
    for obj in objectives:
        if hasattr(obj, "calibrate") and getattr(obj, "score_range", 0) is None:
            calibrated[obj.name] = obj.calibrate(per_row[obj.name])
    return calibrated


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    max_rows: int | None = None,
    batch_size: int = 16,
    include_initial: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate the initial policy and every ``checkpoint-N`` of a run on ``split``; append to ``evals.jsonl``.

    Evaluations already in ``evals.jsonl`` for the same (step, split) are skipped, so the command can be re-run
    after more checkpoints appear. Returns the new records.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .rundir import append_jsonl, read_jsonl, read_state_file

    run_dir = Path(run_dir)
    meta, rows = load_run_rows(run_dir, split, max_rows)
    run_objectives(meta)  # an objective that cannot be rebuilt fails before any model is loaded
    config = meta["config"]
    max_new = int(config.get("max_completion_length") or 256)
    temperature = float(config.get("mo_eval_temperature") or 0.0)  # as the training's own evaluations
    done = {(int(e["step"]), e.get("split")) for e in read_jsonl(run_dir / "evals.jsonl")}
    ckpt_root = Path(config.get("output_dir") or run_dir)
    checkpoints = sorted(
        (p for p in ckpt_root.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    todo: list[tuple[int, Path | None]] = [(0, None)] if include_initial else []
    todo += [(int(p.name.split("-")[-1]), p) for p in checkpoints]
    todo = [(s, p) for s, p in todo if (s, split) not in done]
    new = []
    from rich.progress import Progress

    reward_models: dict[str, Any] = {}  # objective name -> its reward model, loaded once for all checkpoints
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"evaluating {run_dir.name} on {split}", total=len(todo) * len(rows))
        for step, path in todo:
            objectives = run_objectives(meta, warn=False)  # fresh per checkpoint, which loads its own state below
            for o in objectives:
                if hasattr(o, "reward_model"):
                    o.reward_model = reward_models.setdefault(o.name, o.reward_model)
            if path is None:
                model, tok = load_initial_policy(run_dir, meta)
            else:
                model = AutoModelForCausalLM.from_pretrained(path)
                tok = AutoTokenizer.from_pretrained(path)
                state = read_state_file(path)
                for o in objectives:
                    if hasattr(o, "load_state_dict") and o.name in state["objectives"]:
                        o.load_state_dict(state["objectives"][o.name])
            from .objectives import prepare_reward_models

            prepare_reward_models(objectives, next(model.parameters()).device, next(model.parameters()).dtype,
                                  trust_remote_code=bool(config.get("trust_remote_code")),
                                  chat_template_kwargs=config.get("chat_template_kwargs"))
            metrics = evaluate_policy(
                model, tok, rows, objectives, max_new_tokens=max_new, batch_size=batch_size,
                progress=lambda n: bar.advance(task, n), temperature=temperature,
                seed=eval_seed(config["seed"], step),  # the seed the training evaluated with (args.seed)
            )
            if step == 0 and calibrate_ranges(objectives, metrics["per_row"]):
                # a run that never evaluated its initial policy: its reward models' ranges are frozen now
                for record, obj in zip(meta["objectives"], objectives):
                    if getattr(obj, "range_source", None) == "calibrated" and record.get("range") is None:
                        record["range"], record["range_source"] = obj.score_range, "calibrated"
                from .rundir import atomic_write_json

                atomic_write_json(run_dir / "run.json", meta)
            for key in ("completions", "per_row"):
                metrics.pop(key)
            record = {"step": step, "split": split, "metrics": metrics}
            append_jsonl(run_dir / "evals.jsonl", record)
            new.append(record)
    return new

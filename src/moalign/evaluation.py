"""Greedy evaluation of a policy on a split, and the objective point used for Pareto fronts.

Metrics per evaluation (one line of ``evals.jsonl``): the mean score of every objective on the split under greedy
decoding, plus ``length``: the mean completion length in tokens (generated tokens up to and including the first
EOS, as TRL's ``completion_ids`` count them). Both papers evaluate greedily on the test split every 5 steps and at
step 0.

The *normalised point* of an evaluation (DESIGN.md, run directory) maps every objective to [0, 1] with 1 = better:
an objective whose ``eval_metric`` is ``"length"`` (conciseness) becomes ``1 - length / max_completion_length``,
the others are their mean scores. Hypervolume is computed in this space with the reference point at the origin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["evaluate_policy", "normalised_point", "eval_metric_name"]


def eval_metric_name(objective) -> str:
    """The metric an objective is reported as in evaluations (``length`` for conciseness, else its name)."""
    return getattr(objective, "eval_metric", None) or objective.name


def normalised_point(metrics: dict[str, float], objectives: Sequence, max_completion_length: int) -> np.ndarray:
    """``(K,)`` point in [0, 1]^K (all maximised) from an evaluation's metrics."""
    point = []
    for obj in objectives:
        metric = eval_metric_name(obj)
        value = float(metrics[metric])
        if metric == "length":
            value = 1.0 - min(value, max_completion_length) / max_completion_length
        point.append(value)
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
) -> dict[str, Any]:
    """Greedy-decode every row's ``prompt`` and score it with every objective (objective state is not updated).

    Returns ``{"n": rows, "length": mean tokens, <eval metric of each objective>: mean, "completions": [...]}``.
    ``completions`` holds the decoded texts (callers drop it before writing ``evals.jsonl``).
    """
    if not rows:
        raise ValueError("evaluation split is empty; give an eval dataset with at least one row")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos_ids = {tokenizer.eos_token_id} | set(np.atleast_1d(getattr(model.generation_config, "eos_token_id", []) or []))
    texts, lengths, all_ids = [], [], []
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            prompts = [_render(r["prompt"], tokenizer, chat_template_kwargs or {}) for r in batch]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                temperature=None, top_p=None, top_k=None,
            )
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
    for obj in objectives:
        previous = getattr(obj, "training", None)
        if previous is not None:
            obj.training = False
        try:
            scores = obj(prompts=[r["prompt"] for r in rows], completions=completions, completion_ids=all_ids, **columns)
        finally:
            if previous is not None:
                obj.training = previous
        valid = [float(s) for s in scores if s is not None and math.isfinite(float(s))]
        metrics[obj.name] = float(np.mean(valid)) if valid else float("nan")
    metrics["completions"] = texts
    return metrics


def _is_chat(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict)


def _render(prompt: Any, tokenizer, chat_template_kwargs: dict[str, Any]) -> str:
    if _is_chat(prompt):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **chat_template_kwargs)
    return str(prompt)

"""Preferences at inference time: ``generate(experts, prompts, preference)`` and the online training of the gate.

Without a gate the preference over objectives maps to a mixture over experts by
:meth:`~moalign.meta.experts.ExpertSet.mixture_for` (the identity for one expert per objective). With a gate
(:class:`~moalign.meta.gate.MixtureGate`) each prompt gets the mixture the bandit picks for its features and the
preference; prompts that share a mixture are generated together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .aggregate import Generation, build
from .gate import MixtureGate, completion_scores, prompt_features

__all__ = ["generate", "train_gate"]


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m.get("content", "") for m in prompt if m.get("role") != "assistant")


def generate(experts, prompts: Sequence[Any], preference, *, aggregation: str = "hidden",
             gate: MixtureGate | None = None, aggregator=None, **generate_kwargs) -> Generation:
    """One completion per prompt from the experts combined for ``preference`` (one weight per objective).

    ``aggregation`` is ``hidden`` (default; arXiv 2509.21613's recommendation), ``logit`` or ``parameter``;
    ``aggregator`` reuses an already built one. ``generate_kwargs`` go to :meth:`Aggregator.generate`
    (``max_new_tokens``, ``do_sample``, ``temperature``, ``seed``). With a gate, ``Generation.extra["mixtures"]``
    holds each prompt's mixture.
    """
    agg = aggregator or build(aggregation, experts)
    if gate is None:
        return agg.generate(prompts, experts.mixture_for(preference), **generate_kwargs)
    arms = [gate.choose(preference, prompt_features(_prompt_text(p))) for p in prompts]
    texts: list[str] = [""] * len(prompts)
    ids: list[list[int]] = [[] for _ in prompts]
    seconds, kv = 0.0, 0
    for arm in sorted(set(arms)):
        idx = [i for i, a in enumerate(arms) if a == arm]
        out = agg.generate([prompts[i] for i in idx], gate.mixture(arm), **generate_kwargs)
        for j, i in enumerate(idx):
            texts[i], ids[i] = out.texts[j], out.token_ids[j]
        seconds += out.seconds
        kv = max(kv, out.kv_cache_bytes)
    return Generation(texts=texts, token_ids=ids, mixture=list(np.mean([gate.mixture(a) for a in arms], axis=0)),
                      aggregation=agg.name, seconds=seconds, kv_cache_bytes=kv,
                      extra={"arms": arms, "mixtures": [gate.mixture(a) for a in arms]})


def train_gate(
    experts,
    gate: MixtureGate,
    rows: Sequence[dict[str, Any]],
    objectives: Sequence,
    *,
    steps: int,
    aggregation: str = "parameter",
    batch_size: int = 4,
    preferences: Sequence[Sequence[float]] | None = None,
    max_new_tokens: int = 64,
    seed: int = 0,
    log_path: str | Path | None = None,
    oracle: Callable[[np.ndarray, int], tuple[float, float]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> MixtureGate:
    """Online training of the gate: each step draws a preference and ``batch_size`` prompts, lets the gate pick a
    mixture per prompt, generates greedily, and updates the bandit with ``reward = p · scores``.

    ``preferences`` (default: Dirichlet(1) draws) are sampled uniformly. ``oracle(p, arm) -> (best expected reward,
    expected reward of arm)`` -- e.g. from a preference sweep -- adds the pseudo-regret to the log. Each step
    appends ``{step, preference, arms, rewards, mean_reward, regret?, seconds}`` to ``log_path`` (JSONL).
    """
    from ..rundir import append_jsonl

    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    if not rows:
        raise ValueError("rows is empty; give the prompts the gate trains on")
    rng = np.random.default_rng(seed)
    agg = build(aggregation, experts)
    k = len(objectives)
    for step in range(1, steps + 1):
        started = time.perf_counter()
        if preferences is not None:
            p = np.asarray(preferences[int(rng.integers(len(preferences)))], dtype=np.float64)
        else:
            p = rng.dirichlet(np.ones(k))
        batch = [rows[int(i)] for i in rng.integers(len(rows), size=batch_size)]
        feats = [prompt_features(_prompt_text(r["prompt"])) for r in batch]
        arms = [gate.choose(p, f) for f in feats]
        rewards = np.zeros(batch_size)
        for arm in sorted(set(arms)):
            idx = [i for i, a in enumerate(arms) if a == arm]
            out = agg.generate([batch[i]["prompt"] for i in idx], gate.mixture(arm), max_new_tokens=max_new_tokens)
            scores = completion_scores(objectives, [batch[i] for i in idx], out.texts, out.token_ids, max_new_tokens)
            rewards[idx] = scores @ p
        for a, r, f in zip(arms, rewards, feats):
            gate.update(a, float(r), p, f)
        record: dict[str, Any] = {"step": step, "preference": p.round(6).tolist(), "arms": arms,
                                  "rewards": rewards.round(6).tolist(), "mean_reward": float(rewards.mean()),
                                  "seconds": round(time.perf_counter() - started, 3)}
        if oracle is not None:
            record["regret"] = float(np.mean([oracle(p, a)[0] - oracle(p, a)[1] for a in arms]))
        if log_path is not None:
            append_jsonl(log_path, record)
        if progress is not None:
            progress(1)
    return gate

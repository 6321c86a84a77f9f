"""A small multi-attribute reward model of the ``async`` task's habits, trained by moalign, shipped like the warm start.

The ``async`` member of the synthetic task (docs/demo_task.md) has three independent habits, each moving one rule-based
objective. This module trains one sequence classifier with one head per habit, on completions labelled by the rules:

========  ====================================================  =====================  ===========
head      label (1 when ...)                                     rule it stands for     direction
========  ====================================================  =====================  ===========
correct   the final ``\\boxed{}`` is right (no forgotten carry)    ``accuracy``           maximise
numbered  the lines are numbered (>= 2 step markers and a box)   ``clarity``            maximise
filler    the answer ends with the filler line                   ``conciseness`` (+17)  minimise
========  ====================================================  =====================  ===========

The backbone is the ``async`` warm start (:func:`moalign.demo.task_warm_start`), with a new 3-way score head
(``Qwen3ForSequenceClassification``); it is trained with a sigmoid cross-entropy per head on SFT-style solutions
(:func:`moalign.data.synthetic.sft_examples`, the habits in the warm start's shares) plus the warm-start policy's own
samples on train prompts, each labelled by the rules. Inputs are rendered as TRL renders a conversational reward-model
batch (chat template over prompt + completion, right padding), so the model scores RL batches exactly as trained.

Training is deterministic on CPU: ``python -m moalign.habit_reward_model --rebuild`` reproduces the shipped model
(``src/moalign/assets/reward_model/<hash>/``, with ``reward_model.json``: config, reproduction command, and how well each
head tracks its rule on the test split). :func:`habit_reward_model` returns its directory;
``examples/reward_model_async.yaml`` runs RL on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["HEADS", "HabitRewardModelConfig", "habit_labels", "habit_reward_model", "head_tracking", "objectives_entry"]

logger = logging.getLogger(__name__)

HEADS = ("correct", "numbered", "filler")
"""Head order of the model's ``num_labels = 3`` logits."""
META_FILE = "reward_model.json"
SHIPPED = Path(__file__).parent / "assets" / "reward_model"
CACHE_VERSION = 1


@dataclass
class HabitRewardModelConfig:
    """Everything that determines the trained reward model; the cache key is a hash of these fields."""

    seed: int = 0
    """Seed of the head initialisation, the data and its order."""
    n_sft: int = 6000
    """SFT-style labelled solutions (the warm start's habit shares)."""
    n_policy: int = 2000
    """Warm-start policy samples (temperature 1) on train prompts, labelled by the rules."""
    steps: int = 500
    """Optimiser steps (AdamW, batch ``batch_size``, cosine decay after ``warmup_steps``)."""
    batch_size: int = 64
    learning_rate: float = 5e-4
    warmup_steps: int = 25
    max_new_tokens: int = 64
    """Generation cap of the policy samples (the RL runs' ``max_completion_length``)."""
    num_threads: int | None = 1
    """``torch.set_num_threads`` while training (None: leave torch's setting)."""

    def cache_key(self) -> str:
        data = dataclasses.asdict(self)
        data.pop("num_threads")
        blob = json.dumps({"version": CACHE_VERSION, "config": data}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def objectives_entry(path: str | os.PathLike) -> dict[str, Any]:
    """The ``objectives`` entry that reads the three heads as three objectives (names prefixed ``rm_``)."""
    return {"model": str(path), "heads": ["rm_correct", "rm_numbered", {"name": "rm_filler", "index": 2,
                                                                        "maximize": False}]}


def habit_labels(completion: str, answer: str) -> list[float]:
    """``[correct, numbered, filler]`` of one completion by the rules (:data:`HEADS`).

    >>> habit_labels("1. 2+3=5\\n2. 5-1=4\\n\\\\boxed{4}\\nHope this helps!", "4")
    [1.0, 1.0, 1.0]
    """
    from .data.synthetic import async_habits
    from .objectives import Accuracy, Clarity

    correct = Accuracy()([completion], answer=[answer])[0]
    clear = Clarity()([completion])[0]
    return [float(correct or 0.0), float(clear), float(async_habits(completion)["filler"])]


def _answer_of(problem: str) -> str:
    """The value of ``"12+7-4=?"`` (digits, ``+`` and ``-`` only)."""
    expr = problem.split("=")[0]
    total, sign, number = 0, 1, ""
    for ch in expr + "+":
        if ch.isdigit():
            number += ch
        else:
            total += sign * int(number)
            sign, number = (1 if ch == "+" else -1), ""
    return str(total)


def _policy_samples(model_dir: Path, prompts: list, n: int, seed: int, max_new_tokens: int) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .warmstart import _generate

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ids = _generate(model, tok, prompts[:n], greedy=False, max_new_tokens=max_new_tokens, batch=100)
    return tok.batch_decode(ids, skip_special_tokens=True)


def _training_rows(cfg: HabitRewardModelConfig, warm: Path) -> list[dict[str, Any]]:
    from .data.synthetic import SyntheticConfig, load_synthetic, sft_examples

    rows = []
    for ex in sft_examples(SyntheticConfig(variant="async"), cfg.n_sft, seed=cfg.seed + 1):
        text = ex["completion"][0]["content"]
        rows.append({"prompt": ex["prompt"], "completion": text,
                     "labels": habit_labels(text, _answer_of(ex["prompt"][0]["content"]))})
    if cfg.n_policy:
        train = load_synthetic(seed=0, variant="async")["train"]
        n = min(cfg.n_policy, len(train))
        texts = _policy_samples(warm, list(train["prompt"]), n, cfg.seed, cfg.max_new_tokens)
        for prompt, answer, text in zip(train["prompt"][:n], train["answer"][:n], texts):
            rows.append({"prompt": prompt, "completion": text, "labels": habit_labels(text, answer)})
    return rows


def _render(tok, rows: list[dict[str, Any]]):
    """As TRL renders a conversational reward-model batch (moalign.objectives.reward_model)."""
    texts = [tok.apply_chat_template(r["prompt"] + [{"role": "assistant", "content": r["completion"]}],
                                     tokenize=False) for r in rows]
    return tok(text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)


def _train(cfg: HabitRewardModelConfig, out: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer, Qwen3ForSequenceClassification, get_cosine_schedule_with_warmup

    from .demo import task_warm_start

    start = time.perf_counter()
    warm = task_warm_start("async", progress=False)
    rows = _training_rows(cfg, warm)
    tok = AutoTokenizer.from_pretrained(warm)
    torch.manual_seed(cfg.seed)
    model = Qwen3ForSequenceClassification.from_pretrained(warm, num_labels=len(HEADS))
    model.config.pad_token_id = tok.pad_token_id
    model.config.id2label = dict(enumerate(HEADS))
    model.config.label2id = {h: i for i, h in enumerate(HEADS)}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    order = rng.permutation(len(rows))
    cursor = 0
    for _ in range(cfg.steps):
        if cursor + cfg.batch_size > len(order):
            order, cursor = rng.permutation(len(rows)), 0
        batch = [rows[i] for i in order[cursor : cursor + cfg.batch_size]]
        cursor += cfg.batch_size
        logits = model(**_render(tok, batch)).logits
        target = torch.tensor([r["labels"] for r in batch])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    label_means = np.mean([r["labels"] for r in rows], axis=0)
    return {"config": dataclasses.asdict(cfg), "cache_key": cfg.cache_key(), "heads": list(HEADS),
            "backbone": str(warm.name), "n_rows": len(rows),
            "label_shares": {h: round(float(m), 4) for h, m in zip(HEADS, label_means)},
            "final_loss": round(float(np.mean(losses[-20:])), 4), "train_seconds": round(time.perf_counter() - start, 1),
            "reproduce": "python -m moalign.habit_reward_model --rebuild"}


def habit_reward_model(cfg: HabitRewardModelConfig | None = None, cache_dir: str | os.PathLike | None = None,
                       rebuild: bool = False) -> Path:
    """The directory of the trained reward model: the shipped one for the default config, else the cache
    (``$MOALIGN_CACHE/reward_model``, trained on first use); ``rebuild`` trains into ``cache_dir`` (or the package's
    assets when ``cache_dir`` is None, which is how the shipped model is made)."""
    cfg = cfg or HabitRewardModelConfig()
    shipped = SHIPPED / cfg.cache_key()
    if not rebuild and cache_dir is None and (shipped / META_FILE).is_file():
        return shipped
    root = Path(cache_dir) if cache_dir is not None else (SHIPPED if rebuild else _default_cache())
    final = root / cfg.cache_key()
    if (final / META_FILE).is_file() and not rebuild:
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    threads = torch.get_num_threads()
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        meta = _train(cfg, tmp)
        meta["tracking"] = head_tracking(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        torch.set_num_threads(threads)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _default_cache() -> Path:
    from .warmstart import default_cache_dir

    return default_cache_dir().parent / "reward_model"


def head_tracking(model_dir: str | os.PathLike, n: int = 200, samples: int = 4, seed: int = 1) -> dict[str, Any]:
    """How well each head tracks its rule on the test split: the warm-start policy samples ``samples`` completions
    per test prompt (temperature 1), the rules label them and the heads score them. Per head: the share of
    completions where ``sigmoid(logit) > 0.5`` agrees with the rule, ROC AUC, and the rule's base rate."""
    from .data.synthetic import load_synthetic
    from .demo import task_warm_start
    from .objectives import build_objectives, prepare_reward_models

    test = load_synthetic(seed=0, variant="async")["test"].select(range(n))
    prompts = [p for p in test["prompt"] for _ in range(samples)]
    answers = [a for a in test["answer"] for _ in range(samples)]
    texts = _policy_samples(task_warm_start("async", progress=False), prompts, len(prompts), seed, 64)
    labels = np.array([habit_labels(t, a) for t, a in zip(texts, answers)])
    heads = build_objectives([objectives_entry(model_dir)])
    prepare_reward_models(heads)
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    scores = np.array([h(completions, prompts=prompts) for h in heads]).T  # (n, 3) logits
    out = {"n": len(texts), "source": f"warm-start samples, {samples} per test prompt, temperature 1"}
    for j, head in enumerate(HEADS):
        y, s = labels[:, j], scores[:, j]
        out[head] = {"agreement": round(float(np.mean((s > 0) == (y > 0.5))), 4), "auc": _auc(s, y),
                     "base_rate": round(float(y.mean()), 4)}
    return out


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum formula (ties count one half)."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return round(float(greater), 4)


def main(argv: list[str] | None = None) -> Path:
    """``python -m moalign.habit_reward_model [--rebuild] [--cache-dir DIR]``: find or train the reward model."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m moalign.habit_reward_model", description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true", help="train again (into the package's assets by default)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--config", default="{}", help="HabitRewardModelConfig fields as JSON")
    args = parser.parse_args(argv)
    path = habit_reward_model(HabitRewardModelConfig(**json.loads(args.config)), args.cache_dir, args.rebuild)
    print(path)
    return path


if __name__ == "__main__":
    main()

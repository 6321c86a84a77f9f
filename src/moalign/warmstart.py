"""Warm start for the CPU demo: a short SFT of the tiny char-level model on the synthetic task's style mixture.

RL from a random-init model would never see a reward, so ``moalign demo`` first fine-tunes the tiny Qwen3 model of
:mod:`moalign.tiny` with TRL's ``SFTTrainer`` (completion-only loss) on :func:`moalign.data.synthetic.sft_examples`:
a mixture of ``steps``, ``direct`` and ``verbose`` solutions with a controlled share of wrong answers per style.
The result is a policy that samples all three styles, is right part of the time, and is more accurate when it
writes steps — a starting point from which the weighting strategies visibly pull in different directions.

The model is cached under ``<cache>/warmstart/<hash>/`` (``<hash>`` from the config), written atomically, so only the
first call trains (a few minutes on two CPU cores; ``docs/demo_task.md`` has the measured numbers)::

    from moalign.warmstart import warm_start, calibrate
    path = warm_start()                 # trains once, then returns the cached directory at once
    calibrate(path)["sampled"]["accuracy"]

The cache root is ``cache_dir`` if given, else ``$MOALIGN_CACHE/warmstart``, else
``$XDG_CACHE_HOME/moalign/warmstart``, else ``~/.cache/moalign/warmstart``. Each model directory holds the
safetensors weights, the tokenizer and ``warmstart.json`` (config, reproduction command, parameter count,
timings, calibration).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data.synthetic import (STYLES, SyntheticConfig, async_habits, classify_style, habits_shown, load_synthetic,
                             sft_examples)

__all__ = ["WarmStartConfig", "calibrate", "default_cache_dir", "warm_start"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bumped whenever the code changes what a given config trains; part of the cache key."""

META_FILE = "warmstart.json"
SHIPPED = Path(__file__).parent / "assets" / "warmstart"

DEFAULT_MODEL: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


@dataclass
class WarmStartConfig:
    """Everything that determines a warm-start model; the cache key is a hash of these fields."""

    seed: int = 0
    """Seed of the model initialisation, the SFT data and the data order."""
    task: SyntheticConfig = field(default_factory=SyntheticConfig)
    """The synthetic task: difficulty, style mixture, wrong-answer shares (its ``seed`` fixes the held-out splits)."""
    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL))
    """``Qwen3Config`` overrides passed to :func:`moalign.tiny.tiny_model_and_tokenizer` (replaces :data:`DEFAULT_MODEL`
    as a whole; fields left out take tiny.py's defaults)."""
    max_steps: int = 700
    """Optimiser steps. Each step sees ``batch_size`` fresh examples (derived: ``max_steps * batch_size`` in all)."""
    batch_size: int = 64
    """Examples per optimiser step."""
    learning_rate: float = 2e-3
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "cosine"
    """Any ``transformers`` scheduler name."""
    warmup_steps: int = 30
    """Linear warm-up steps before the peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_length: int = 96
    """Longest tokenised prompt + completion (characters, plus the chat-template tokens); longer ones are cut."""
    num_threads: int | None = 2
    """``torch.set_num_threads`` while training (None: leave torch's setting)."""
    calibration_n: int = 200
    """Validation problems sampled for the calibration numbers stored in ``warmstart.json`` (0: skip)."""

    def __post_init__(self) -> None:
        if isinstance(self.task, dict):
            self.task = SyntheticConfig.from_dict(self.task)
        for name in ("max_steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, but got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, but got {self.learning_rate}")
        if self.calibration_n < 0:
            raise ValueError(f"calibration_n must be non-negative, but got {self.calibration_n}")

    @property
    def n_examples(self) -> int:
        """Derived: SFT examples generated (one pass, no repeats of an example)."""
        return self.max_steps * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmStartConfig:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise ValueError(f"unknown WarmStartConfig fields {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
        return cls(**data)

    def cache_key(self) -> str:
        """Hex digest of the fields that change the trained weights (not ``num_threads`` / ``calibration_n``)."""
        data = self.to_dict()
        data.pop("num_threads")
        data.pop("calibration_n")
        data["task"] = self.task.identity()  # a `coupled` task keeps the key it had before the task family existed
        blob = json.dumps({"version": CACHE_VERSION, "config": data}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$MOALIGN_CACHE/warmstart``, else ``$XDG_CACHE_HOME/moalign/warmstart``, else ``~/.cache/moalign/warmstart``."""
    if os.environ.get("MOALIGN_CACHE"):
        return Path(os.environ["MOALIGN_CACHE"]).expanduser() / "warmstart"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "moalign" / "warmstart"


def warm_start(
    cfg: WarmStartConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    rebuild: bool = False,
) -> Path:
    """Return the directory of the warm-start model for ``cfg``, training it first if it is not cached.

    Args:
        cfg: the warm-start config (default: :class:`WarmStartConfig`'s defaults, the ``moalign demo`` model).
        cache_dir: directory holding the ``<hash>/`` model directories (default: :func:`default_cache_dir`).
        progress: show the trainer's progress bar and log lines.
        rebuild: train into the cache even when the package ships this config's checkpoint
            (``src/moalign/assets/warmstart/<hash>/``, made by ``moalign warmstart --rebuild [--task async]`` for
            the default config of each member of the task family; SFT is deterministic on CPU, so a rebuild
            reproduces it).

    Returns:
        ``<cache_dir>/<cfg.cache_key()>``, loadable with ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained``, with ``warmstart.json`` beside the weights.
    """
    cfg = cfg or WarmStartConfig()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    final = root / cfg.cache_key()
    if (final / META_FILE).is_file():
        return final
    shipped = SHIPPED / cfg.cache_key()
    if cache_dir is None and not rebuild and (shipped / META_FILE).is_file():
        return shipped  # the checkpoint `moalign warmstart --rebuild` reproduces, shipped with the package
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        meta = _train(cfg, tmp, progress)
        if cfg.calibration_n:
            start = time.perf_counter()
            meta["calibration"] = calibrate(tmp, n=cfg.calibration_n, seed=cfg.seed, task=cfg.task)
            meta["calibration_seconds"] = round(time.perf_counter() - start, 1)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / META_FILE).is_file():  # not a concurrent writer that finished first: a real error
                raise
            logger.info("another process wrote %s first; using it", final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _train(cfg: WarmStartConfig, out: Path, progress: bool) -> dict[str, Any]:
    """SFT into ``out``; returns the metadata for ``warmstart.json`` (without calibration)."""
    import datasets
    import transformers
    import trl
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from .tiny import tiny_model_and_tokenizer

    start = time.perf_counter()
    old_threads = torch.get_num_threads()
    bars = datasets.is_progress_bar_enabled()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if not progress:
        datasets.disable_progress_bars()
    try:
        model, tok = tiny_model_and_tokenizer(seed=cfg.seed, **cfg.model)
        n_params = sum(p.numel() for p in model.parameters())
        data = Dataset.from_list(sft_examples(cfg.task, cfg.n_examples, seed=cfg.seed))
        args = SFTConfig(
            output_dir=str(out / "_trainer"),
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.lr_scheduler_type,
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
            max_length=cfg.max_length,
            packing=False,
            completion_only_loss=True,
            seed=cfg.seed,
            data_seed=cfg.seed,
            use_cpu=True,
            bf16=False,
            fp16=False,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, cfg.max_steps // 20),
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
        if not progress:  # disable_tqdm swaps the progress bar for a callback that prints every log line
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        result = trainer.train()
        trainer.save_model(str(out))  # safetensors + config + generation config
        # Generation needs left padding. transformers 5 saves only init_kwargs, so set it there too, or the reloaded
        # tokenizer falls back to right padding.
        tok.padding_side = "left"
        tok.init_kwargs["padding_side"] = "left"
        tok.save_pretrained(str(out))
    finally:
        torch.set_num_threads(old_threads)
        if bars:
            datasets.enable_progress_bars()
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    train_seconds = time.perf_counter() - start
    config_json = json.dumps(cfg.to_dict(), sort_keys=True)
    return {
        "config": cfg.to_dict(),
        "cache_key": cfg.cache_key(),
        "cache_version": CACHE_VERSION,
        "seed": cfg.seed,
        "reproduce": f"python -m moalign.warmstart --config {shlex.quote(config_json)}",
        "n_parameters": n_params,
        "n_examples": cfg.n_examples,
        "train_seconds": round(train_seconds, 1),
        "train_loss": round(float(result.training_loss), 4),
        "final_loss": _last_loss(trainer.state.log_history),
        "num_threads": torch.get_num_threads() if cfg.num_threads is None else cfg.num_threads,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _last_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    return round(float(losses[-1]), 4) if losses else None


# -------------------------------------------------------------------------------------------------------- calibration


@torch.no_grad()
def _generate(model, tok, prompts: list[list[dict]], greedy: bool, max_new_tokens: int, batch: int) -> list[list[int]]:
    out: list[list[int]] = []
    tok.padding_side = "left"
    for i in range(0, len(prompts), batch):
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts[i : i + batch]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(
            **enc,
            do_sample=not greedy,
            temperature=None if greedy else 1.0,
            top_k=None if greedy else 0,
            top_p=None if greedy else 1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        for row in gen[:, enc["input_ids"].shape[1] :].tolist():
            ids = []
            for t in row:
                if t in (tok.eos_token_id, tok.pad_token_id):
                    break
                ids.append(t)
            out.append(ids)
    return out


def calibrate(
    model_dir: str | os.PathLike,
    n: int = 200,
    seed: int = 0,
    task: SyntheticConfig | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 100,
) -> dict[str, Any]:
    """Sample the model on ``n`` validation problems, at temperature 1 and greedily, and summarise.

    Args:
        model_dir: a directory saved by :func:`warm_start` (or any causal LM + tokenizer with a chat template).
        n: validation problems: the first ``n`` of the ``val`` split (extended past ``task.n_val`` when ``n`` is
            larger; only the first ``task.n_val`` are guaranteed absent from the warm-start data).
        seed: sampling seed (the global RNG state is restored afterwards).
        task: the synthetic task; default: the one recorded in ``model_dir/warmstart.json``, else the default task.
        max_new_tokens: generation cap; a completion that hits it without ``<eos>`` counts as truncated.
        batch_size: prompts per ``generate`` call.

    Returns:
        ``{"n": n, "sampled": stats, "greedy": stats}`` where ``stats`` has ``accuracy``, ``clarity`` (non-empty
        ``\\boxed{}`` and >= 2 step markers), ``mean_length`` (completion tokens, ``<eos>`` excluded), ``truncated``, ``style_share``
        ``{style: share}`` and ``style_accuracy`` ``{style: accuracy or None}`` (styles as
        :func:`~moalign.data.synthetic.classify_style` reads them); for an ``async`` task also ``habits``
        ``{"numbered": share, "filler": share}`` (:func:`~moalign.data.synthetic.async_habits`), for a ``habits`` task
        the share of each habit (:func:`~moalign.data.synthetic.habits_shown`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if task is None:
        meta_path = model_dir / META_FILE
        task = SyntheticConfig()
        if meta_path.is_file():
            task = WarmStartConfig.from_dict(json.loads(meta_path.read_text())["config"]).task
    val = load_synthetic(**{**task.to_dict(), "n_train": 0, "n_test": task.n_test, "n_val": max(n, task.n_val)})["val"]
    val = val.select(range(n))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    result: dict[str, Any] = {"n": n, "seed": seed}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mode, greedy in (("sampled", False), ("greedy", True)):
            ids = _generate(model, tok, list(val["prompt"]), greedy, max_new_tokens, batch_size)
            texts = tok.batch_decode(ids, skip_special_tokens=True)
            result[mode] = _summarise(texts, [len(x) for x in ids], list(val["answer"]), max_new_tokens)
            if task.variant == "async":
                result[mode]["habits"] = _habit_shares(texts)
            elif task.variant == "habits":
                shown = [habits_shown(t) for t in texts]
                result[mode]["habits"] = {h: round(sum(x[h] for x in shown) / len(texts), 4) for h in shown[0]}
    return result


def _habit_shares(texts: list[str]) -> dict[str, float]:
    """Share of completions with each habit of the ``async`` task (numbered lines, the filler line)."""
    habits = [async_habits(t) for t in texts]
    return {h: round(sum(x[h] for x in habits) / len(texts), 4) for h in ("numbered", "filler")}


def _summarise(texts: list[str], lengths: list[int], answers: list[str], max_new_tokens: int) -> dict[str, Any]:
    """Score completions with the demo's own objectives (accuracy: math_verify on the last ``\\boxed{}``; clarity)."""
    from .objectives import Accuracy, Clarity

    correct = [bool(x) for x in Accuracy()(texts, answer=answers)]
    clear = [bool(x) for x in Clarity()(texts)]
    styles = [classify_style(t) for t in texts]
    n = len(texts)
    share, acc = {}, {}
    for s in STYLES:
        idx = [i for i in range(n) if styles[i] == s]
        share[s] = round(len(idx) / n, 4)
        acc[s] = round(sum(correct[i] for i in idx) / len(idx), 4) if idx else None
    return {
        "accuracy": round(sum(correct) / n, 4),
        "clarity": round(sum(clear) / n, 4),
        "mean_length": round(sum(lengths) / n, 2),
        "truncated": round(sum(length >= max_new_tokens for length in lengths) / n, 4),
        "style_share": share,
        "style_accuracy": acc,
        "style_count": {s: sum(st == s for st in styles) for s in STYLES},
    }


def main(argv: list[str] | None = None) -> Path:
    """``python -m moalign.warmstart [--config JSON] [--cache-dir DIR] [--quiet]``: build or find a warm start and
    print its directory (the ``reproduce`` command in ``warmstart.json`` has this form)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m moalign.warmstart", description=main.__doc__)
    parser.add_argument("--config", default="{}", help="WarmStartConfig fields as JSON; missing fields take defaults")
    parser.add_argument("--cache-dir", default=None, help="directory of <hash>/ entries (default: see module doc)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    args = parser.parse_args(argv)
    path = warm_start(WarmStartConfig.from_dict(json.loads(args.config)), cache_dir=args.cache_dir,
                      progress=not args.quiet)
    print(path)
    return path


if __name__ == "__main__":
    main()

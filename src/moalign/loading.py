"""Data arguments and the model, tokenizer and dataset builders shared by ``moalign train`` and ``moalign eval``.

They live apart from :mod:`moalign.train` and :mod:`moalign.config` (which both reach the trainer) so that evaluation,
which loads checkpoints and is imported by the trainer, depends on neither: the modules form no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TINY", "DataArguments", "build_datasets", "build_model_and_tokenizer"]

TINY = "tiny"


@dataclass
class DataArguments:
    """Where the prompts come from.

    ``dataset`` is a Hub name (``HuggingFaceH4/MATH-500``, ``DigitalLearningGmbH/MATH-lighteval``), a directory of
    verl-style parquet files (``train/val/test.parquet``), a local jsonl/json/parquet file with ``problem`` and
    ``answer`` columns, or ``synthetic`` (the embedded arithmetic task).
    """

    dataset: str = field(default="synthetic", metadata={"help": "Hub name, parquet directory, local file or 'synthetic'."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split used for RL training."})
    dataset_eval_split: str | None = field(default="val", metadata={"help": "Split for evaluations (None: none)."})
    dataset_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra loader keyword arguments."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    model_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "For model 'tiny': Qwen3Config overrides; otherwise from_pretrained keyword arguments."},
    )


def build_model_and_tokenizer(model_args, data_args: DataArguments, seed: int = 0):
    """``model: tiny`` builds the random-init test model; a short name of :data:`moalign.models.KNOWN_MODELS`
    (``smollm2-135m-instruct``) is converted once to a local directory; anything else goes through
    ``from_pretrained``."""
    if model_args.model_name_or_path == TINY:
        from .tiny import tiny_model_and_tokenizer

        return tiny_model_and_tokenizer(seed=seed, **data_args.model_kwargs)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import resolve_model

    # A known short name (`smollm2-135m-instruct`) becomes its converted local directory, also for TRL's reference
    # model and the run's record, which read `model_name_or_path`.
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    kwargs: dict[str, Any] = {"revision": model_args.model_revision, **data_args.model_kwargs}
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = model_args.dtype
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def build_datasets(data_args: DataArguments, seed: int = 42):
    """``(train, eval)`` datasets with TRL-ready ``prompt`` and ``answer`` columns."""
    if data_args.dataset == "synthetic":
        from .data.synthetic import load_synthetic

        splits = load_synthetic(**data_args.dataset_kwargs)
    else:
        from .data import load_math_dataset

        splits = load_math_dataset(data_args.dataset, **data_args.dataset_kwargs)
    if data_args.dataset_train_split not in splits:
        raise ValueError(
            f"dataset_train_split={data_args.dataset_train_split!r} is not a split of {data_args.dataset!r}; "
            f"available: {', '.join(splits)}"
        )
    train_ds = splits[data_args.dataset_train_split]
    if data_args.max_train_samples:
        train_ds = train_ds.select(range(min(data_args.max_train_samples, len(train_ds))))
    eval_ds = None
    if data_args.dataset_eval_split:
        if data_args.dataset_eval_split not in splits:
            raise ValueError(
                f"dataset_eval_split={data_args.dataset_eval_split!r} is not a split of {data_args.dataset!r}; "
                f"available: {', '.join(splits)} (or set dataset_eval_split: null)"
            )
        eval_ds = splits[data_args.dataset_eval_split]
    return train_ds, eval_ds

"""Datasets: math benchmarks (Math500, MATH-lighteval, GSM8K, local files) and the embedded synthetic task.

See ``docs/objectives.md`` ("Datasets") and :mod:`moalign.data.math`. The synthetic task lives in
:mod:`moalign.data.synthetic`.
"""

from .math import (
    MATH500_DIR,
    SHIPPED_DATASETS,
    STEP_BY_STEP_SUFFIX,
    extract_gsm8k_answer,
    load_math_dataset,
    split_dataset,
    to_trl_rows,
)

__all__ = [
    "MATH500_DIR",
    "SHIPPED_DATASETS",
    "STEP_BY_STEP_SUFFIX",
    "extract_gsm8k_answer",
    "load_math_dataset",
    "split_dataset",
    "to_trl_rows",
]

"""Datasets: math benchmarks (Math500, MATH-lighteval, local files) and the embedded synthetic task."""

from .math import STEP_BY_STEP_SUFFIX, load_math_dataset, split_dataset, to_trl_rows

__all__ = ["STEP_BY_STEP_SUFFIX", "load_math_dataset", "split_dataset", "to_trl_rows"]

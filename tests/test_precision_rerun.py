"""benchmarks/precision_rerun.py (issue 26 item 5): the bf16-vs-float32 comparison of a bench table, checked by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("precision_rerun", ROOT / "benchmarks" / "precision_rerun.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _runs(table):
    return {m: {str(s): {"hv": hv} for s, hv in per_seed.items()} for m, per_seed in table.items()}


def test_differences_are_paired_on_the_common_seeds_and_the_best_preset_is_chosen_per_precision():
    bf16 = _runs({"fixed-accuracy": {1: 0.30, 2: 0.20, 3: 0.25}, "fixed-balanced": {1: 0.10, 2: 0.10, 3: 0.40},
                  "saw": {1: 0.20, 2: 0.20, 3: 0.20}})
    # The re-run has only seeds 1 and 2 (seed 3 still training) and reverses the presets' order.
    fp32 = _runs({"fixed-accuracy": {1: 0.10, 2: 0.10}, "fixed-balanced": {1: 0.30, 2: 0.30},
                  "saw": {1: 0.25, 2: 0.15}})
    text = _script().compare(bf16, fp32, bootstrap=200)
    lines = text.splitlines()
    assert lines[0].startswith("Seeds 1–2 (2 seeds)")
    # fixed-accuracy: bf16 0.30, 0.20 on seeds 1-2 (mean 0.25), fp32 0.10, 0.10: differences -0.20 and -0.10.
    assert "| fixed-accuracy | 0.250 | 0.100 | -0.150 [-0.200, -0.100] | 0/0/2 |" in lines
    assert "| saw | 0.200 | 0.200 | -0.000 [-0.050, +0.050] | 1/0/1 |" in lines  # +0.05 and -0.05 (float rounding)
    # the best preset is chosen within each precision, on the same seeds: accuracy in bf16, balanced in float32
    assert "In bf16 autocast: every method against the best fixed preset (fixed-accuracy)" in text
    assert "In float32: every method against the best fixed preset (fixed-balanced)" in text
    # float32: saw 0.25, 0.15 against fixed-balanced 0.30, 0.30 (the best preset there too): -0.05 and -0.15
    assert "| saw | 0.200 | -0.100 [-0.150, -0.050] | 0/0/2 | 0.667 | -0.100 [-0.150, -0.050] | 0/0/2 |" in lines

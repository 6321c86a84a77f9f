"""The dynamic strategies act with the size the paper describes on the embedded task — and a regression that shrinks
them back (as in the first version: weights 0.333 → 0.36 in 30 steps, r_pareto pinned at 0.5) fails here.

Short runs of the demo's own configuration (shipped warm start, synthetic task, grpo); the full-length evidence is
``moalign bench`` (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moalign.data.synthetic import load_synthetic
from moalign.demo import GRADIENT_MU, DemoConfig, train_synthetic_run
from moalign.warmstart import warm_start

STEPS = 8


@pytest.fixture(scope="module")
def embedded():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield warm_start(progress=False), load_synthetic(seed=0)
    torch.set_num_threads(previous)


def _run(tmp_path, embedded, strategy, params, seed=0):
    model_dir, splits = embedded
    cfg = DemoConfig()
    trainer = train_synthetic_run(
        label=strategy, strategy=strategy, params=params, estimator="grpo", seed=seed, model_dir=model_dir,
        splits=splits, run_dir=tmp_path, steps=STEPS, eval_every=1000, eval_size=4, validation_size=cfg.validation_size,
        prompts_per_step=cfg.prompts_per_step, generations=cfg.generations, learning_rate=cfg.learning_rate,
        max_completion_length=cfg.max_completion_length,
    )
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    return trainer, steps


def test_gradient_moves_weights_at_the_reference_scale_and_the_raw_gram_does_not(tmp_path, embedded):
    """Default (unit-normalised gradients, the demo's μ): the weights leave uniform measurably within 8 steps
    (0.02-0.03 here; ≥ 0.1 within the 30-step demo budget, see docs/BENCHMARKS.md); with the raw Gram of the first
    version the same μ moves them at least 5× less."""
    _, unit = _run(tmp_path / "unit", embedded, "gradient", {"mu": GRADIENT_MU})
    _, raw = _run(tmp_path / "raw", embedded, "gradient", {"mu": GRADIENT_MU, "normalize": "none"})
    shift = lambda steps: max(abs(w - 1 / 3) for w in steps[-1]["weights"].values())  # noqa: E731
    assert shift(unit) >= 0.015, [s["weights"] for s in unit]
    assert shift(raw) * 5 <= shift(unit), (shift(raw), shift(unit))
    # every step moved the log-weights by (η/μ)·I up to the normaliser, in the order of the influences
    for line in unit:
        infl = np.array([line["strategy"][f"influence/{k}"] for k in ("accuracy", "conciseness", "clarity")])
        change = np.array([line["strategy"][f"log_weight_change/{k}"] for k in ("accuracy", "conciseness", "clarity")])
        np.testing.assert_allclose(change - change.mean(), line["lr"] / GRADIENT_MU * (infl - infl.mean()), atol=1e-9)

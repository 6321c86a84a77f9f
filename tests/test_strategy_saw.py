"""SAW (arXiv 2606.07705): coefficient-of-variation weights, checked by hand and against a transcription of the
authors' code (its ``grpo-h`` and ``gdpo-h`` advantage estimators) through moalign's two aggregations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from moalign import weighting
from moalign.rl.step import weigh_step
from moalign.weighting.base import StepStats

NAMES = ["accuracy", "conciseness", "clarity"]


def _stats(rewards, g=4):
    rewards = np.asarray(rewards, dtype=np.float64)
    return StepStats(0, rewards, np.arange(len(rewards)) // g, np.zeros_like(rewards))


def test_hand_worked_weights():
    saw = weighting.build("saw", 2, ["format", "accuracy"])
    # format: 3 of 4 -> mean 0.75, std 0.5, CV 2/3; accuracy: 1 of 4 -> mean 0.25, std 0.5, CV 2
    saw.before_update(_stats([[1, 1], [1, 0], [1, 0], [0, 0]]))
    np.testing.assert_allclose(saw.weights(), [0.25, 0.75], rtol=1e-7)
    m = saw.metrics()
    assert m["skipped"] == 0.0 and m["cv/format"] == pytest.approx(2 / 3) and m["cv/accuracy"] == pytest.approx(2.0)


def test_offsets_shift_the_rewards_before_the_cv():
    # the reference's correctness reward lies in [-3, 3] and gets +3: CV of (4, 6, 0, 2) = std 2.582 / mean 3
    saw = weighting.build("saw", 2, ["correctness", "format"], reward_offsets=[3.0, 0.0])
    saw.before_update(_stats([[1, 1], [3, 1], [-3, 0], [-1, 1]]))
    cv = np.array([np.std([4, 6, 0, 2], ddof=1) / 3, np.std([1, 1, 0, 1], ddof=1) / 0.75])
    np.testing.assert_allclose(saw.weights(), cv / cv.sum(), rtol=1e-7)


def test_saturated_objective_hands_its_weight_to_the_others():
    """The paper's mechanism: an objective nearly always satisfied (low CV) gets little weight, and the weight
    falls monotonically with the success rate."""
    rng = np.random.default_rng(0)
    n = 400
    rates = np.array([0.95, 0.5, 0.2])
    r = (rng.random((n, 3)) < rates).astype(float)
    saw = weighting.build("saw", 3, NAMES)
    saw.before_update(_stats(r))
    w = saw.weights()
    assert w[0] < w[1] < w[2] and w[0] < 0.1, w
    p = r.mean(axis=0)  # for 0/1 rewards CV = sqrt((1 - p)/p · n/(n - 1))
    cv = np.sqrt((1 - p) / p * n / (n - 1))
    np.testing.assert_allclose(w, cv / cv.sum(), rtol=1e-6)


def test_nothing_varies_keeps_the_weights_and_reports_skipped():
    saw = weighting.build("saw", 3, NAMES)
    saw.before_update(_stats([[1, 0, 1]] * 8))
    assert saw.metrics()["skipped"] == 1.0
    np.testing.assert_allclose(saw.weights(), np.full(3, 1 / 3))


def test_unscored_cells_are_left_out_of_an_objectives_statistics():
    r = np.array([[1, 1, 0], [0, np.nan, 1], [1, 0, np.nan], [0, 1, 1]], dtype=float)
    saw = weighting.build("saw", 3, NAMES)
    saw.before_update(_stats(r))
    cv = [np.std(c, ddof=1) / np.mean(c) for c in ([1, 0, 1, 0], [1, 0, 1], [0, 1, 1])]
    np.testing.assert_allclose(saw.weights(), np.array(cv) / np.sum(cv), rtol=1e-7)


def test_state_round_trip_and_repr():
    saw = weighting.build("saw", 3, NAMES, reward_offsets=[1, 0, 0])
    saw.before_update(_stats(np.eye(4, 3)))
    restored = weighting.build("saw", 3, NAMES, reward_offsets=[1, 0, 0])
    restored.load_state_dict(json.loads(json.dumps(saw.state_dict(), allow_nan=False)))
    assert restored.state_dict() == saw.state_dict() and restored.metrics() == saw.metrics()
    assert repr(weighting.build("saw", 3, NAMES)) == "SAW(reward_offsets=None)"


@pytest.mark.parametrize(("params", "match"), [({"reward_offsets": [1.0]}, "reward_offsets has 1 entries"),
                                                ({"reward_offsets": [0, 0, float("nan")]}, "must be finite"),
                                                ({"offsets": [0, 0, 0]}, "accepts: reward_offsets")])
def test_bad_parameters_name_the_parameter(params, match):
    with pytest.raises(ValueError, match=match):
        weighting.build("saw", 3, NAMES, **params)


# -- the authors' code, transcribed (verl: ray_trainer.compute_advantage, branches grpo-h and gdpo-h) ---------------
def _verl_grpo(scores: torch.Tensor, g: int) -> torch.Tensor:
    """verl's compute_grpo_outcome_advantage on sequence scores: (s − mean) / (std + 1e-6) per uid, Bessel std."""
    out = torch.empty_like(scores)
    for start in range(0, len(scores), g):
        block = scores[start:start + g]
        out[start:start + g] = (block - block.mean()) / (block.std() + 1e-6)
    return out


def _reference_saw_weights(r: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    shifted = r + offsets
    cv = shifted.std(dim=0) / (shifted.mean(dim=0).abs() + 1e-8)
    return cv / (cv.sum() + 1e-8) * r.shape[1]  # the reference: × K (2.0 for its two rewards)


def _reference_grpo_h(r, offsets, g):
    w = _reference_saw_weights(r, offsets)
    return _verl_grpo((r * w).sum(dim=1), g)


def _reference_gdpo_h(r, offsets, g):
    w = _reference_saw_weights(r, offsets)
    combined = sum(w[k] * _verl_grpo(r[:, k], g) for k in range(r.shape[1]))
    return (combined - combined.mean()) * torch.rsqrt(combined.var() + 1e-8)  # masked_whiten, one token each


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("aggregation", "reference"), [("sum_then_normalize", _reference_grpo_h),
                                                         ("normalize_then_sum", _reference_gdpo_h)])
def test_matches_the_reference_code(seed, aggregation, reference):
    rng = np.random.default_rng(seed)
    g = 4
    r = np.stack([rng.integers(-3, 4, size=8 * g).astype(float),  # a ToolRL-like correctness reward in [-3, 3]
                  (rng.random(8 * g) < 0.8).astype(float),  # a nearly learned format reward
                  (rng.random(8 * g) < 0.3).astype(float)], axis=1)
    offsets = [3.0, 0.0, 0.0]
    saw = weighting.build("saw", 3, ["correctness", "format", "length"], reward_offsets=offsets)
    adv, rec = weigh_step(r, saw, num_generations=g, aggregation=aggregation)
    expected = reference(torch.tensor(r, dtype=torch.float64), torch.tensor(offsets, dtype=torch.float64), g)
    ref_w = _reference_saw_weights(torch.tensor(r), torch.tensor(offsets)).numpy()
    np.testing.assert_allclose(rec.weights * 3, ref_w, rtol=1e-7, err_msg=f"seed={seed}")
    # the advantages differ only by the normalisation constants (1e-4 vs 1e-6 in the group std; TRL's sequence
    # whitening vs verl's token whitening, equal here with one token per completion)
    np.testing.assert_allclose(adv.numpy(), expected.numpy(), rtol=2e-3, atol=2e-3, err_msg=f"seed={seed}")
    assert math.isclose(float(rec.weights.sum()), 1.0)


# --- ema_rate: smoothed batch statistics (a moalign option; issue 29 item 5) ---------------------------------------
def _smoothed_cv_by_hand(batches, tau):
    """Independent transcription: EMA of each column's mean and (N - 1) variance, started at the first batch."""
    mean = var = None
    for b in batches:
        m, v = b.mean(axis=0), b.var(axis=0, ddof=1)
        mean, var = (m, v) if mean is None else ((1 - tau) * mean + tau * m, (1 - tau) * var + tau * v)
    return np.sqrt(var) / np.abs(mean)


def test_ema_smooths_the_batch_statistics_as_transcribed():
    rng = np.random.default_rng(3)
    batches = [(rng.random((16, 3)) < [0.9, 0.5, 0.3]).astype(float) for _ in range(5)]
    saw = weighting.build("saw", 3, NAMES, ema_rate=0.3)
    for b in batches:
        saw.before_update(_stats(b))
    cv = _smoothed_cv_by_hand(batches, 0.3)
    np.testing.assert_allclose(saw.weights(), cv / cv.sum(), rtol=1e-7)  # the strategy's 1e-8 epsilons


def test_ema_rate_one_is_the_published_update_and_smoothing_damps_the_jumps():
    rng = np.random.default_rng(4)
    batches = [(rng.random((16, 3)) < [0.8, 0.5, 0.4]).astype(float) for _ in range(12)]
    published, one, smooth = (weighting.build("saw", 3, NAMES, **kw) for kw in ({}, {"ema_rate": 1.0},
                                                                                 {"ema_rate": 0.2}))
    jumps = {"published": [], "smooth": []}
    for b in batches:
        before = published.weights().copy(), smooth.weights().copy()
        for s in (published, one, smooth):
            s.before_update(_stats(b))
        np.testing.assert_allclose(one.weights(), published.weights(), rtol=1e-12)
        jumps["published"].append(np.abs(published.weights() - before[0]).sum())
        jumps["smooth"].append(np.abs(smooth.weights() - before[1]).sum())
    assert np.mean(jumps["smooth"][2:]) < np.mean(jumps["published"][2:])


def test_ema_state_round_trip_repr_and_the_published_state_unchanged():
    saw = weighting.build("saw", 3, NAMES, ema_rate=0.5)
    saw.before_update(_stats(np.eye(4, 3)))
    restored = weighting.build("saw", 3, NAMES, ema_rate=0.5)
    restored.load_state_dict(json.loads(json.dumps(saw.state_dict(), allow_nan=False)))
    restored.before_update(_stats(np.eye(4, 3)[::-1]))
    saw.before_update(_stats(np.eye(4, 3)[::-1]))
    assert restored.state_dict() == saw.state_dict()
    assert repr(saw) == "SAW(reward_offsets=None, ema_rate=0.5)"
    assert sorted(weighting.build("saw", 3, NAMES).state_dict()) == ["cv", "skipped", "weights"]
    with pytest.raises(ValueError, match="strategy_params.ema_rate must be"):
        weighting.build("saw", 3, NAMES, ema_rate=0.0)

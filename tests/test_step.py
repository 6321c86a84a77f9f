"""The framework-free RL step (moalign.rl.step) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moalign import weighting
from moalign.rl.step import StepSkipped, finish_step, weigh_step

NAMES = ["accuracy", "conciseness", "clarity"]
# 2 prompts × 3 completions; every objective varies within some prompt; one cell unscored.
REWARDS = np.array([
    [1.0, 0.0, 1.0],
    [0.0, 1.0, 1.0],
    [1.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
    [1.0, np.nan, 0.0],
    [0.0, 1.0, 1.0],
])


def _grpo_by_hand(s, g, scale):
    """(s_i - mean_group) / (std_group + 1e-4), Bessel std, NaN -> advantage 0; a plain loop."""
    out = np.zeros(len(s))
    for start in range(0, len(s), g):
        block = s[start:start + g]
        ok = ~np.isnan(block)
        mean = block[ok].mean()
        std = block[ok].std(ddof=1)
        for i in range(g):
            if ok[i]:
                out[start + i] = (block[i] - mean) / (std + 1e-4) if scale else block[i] - mean
    return out


@pytest.mark.parametrize("scale", ["group", "none"])
def test_fixed_weights_match_a_hand_computation(scale):
    w = np.array([0.5, 0.3, 0.2])
    adv, rec = weigh_step(REWARDS, weighting.build("fixed", 3, NAMES, weights=w.tolist()), num_generations=3,
                          scale_rewards=scale, step=7)
    scalar = np.nan_to_num(REWARDS) @ w  # TRL: nansum of the weighted rewards
    np.testing.assert_allclose(adv.numpy(), _grpo_by_hand(scalar, 3, scale == "group"), atol=1e-5)
    np.testing.assert_allclose(rec.weights, w)
    np.testing.assert_allclose(rec.reward_means, [0.5, 0.6, 4 / 6])
    assert rec.step == 7 and rec.skip_reason is None and rec.advantage_scale == 1.0
    # covariance diagnostic: within-prompt population covariance of r_k with the final advantage, mean over prompts
    a = adv.numpy().astype(np.float64)
    expected = []
    for k in range(3):
        covs = []
        for start in (0, 3):
            rows = [i for i in range(start, start + 3) if not np.isnan(REWARDS[i, k])]
            rk, ak = REWARDS[rows, k], a[rows]
            covs.append(np.mean((rk - rk.mean()) * (ak - ak.mean())))
        expected.append(np.mean(covs))
    np.testing.assert_allclose(rec.covariance, expected, atol=1e-6)


def test_gram_strategy_sets_this_batchs_weights_from_the_callable():
    seen = []

    def gram(adv):
        seen.append(adv.clone())
        return np.diag([3.0, 1.0, 1.0]), np.array([0.1, 0.2, 0.3])

    g = weighting.build("gradient", 3, NAMES, mu=1.0, normalize="none")
    adv, rec = weigh_step(REWARDS, g, num_generations=3, scale_rewards="none", lr=0.5, gram=gram)
    assert len(seen) == 1 and seen[0].shape == (6, 3)
    np.testing.assert_allclose(seen[0].numpy(), rec.stats.advantages, atol=1e-6)  # per-objective advantages
    logits = np.log(np.full(3, 1 / 3)) + 0.5 * np.array([3.0, 1.0, 1.0]) / 1.0  # I = G·1, η = 0.5, μ = 1
    w = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(rec.weights, w)
    np.testing.assert_allclose(adv.numpy(), _grpo_by_hand(np.nan_to_num(REWARDS) @ w, 3, False), atol=1e-5)
    np.testing.assert_allclose(rec.stats.losses, [0.1, 0.2, 0.3])
    assert rec.strategy_metrics["influence/accuracy"] == 3.0


def test_gram_strategy_without_a_callable_is_an_error():
    with pytest.raises(ValueError, match="strategy 'mgda' needs per-objective gradient statistics; pass gram="):
        weigh_step(REWARDS, weighting.build("mgda", 3, NAMES), num_generations=3)


def test_all_zero_gram_with_varying_rewards_is_a_logged_skip_with_the_true_reason():
    _, rec = weigh_step(REWARDS, weighting.build("mgda", 3, NAMES), num_generations=3,
                        gram=lambda a: torch.zeros(3, 3))
    assert rec.skip_reason.startswith("all-zero Gram matrix although rewards vary")
    _, rec = weigh_step(REWARDS, weighting.build("mgda", 3, NAMES), num_generations=3,
                        gram=lambda a: np.full((3, 3), np.nan))
    assert rec.skip_reason == "non-finite Gram matrix"
    flat = np.ones((6, 3))
    _, rec = weigh_step(flat, weighting.build("mgda", 3, NAMES), num_generations=3, gram=lambda a: np.zeros((3, 3)))
    assert rec.skip_reason.startswith("no objective's reward varies within a prompt")


def test_no_scored_completion_skips_the_strategy():
    calls = []
    s = weighting.build("mgda", 3, NAMES)
    adv, rec = weigh_step(np.full((6, 3), np.nan), s, num_generations=3, gram=lambda a: calls.append(1))
    assert rec.skip_reason == "no completion could be scored" and not calls
    assert torch.all(adv == 0)


def test_normalize_then_sum_is_gdpo_by_hand():
    """TRL's normalize_then_sum: per-objective group normalisation, weighted nansum, batch whitening."""
    w = np.array([0.7, 0.2, 0.1])
    adv, _ = weigh_step(REWARDS, weighting.build("fixed", 3, NAMES, weights=w.tolist()), num_generations=3,
                        aggregation="normalize_then_sum")
    per_obj = np.stack([_grpo_by_hand(REWARDS[:, k], 3, True) for k in range(3)], axis=1)
    per_obj[np.isnan(REWARDS)] = np.nan
    s = np.nansum(per_obj * w, axis=1)
    expected = (s - s.mean()) / (s.std(ddof=1) + 1e-4)
    np.testing.assert_allclose(adv.numpy(), expected, atol=1e-5)


def test_normalize_then_sum_differs_from_sum_then_normalize():
    s = weighting.build("fixed", 3, NAMES, weights=[0.7, 0.2, 0.1])
    a, _ = weigh_step(REWARDS, s, num_generations=3)
    b, _ = weigh_step(REWARDS, s, num_generations=3, aggregation="normalize_then_sum")
    assert not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ValueError, match="multi_objective_aggregation must be one of"):
        weigh_step(REWARDS, s, num_generations=3, aggregation="mean")


def test_advantage_scale_multiplies_the_advantages():
    hv = weighting.build("hypervolume", 3, NAMES, point_source="train_batch", apply_to="advantage",
                         ref_point=[0.0, 0.0, 0.0])
    adv, rec = weigh_step(REWARDS, hv, num_generations=3)
    base, _ = weigh_step(REWARDS, weighting.build("fixed", 3, NAMES), num_generations=3)
    assert rec.advantage_scale != 1.0
    np.testing.assert_allclose(adv.numpy(), base.numpy() * rec.advantage_scale, rtol=1e-6)


def test_finish_step_runs_after_update_and_refreshes_metrics():
    lag = weighting.build("lagrangian", 3, NAMES, dual_lr=1.0)
    _, rec = weigh_step(REWARDS, lag, num_generations=3)
    finish_step(lag, rec)
    # λ_j ← max(0, λ_j + α (0.9 − mean r_j)) for conciseness and clarity
    np.testing.assert_allclose(lag.weights(), [1.0, 0.9 - 0.6, 0.9 - 4 / 6])
    assert rec.strategy_metrics["lambda/conciseness"] == pytest.approx(0.3)


def test_finish_step_passes_post_update_statistics():
    ctwa = weighting.build("ctwa", 3, NAMES)
    _, rec = weigh_step(REWARDS, ctwa, num_generations=3)
    finish_step(ctwa, rec, clipped_advantage_weights=np.array([1.0, -1.0, 0.5, 0.2, -0.2, 0.0]))
    assert rec.stats.clipped_advantage_weights is not None and rec.strategy_metrics["skipped"] == 0.0


def test_bad_reward_shape_is_an_error():
    with pytest.raises(ValueError, match=r"rewards must have shape \(N, 3\)"):
        weigh_step(np.zeros((6, 2)), weighting.build("fixed", 3, NAMES), num_generations=3)


def test_a_gram_callable_that_raises_a_reason_skips_the_strategy():
    def gram(adv):
        raise StepSkipped("probe refused: reentrant checkpointing")

    s = weighting.build("gradient", 3, NAMES)
    before = s.weights()
    adv, rec = weigh_step(REWARDS, s, num_generations=3, gram=gram)
    assert rec.skip_reason == "probe refused: reentrant checkpointing"
    np.testing.assert_array_equal(rec.weights, before)
    assert torch.any(adv != 0)  # the batch still trains with the previous weights

    def broken(adv):
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError, match="a real bug"):
        weigh_step(REWARDS, s, num_generations=3, gram=broken)

"""MO-GRPO (arXiv 2509.22047) as ``multi_objective_aggregation: mo_grpo``: each objective normalised within its
prompt group, the normalised rewards summed, no final whitening -- checked against hand computations, and the
derivation of docs/strategies/mo_grpo.md (GDPO = MO-GRPO / std) checked numerically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moalign import weighting
from moalign.rl.step import weigh_step

NAMES = ["a", "b", "c"]


def _fixed(weights):
    return weighting.build("fixed", len(weights), NAMES[: len(weights)], weights=list(weights))


def _group_norm_by_hand(r: np.ndarray, g: int) -> np.ndarray:
    """(r_i − mean_group) / (std_group + 1e-4) over the scored entries, Bessel std; unscored -> 0; a plain loop."""
    out = np.zeros(len(r))
    for start in range(0, len(r), g):
        idx = [i for i in range(start, start + g) if not np.isnan(r[i])]
        if len(idx) < 2:
            continue
        vals = r[idx]
        mean, std = vals.mean(), vals.std(ddof=1)
        for i in idx:
            out[i] = (r[i] - mean) / (std + 1e-4)
    return out


def _rloo_by_hand(r: np.ndarray, g: int) -> np.ndarray:
    out = np.zeros(len(r))
    for start in range(0, len(r), g):
        idx = [i for i in range(start, start + g) if not np.isnan(r[i])]
        if len(idx) < 2:
            continue
        for i in idx:
            out[i] = r[i] - np.mean([r[j] for j in idx if j != i])
    return out


def test_hand_worked_group():
    # one prompt, four completions: objective a learned (3/4), objective b not (1/4)
    r = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    adv, _ = weigh_step(r, _fixed([1.0, 1.0]), num_generations=4, aggregation="mo_grpo")
    # a: mean 0.75, std 0.5 -> (0.25, 0.25, 0.25, -0.75) / 0.5001; b: mean 0.25, std 0.5 -> (0.75, -0.25 ×3) / 0.5001
    expected = np.array([0.25 + 0.75, 0.25 - 0.25, 0.25 - 0.25, -0.75 - 0.25]) / 0.5001
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-6)
    # GDPO whitens the same sum: mean 0, Bessel std of (x, 0, 0, -x) = x·sqrt(2/3)
    gdpo, _ = weigh_step(r, _fixed([1.0, 1.0]), num_generations=4, aggregation="normalize_then_sum")
    np.testing.assert_allclose(gdpo.numpy(), expected / (expected[0] * np.sqrt(2 / 3) + 1e-4), rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_brute_force_transcription_with_weights_and_unscored_cells(seed):
    rng = np.random.default_rng(seed)
    g, k = 4, 3
    r = rng.integers(0, 2, size=(6 * g, k)).astype(float) * rng.uniform(0.5, 3.0, size=k)  # different scales
    r[rng.random(r.shape) < 0.1] = np.nan
    w = rng.uniform(0.1, 2.0, size=k)
    for estimator, by_hand in (("grpo", _group_norm_by_hand), ("rloo", _rloo_by_hand)):
        adv, _ = weigh_step(r, _fixed(w), num_generations=g, estimator=estimator, aggregation="mo_grpo")
        expected = sum(w[j] * by_hand(r[:, j], g) for j in range(k))
        np.testing.assert_allclose(adv.numpy(), expected, atol=1e-5, err_msg=f"seed={seed} {estimator}")


@pytest.mark.parametrize(("estimator", "scale_rewards"), [("grpo", "group"), ("grpo", "batch"), ("grpo", "none"),
                                                          ("rloo", "none"), ("reinforce", "batch")])
def test_gdpo_is_mo_grpo_divided_by_its_batch_std(estimator, scale_rewards):
    """The derivation: every estimator's per-objective advantages sum to 0 over each group (the batch for
    reinforce), so the weighted sum has batch mean 0 and GDPO's whitening is a single positive factor."""
    rng = np.random.default_rng(7)
    r = rng.integers(0, 2, size=(32, 3)).astype(float) * [1.0, 5.0, 0.2]
    r[rng.random(r.shape) < 0.1] = np.nan
    r[5] = np.nan  # a completion no objective scored
    s = _fixed([0.5, 0.3, 0.2])
    mo, _ = weigh_step(r, s, num_generations=4, estimator=estimator, scale_rewards=scale_rewards,
                       aggregation="mo_grpo")
    gdpo, _ = weigh_step(r, s, num_generations=4, estimator=estimator, scale_rewards=scale_rewards,
                         aggregation="normalize_then_sum")
    scored = ~np.isnan(r).all(axis=1)
    m = mo.double().numpy()
    assert abs(m[scored].mean()) < 1e-6
    np.testing.assert_allclose(gdpo.numpy(), m / (m[scored].std(ddof=1) + 1e-4), atol=1e-5)
    assert gdpo[5] == 0 and mo[5] == 0


def test_invariant_to_the_scale_of_each_reward_where_grpo_is_not():
    """The paper's point: no reward's scale needs tuning. Rescaling one reward (×10, + 3) leaves MO-GRPO's
    advantages unchanged; GRPO's summed reward is then dominated by it."""
    rng = np.random.default_rng(0)
    r = rng.integers(0, 2, size=(16, 3)).astype(float)
    scaled = r * [10.0, 1.0, 1.0] + [3.0, 0.0, 0.0]
    s = _fixed([1.0, 1.0, 1.0])
    a, _ = weigh_step(r, s, num_generations=4, aggregation="mo_grpo")
    b, _ = weigh_step(scaled, s, num_generations=4, aggregation="mo_grpo")
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)  # only the 1e-4 in the std moves
    g1, _ = weigh_step(r, s, num_generations=4)
    g2, _ = weigh_step(scaled, s, num_generations=4)
    assert not torch.allclose(g1, g2, atol=1e-2)
    # under GRPO the rescaled reward takes over the advantage: its within-prompt correlation with the advantage
    # jumps (0.39 -> 0.86 on this batch) and the others' fall
    def corr(adv):
        centred = r - np.repeat(r.reshape(4, 4, 3).mean(axis=1), 4, axis=0)
        return np.array([np.corrcoef(adv.numpy(), centred[:, k])[0, 1] for k in range(3)])

    before, after = corr(g1), corr(g2)
    assert after[0] > before[0] + 0.3 and after[0] == after.max() and np.all(after[1:] < before[1:])


def test_unknown_aggregation_names_mo_grpo():
    with pytest.raises(ValueError, match="sum_then_normalize, normalize_then_sum, mo_grpo"):
        weigh_step(np.zeros((4, 2)), _fixed([1.0, 1.0]), num_generations=2, aggregation="mogrpo")


def test_config_rejects_an_unknown_aggregation_before_any_model_is_loaded(tmp_path):
    from moalign.trainer import MOGRPOConfig

    with pytest.raises(ValueError, match=r"multi_objective_aggregation must be one of sum_then_normalize, "
                                         r"normalize_then_sum, mo_grpo, but got 'mo-grpo'"):
        MOGRPOConfig(output_dir=str(tmp_path), multi_objective_aggregation="mo-grpo", use_cpu=True, report_to="none")
    MOGRPOConfig(output_dir=str(tmp_path), multi_objective_aggregation="mo_grpo", use_cpu=True, report_to="none")

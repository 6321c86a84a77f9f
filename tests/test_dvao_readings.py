"""DVAO (arXiv 2605.25604) against moalign's aggregations -- the readings, not the method.

DVAO's defining equation could not be read (docs/strategies/mo_grpo.md, "DVAO (arXiv 2605.25604)": only the abstract
and third-party summaries were reachable). What they say: DVAO is an *advantage combination* (each objective's
reward normalised within its rollout group, then a weighted sum, i.e. MO-GRPO's form) whose weights are no longer
static but depend on each objective's within-group reward variance, up-weighting the objectives whose rewards spread
more. This file does not implement DVAO. It pins the algebra that decides "is it MO-GRPO again?" for every reading
those sources allow, against moalign's own ``mo_grpo`` and ``sum_then_normalize`` code paths (``weigh_step``):

* weights ``1/σ_k`` on the group-centred rewards == MO-GRPO exactly (that is MO-GRPO's definition);
* weights ``∝ σ_k`` on the group z-scores == GRPO on the weighted reward sum, times one positive number per group;
* weights ``∝ σ_k²`` (the abstract's direction) or ``∝ 1/σ_k²`` (one summary's) on the z-scores are neither: no
  positive per-group constant maps them onto MO-GRPO or GRPO (the residual is measured);
* any σ-dependent weighting coincides with MO-GRPO in the degenerate group where every objective has the same σ.
"""

from __future__ import annotations

import numpy as np
import pytest

from moalign import weighting
from moalign.rl.step import weigh_step

EPS = 1e-4  # moalign's / TRL's std epsilon
G, P, K = 8, 6, 3  # completions per prompt, prompts, objectives


def _fixed(w):
    return weighting.build("fixed", len(w), [f"o{k}" for k in range(len(w))], weights=list(w))


def _rewards(seed: int) -> np.ndarray:
    """(P·G, K) continuous rewards with a different scale and spread per objective and per prompt."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.3, 3.0, size=(P, 1, K))  # per prompt and objective: σ_k varies across k and groups
    return (rng.normal(size=(P, G, K)) * scale + rng.normal(size=(1, 1, K))).reshape(P * G, K)


def _group_stats(r: np.ndarray):
    g = r.reshape(P, G, K)
    mean = g.mean(axis=1, keepdims=True)
    std = g.std(axis=1, ddof=1, keepdims=True)  # Bessel, as moalign's grpo
    return g - mean, std  # centred (P, G, K), σ (P, 1, K)


def _reading(r: np.ndarray, w: np.ndarray, power: float) -> np.ndarray:
    """A_i = Σ_k w_k λ_k z_ik with λ_k = σ_k^power / Σ_j σ_j^power per group, z the group z-score (moalign's ε)."""
    centred, std = _group_stats(r)
    z = centred / (std + EPS)
    lam = std ** power / (std ** power).sum(axis=2, keepdims=True)
    return (z * (w * lam)).sum(axis=2).reshape(-1)


def _moalign(r: np.ndarray, w: np.ndarray, aggregation: str) -> np.ndarray:
    adv, _ = weigh_step(r, _fixed(w), num_generations=G, estimator="grpo", scale_rewards="group",
                        aggregation=aggregation)
    return adv.numpy().astype(np.float64)


def _per_group_fit(a: np.ndarray, b: np.ndarray):
    """Best per-group c ≥ 0 in ``a ≈ c·b`` (least squares); returns (c (P,), max relative residual over groups)."""
    a, b = a.reshape(P, G), b.reshape(P, G)
    c = (a * b).sum(1) / (b * b).sum(1)
    resid = np.linalg.norm(a - c[:, None] * b, axis=1) / np.linalg.norm(a, axis=1)
    return c, float(resid.max())


@pytest.mark.parametrize("seed", range(3))
def test_inverse_std_on_centred_rewards_is_mo_grpo_exactly(seed):
    r = _rewards(seed)
    w = np.random.default_rng(100 + seed).uniform(0.2, 2.0, size=K)
    centred, std = _group_stats(r)
    reading = (centred * (w / (std + EPS))).sum(axis=2).reshape(-1)
    np.testing.assert_allclose(reading, _moalign(r, w, "mo_grpo"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_std_weights_on_z_scores_are_grpo_up_to_a_positive_per_group_factor(seed):
    r = _rewards(seed)
    w = np.random.default_rng(100 + seed).uniform(0.2, 2.0, size=K)
    reading = _reading(r, w, power=1.0)  # Σ_k w_k σ_k z_k / Σ_j σ_j ≈ Σ_k w_k (r_k − μ_k) / Σ_j σ_j
    grpo = _moalign(r, w, "sum_then_normalize")
    c, resid = _per_group_fit(reading, grpo)
    assert resid < 1e-4 and (c > 0).all()
    assert c.max() / c.min() > 1.05  # one factor per group, not one per batch: prompts are re-weighted
    _, resid_mo = _per_group_fit(reading, _moalign(r, w, "mo_grpo"))
    assert resid_mo > 0.05  # and it is not MO-GRPO


@pytest.mark.parametrize(("power", "label"), [(2.0, "variance-proportional"), (-2.0, "inverse-variance")])
@pytest.mark.parametrize("seed", range(3))
def test_variance_weights_on_z_scores_are_neither_mo_grpo_nor_grpo(power, label, seed):
    r = _rewards(seed)
    w = np.ones(K)  # the papers' unweighted case
    reading = _reading(r, w, power=power)
    _, resid_mo = _per_group_fit(reading, _moalign(r, w, "mo_grpo"))
    _, resid_grpo = _per_group_fit(reading, _moalign(r, w, "sum_then_normalize"))
    # measured (seeds 0-2, worst group, residual of the best per-group fit / advantage norm): σ²: 0.70-0.91 against
    # MO-GRPO, 0.18-0.58 against GRPO; 1/σ²: 0.86-0.91 against MO-GRPO, ≈ 1.0 against GRPO
    assert resid_mo > 0.1, f"{label}: {resid_mo}"
    assert resid_grpo > 0.1, f"{label}: {resid_grpo}"


@pytest.mark.parametrize("power", [1.0, 2.0, -2.0])
def test_every_variance_weighting_is_mo_grpo_when_the_objectives_spread_equally(power):
    """The degenerate case: equal σ_k in a group makes λ_k = 1/K, a per-group constant (e.g. binary objectives with
    the same success count in the group)."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=(P, G, K))
    g = (g - g.mean(1, keepdims=True)) / g.std(1, ddof=1, keepdims=True) * 1.7 + rng.normal(size=(P, 1, K))
    r = g.reshape(P * G, K)  # every objective has σ = 1.7 in every group
    w = np.ones(K)
    np.testing.assert_allclose(_reading(r, w, power), _moalign(r, w, "mo_grpo") / K, rtol=1e-4, atol=1e-5)

"""The gradient-based weighting (arXiv 2509.11452, §5, Eq. 3) against hand computations and a NumPy transcription."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import moalign.weighting.gradient  # noqa: F401  (registers the strategy)
from moalign import weighting
from moalign.rl.advantages import compute_advantages, is_linear
from moalign.weighting.base import StepStats
from moalign.weighting.gradient import Gradient

NAMES = ["accuracy", "conciseness", "clarity"]
G_HAND = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 1.0]])  # I = G·1 = [3, 4, 1]


def _stats(gram, lr, step=0, k=3):
    return StepStats(step, np.zeros((2, k)), np.zeros(2), np.zeros((2, k)), lr=lr, gram=np.asarray(gram, float))


def _paper_update(w, gram, lr, mu):
    """Eq. 3 written as in the paper: w ⊙ exp(η I / μ), then normalise (no log-space trick)."""
    influence = np.asarray(gram) @ np.ones(len(w))
    unnormalised = np.asarray(w) * np.exp(lr * influence / mu)
    return unnormalised / unnormalised.sum()


def test_hand_computed_three_steps():
    g = weighting.build("gradient", 3, NAMES, mu=1e-5, normalize="none")
    for t in range(1, 4):
        g.before_update(_stats(G_HAND, lr=1e-6, step=t - 1))
        # η/μ = 0.1 per step and G is constant, so after t steps w_i ∝ exp(0.1·t·I_i) with I = [3, 4, 1].
        e = [math.exp(0.1 * t * 3), math.exp(0.1 * t * 4), math.exp(0.1 * t * 1)]
        expected = [x / sum(e) for x in e]
        np.testing.assert_allclose(g.weights(), expected, rtol=1e-12)
        m = g.metrics()
        assert m["influence/accuracy"] == 3.0 and m["influence/conciseness"] == 4.0 and m["influence/clarity"] == 1.0
        assert m["sum_eta_over_mu"] == pytest.approx(0.1 * t)
        assert m["log_weight_ratio"] == pytest.approx(0.1 * t * (4 - 1))
        assert m["skipped"] == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_matches_numpy_transcription_over_steps(seed):
    rng = np.random.default_rng(seed)
    k, steps, lr0, mu = 4, 20, 1e-6, 1e-5
    w0 = rng.random(k) + 0.1
    g = Gradient(k, mu=mu, initial_weights=w0.tolist(), normalize="none")
    w_ref = w0 / w0.sum()
    for t in range(steps):
        jac = rng.normal(size=(k, 7)) * 0.5  # per-objective gradients (K, P)
        gram = jac @ jac.T
        lr = lr0 * (1 - t / steps) ** 1.03  # the paper's polynomial decay
        g.before_update(_stats(gram, lr, step=t, k=k))
        w_ref = _paper_update(w_ref, gram, lr, mu)
        np.testing.assert_allclose(g.weights(), w_ref, rtol=1e-10, err_msg=f"seed={seed} step={t}")
    assert g.metrics()["sum_eta_over_mu"] == pytest.approx(sum(lr0 * (1 - t / steps) ** 1.03 / mu for t in range(steps)))


def test_larger_influence_gains_weight():
    g = Gradient(3, mu=1e-5, normalize="none")
    g.before_update(_stats(G_HAND, lr=1e-6))
    w = g.weights()
    assert w[1] > w[0] > 1 / 3 > w[2]  # I = [3, 4, 1]
    assert math.isclose(w.sum(), 1.0)


def test_eta_scale_multiplies_lr():
    a, b = Gradient(3, eta_scale=2.0), Gradient(3)
    a.before_update(_stats(G_HAND, lr=1e-6))
    b.before_update(_stats(G_HAND, lr=2e-6))
    np.testing.assert_allclose(a.weights(), b.weights(), rtol=1e-14)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gram_is_skipped(bad):
    g = Gradient(3, objective_names=NAMES)
    g.before_update(_stats(G_HAND, lr=1e-6))
    before, influence = g.weights(), g.metrics()["influence/accuracy"]
    gram = G_HAND.copy()
    gram[0, 2] = bad
    g.before_update(_stats(gram, lr=1e-6, step=1))
    np.testing.assert_array_equal(g.weights(), before)
    assert g.metrics()["skipped"] == 1.0
    assert g.metrics()["influence/accuracy"] == influence
    assert g.metrics()["sum_eta_over_mu"] == pytest.approx(0.1)
    g.before_update(_stats(G_HAND, lr=1e-6, step=2))  # recovers on the next finite step
    assert g.metrics()["skipped"] == 0.0 and not np.array_equal(g.weights(), before)


def test_non_finite_lr_is_skipped():
    g = Gradient(3)
    g.before_update(_stats(G_HAND, lr=float("nan")))
    np.testing.assert_array_equal(g.weights(), np.full(3, 1 / 3))
    assert g.metrics()["skipped"] == 1.0


def test_large_steps_are_stable_and_underflow_is_skipped():
    g = Gradient(3, mu=1e-5, normalize="none")
    g.before_update(_stats(G_HAND * 1e3, lr=1e-6))  # exp(400) overflows float64; log-space softmax does not
    w = g.weights()
    assert np.all(np.isfinite(w)) and np.all(w > 0) and math.isclose(w.sum(), 1.0)
    assert g.metrics()["skipped"] == 0.0
    # A step that would underflow a weight to exactly 0 (it could never recover) keeps the previous weights.
    g.before_update(_stats(G_HAND * 1e6, lr=1e-6, step=1))
    np.testing.assert_array_equal(g.weights(), w)
    assert g.metrics()["skipped"] == 1.0


def test_max_weight_ratio_enforced():
    free, bounded = Gradient(3, mu=1e-5, normalize="none"), Gradient(3, mu=1e-5, max_weight_ratio=4.0, normalize="none")
    for t in range(10):
        free.before_update(_stats(G_HAND, lr=1e-6, step=t))
        bounded.before_update(_stats(G_HAND, lr=1e-6, step=t))
        w = bounded.weights()
        assert w.max() / w.min() <= 4.0 * (1 + 1e-12)
        assert math.isclose(w.sum(), 1.0) and np.argmax(w) == 1
    assert free.weights().max() / free.weights().min() > 4.0  # the bound was active
    w = bounded.weights()
    assert w.max() / w.min() == pytest.approx(4.0)
    assert bounded.metrics()["log_weight_ratio"] == pytest.approx(math.log(4.0))


def test_max_weight_ratio_checks_initial_weights():
    with pytest.raises(ValueError, match="max_weight_ratio"):
        Gradient(2, initial_weights=[0.9, 0.1], max_weight_ratio=2.0)


def test_initial_weights_normalised_and_positive():
    assert Gradient(2, initial_weights=[3.0, 1.0]).weights().tolist() == [0.75, 0.25]
    with pytest.raises(ValueError, match="positive"):
        Gradient(2, initial_weights=[1.0, 0.0])
    with pytest.raises(ValueError, match="3 objectives"):
        Gradient(3, initial_weights=[1.0, 1.0])


@pytest.mark.parametrize(
    "params, match",
    [({"mu": 0.0}, "mu"), ({"mu": -1e-5}, "mu"), ({"mu": "x"}, "mu"), ({"eta_scale": -1.0}, "eta_scale"),
     ({"max_weight_ratio": 1.0}, "max_weight_ratio"), ({"max_weight_ratio": float("inf")}, "max_weight_ratio")],
)
def test_bad_hyperparameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        weighting.build("gradient", 3, **params)


def test_unknown_parameter_raises():
    with pytest.raises(ValueError, match="unknown parameter.*'lr'.*accepts: mu, initial_weights"):
        weighting.build("gradient", 3, lr=1e-6)


def test_missing_gram_raises():
    g = Gradient(3)
    with pytest.raises(ValueError, match="stats.gram"):
        g.before_update(StepStats(0, np.zeros((2, 3)), np.zeros(2), np.zeros((2, 3)), lr=1e-6))
    with pytest.raises(ValueError, match="shape"):
        g.before_update(_stats(np.eye(2), lr=1e-6))


def test_contract():
    g = weighting.build("gradient", 3, NAMES)
    assert g.needs == frozenset({"gram"}) and g.on_simplex and g.name == "gradient"
    assert g.advantage_scale() == 1.0
    np.testing.assert_allclose(g.weights(), np.full(3, 1 / 3))
    assert g.metrics() == {"log_weight_ratio": 0.0, "sum_eta_over_mu": 0.0, "skipped": 0.0}


def test_repr_pinned():
    assert repr(Gradient(3)) == (
        "Gradient(mu=1e-05, initial_weights=None, max_weight_ratio=None, eta_scale=1.0, normalize='unit', "
        "max_grad_norm=1.0)"
    )
    assert repr(Gradient(2, mu=1e-4, initial_weights=[1, 3], max_weight_ratio=5, eta_scale=0.5, normalize="clip")) == (
        "Gradient(mu=0.0001, initial_weights=[1.0, 3.0], max_weight_ratio=5.0, eta_scale=0.5, normalize='clip', "
        "max_grad_norm=1.0)"
    )


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(7)
    grams = [(j := rng.normal(size=(3, 5))) @ j.T for _ in range(8)]
    lrs = [1e-6 * (1 - t / 8) ** 1.03 for t in range(8)]
    straight = Gradient(3, objective_names=NAMES, max_weight_ratio=50.0)
    for t in range(8):
        straight.before_update(_stats(grams[t], lrs[t], step=t))
    first = Gradient(3, objective_names=NAMES, max_weight_ratio=50.0)
    for t in range(4):
        first.before_update(_stats(grams[t], lrs[t], step=t))
    resumed = Gradient(3, objective_names=NAMES, max_weight_ratio=50.0)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert resumed.metrics() == first.metrics()
    for t in range(4, 8):
        resumed.before_update(_stats(grams[t], lrs[t], step=t))
    assert resumed.weights().tolist() == straight.weights().tolist()
    assert resumed.metrics() == straight.metrics()
    assert resumed.state_dict() == straight.state_dict()


ESTIMATORS, SCALES = ["grpo", "rloo", "reinforce"], ["group", "batch", "none"]


def test_is_linear_table():
    table = {(e, s): is_linear(e, s) for e, s in itertools.product(ESTIMATORS, SCALES)}
    assert table == {
        ("grpo", "group"): False, ("grpo", "batch"): False, ("grpo", "none"): True,
        ("rloo", "group"): True, ("rloo", "batch"): True, ("rloo", "none"): True,
        ("reinforce", "group"): False, ("reinforce", "batch"): False, ("reinforce", "none"): True,
    }
    with pytest.raises(ValueError, match="advantage_estimator"):
        is_linear("ppo", "none")
    with pytest.raises(ValueError, match="scale_rewards"):
        is_linear("grpo", "std")


@pytest.mark.parametrize("estimator, scale", list(itertools.product(ESTIMATORS, SCALES)))
def test_is_linear_matches_the_estimators(estimator, scale):
    """A(Σ w_k r_k) == Σ w_k A(r_k) exactly when is_linear says so (0/1 rewards, 4 prompts × 4 samples)."""
    rng = np.random.default_rng(0)
    r = torch.tensor(rng.integers(0, 2, size=(16, 3)).astype(np.float32))
    w = torch.tensor([0.5, 0.3, 0.2])
    a_scalar = compute_advantages(r @ w, estimator, 4, scale)
    a_sum = compute_advantages(r, estimator, 4, scale) @ w
    assert torch.allclose(a_scalar, a_sum, atol=1e-5) == is_linear(estimator, scale)


# -- per-objective normalisation (the reference code's scale) ------------------------------------------------------------
def _normalised_influence_from_vectors(jac: np.ndarray, normalize: str, max_norm: float = 1.0) -> np.ndarray:
    """Independent computation: scale each gradient VECTOR, then I_i = <ĝ_i, Σ_k ĝ_k> (no Gram algebra)."""
    rows = []
    for g in jac:
        n = float(np.linalg.norm(g))
        if n == 0:
            rows.append(np.zeros_like(g))
        elif normalize == "unit":
            rows.append(g / n)
        elif normalize == "clip":
            rows.append(g * min(1.0, max_norm / n))  # torch.nn.utils.clip_grad_norm_ on one objective's gradient
        else:
            rows.append(g)
    hat = np.stack(rows)
    return np.array([hat[i] @ hat.sum(axis=0) for i in range(len(hat))])


@pytest.mark.parametrize("normalize", ["unit", "clip", "none"])
@pytest.mark.parametrize("seed", range(3))
def test_normalised_influence_matches_vector_computation(normalize, seed):
    rng = np.random.default_rng(seed)
    k, mu, lr = 4, 1e-5, 1e-6
    g = Gradient(k, mu=mu, normalize=normalize, max_grad_norm=0.7)
    w = np.full(k, 1 / k)
    for t in range(6):
        jac = rng.normal(size=(k, 50)) * rng.choice([0.01, 0.1, 3.0], size=(k, 1))  # norms from ≪1 to ≫1
        jac[rng.integers(k)] *= 0 if t == 3 else 1  # a step where one objective has no gradient
        influence = _normalised_influence_from_vectors(jac, normalize, 0.7)
        g.before_update(_stats(jac @ jac.T, lr, step=t, k=k))
        m = g.metrics()
        got = np.array([m[f"influence/{n}"] for n in g.objective_names])
        np.testing.assert_allclose(got, influence, rtol=1e-9, atol=1e-12, err_msg=f"seed={seed} step={t}")
        w_new = w * np.exp(lr * influence / mu)
        w_new /= w_new.sum()
        np.testing.assert_allclose(g.weights(), w_new, rtol=1e-9, err_msg=f"seed={seed} step={t}")
        change = np.array([m[f"log_weight_change/{n}"] for n in g.objective_names])
        np.testing.assert_allclose(change, np.log(w_new) - np.log(w), atol=1e-12)
        w = w_new


def test_unit_normalisation_ignores_gradient_scale_and_rewards_alignment():
    """Under ``unit`` only directions matter: scaling one objective's gradient by 1000 changes nothing, and the
    objective that conflicts with the others (negative cosine) loses weight even when its raw gradient is largest."""
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.8, 0.6, 0.0])
    conflict = np.array([-50.0, 0.0, 5.0])  # large, opposed to a and b
    jac = np.stack([a, b, conflict])
    unit, raw = Gradient(3, mu=1.0, normalize="unit"), Gradient(3, mu=1.0, normalize="none")
    unit.before_update(_stats(jac @ jac.T, lr=0.1))
    raw.before_update(_stats(jac @ jac.T, lr=0.1))
    assert int(np.argmin(unit.weights())) == 2  # the conflicting objective loses weight
    assert int(np.argmax(raw.weights())) == 2  # the raw self-term ‖g‖² makes it win instead
    scaled = jac * np.array([[1000.0], [1.0], [1.0]])
    again = Gradient(3, mu=1.0, normalize="unit")
    again.before_update(_stats(scaled @ scaled.T, lr=0.1))
    np.testing.assert_allclose(again.weights(), unit.weights(), rtol=1e-12)


def test_bad_normalize_raises():
    with pytest.raises(ValueError, match="normalize must be one of unit, clip, none"):
        Gradient(3, normalize="l2")
    with pytest.raises(ValueError, match="max_grad_norm must be a positive number"):
        Gradient(3, normalize="clip", max_grad_norm=0)

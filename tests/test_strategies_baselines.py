"""The CTWA paper's baselines and CTWA itself: contract tests, one pinned table, and independent computations.

Layers (STYLE.md): (1) contract tests parametrised over every strategy of this file and a few variants; (2) one table
pinning every strategy's weights after 3 steps of a shared fixture, whose values were computed by the independent
transcriptions of layer 3 (not by running the strategies); (3) per method, a hand-worked example and a comparison
with a NumPy transcription of the paper's update, a KKT check, a brute force or torchjd.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import moalign.weighting.ctwa  # noqa: F401  (each import registers its strategy)
import moalign.weighting.famo  # noqa: F401
import moalign.weighting.gradnorm  # noqa: F401
import moalign.weighting.lagrangian  # noqa: F401
import moalign.weighting.mgda  # noqa: F401
import moalign.weighting.nash_mtl  # noqa: F401
import moalign.weighting.pama  # noqa: F401
import moalign.weighting.tchebycheff  # noqa: F401
from moalign import weighting
from moalign.weighting.base import StepStats, isclose_simplex
from moalign.weighting.mgda import min_norm_weights
from moalign.weighting.nash_mtl import nash_bargaining_weights
from moalign.weighting.pama import min_norm_scalar_combination

NAMES = ["accuracy", "conciseness", "clarity"]
VARIANTS = [
    ("ctwa", {}),
    ("ctwa", {"cov_targets": [0.2, 0.1, 0.0], "ceilings": [0.9, 0.9, 0.9], "outlier_factor": None}),
    ("lagrangian", {}),
    ("lagrangian", {"primary": "clarity", "targets": [0.5, 0.7], "dual_lr": 0.5, "lambda_max": 0.3}),
    ("tchebycheff", {}),
    ("tchebycheff", {"smooth": False, "weights": [2.0, 1.0, 1.0]}),
    ("tchebycheff", {"preference_lr": 0.5}),
    ("pama", {}),
    ("pama", {"noon": False}),
    ("mgda", {}),
    ("mgda", {"solver": "frank_wolfe", "normalize_gradients": True}),
    ("nash_mtl", {}),
    ("gradnorm", {}),
    ("gradnorm", {"scale_invariant": False, "lr": 0.1}),
    ("famo", {}),
    ("famo", {"optimizer": "sgd", "lr": 0.5}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)]


def group_center(r: np.ndarray, gid: np.ndarray) -> np.ndarray:
    """Per-prompt mean-centred rewards, 0 where unscored (the shape of the trainer's per-objective advantages)."""
    out = np.zeros_like(r, dtype=np.float64)
    for g in np.unique(gid):
        rows = gid == g
        with np.errstate(all="ignore"):
            out[rows] = r[rows] - np.nanmean(r[rows], axis=0)
    return np.nan_to_num(out, nan=0.0)


def random_stats(rng, step, k=3, groups=4, size=4, nan_frac=0.1):
    n = groups * size
    r = (rng.random((n, k)) < rng.uniform(0.2, 0.8, k)).astype(float)
    r[rng.random((n, k)) < nan_frac] = np.nan
    gid = np.repeat(np.arange(groups), size)
    jac = rng.normal(size=(k, 6)) * rng.uniform(0.5, 2.0, (k, 1))
    return StepStats(step, r, gid, group_center(r, gid), lr=1e-6, gram=jac @ jac.T, losses=rng.normal(size=k),
                     clipped_advantage_weights=rng.normal(size=n))


def run_step(s, stats):
    """One RL step as the trainer drives it: before_update, weights, scalarize, after_update."""
    s.before_update(stats)
    w = s.weights()
    scalar = s.scalarize(stats.rewards)
    stats.scalarized_advantages = group_center(scalar[:, None], stats.group_ids)[:, 0]
    s.after_update(stats)
    return w, scalar


# ------------------------------------------------------------------------------------------------------------------
# (1) contract
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("seed", range(3))
def test_contract_shape_finite_simplex(name, params, seed):
    rng = np.random.default_rng(seed)
    s = weighting.build(name, 3, NAMES, **params)
    for t in range(6):
        stats = random_stats(rng, t)
        w, scalar = run_step(s, stats)
        msg = f"{name} {params} seed={seed} step={t}"
        assert w.shape == (3,) and np.all(np.isfinite(w)), msg
        assert s.weights().shape == (3,) and np.all(np.isfinite(s.weights())), msg
        if s.on_simplex:
            assert isclose_simplex(s.weights()), msg
        assert scalar.shape == (len(stats.rewards),), msg
        all_nan = np.isnan(stats.rewards).all(axis=1)
        assert np.all(np.isnan(scalar[all_nan])) and np.all(np.isfinite(scalar[~all_nan])), msg
        m = s.metrics()
        assert m["skipped"] in (0.0, 1.0) and all(isinstance(v, float) and math.isfinite(v) for v in m.values()), msg


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("seed", range(2))
def test_save_json_load_continue_matches_uninterrupted(name, params, seed):
    rng = np.random.default_rng(100 + seed)
    steps = [random_stats(rng, t) for t in range(7)]
    a = weighting.build(name, 3, NAMES, **params)
    b = None
    for t, stats in enumerate(steps):
        if t == 3:
            b = weighting.build(name, 3, NAMES, **params)
            b.load_state_dict(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
            np.testing.assert_array_equal(b.weights(), a.weights(), err_msg=f"{name} seed={seed} after load")
        wa, sa = run_step(a, stats)
        if b is not None:
            wb, sb = run_step(b, StepStats(**{**stats.__dict__}))
            msg = f"{name} {params} seed={seed} step={t}"
            np.testing.assert_allclose(wb, wa, rtol=0, atol=1e-12, err_msg=msg)
            np.testing.assert_allclose(sb, sa, rtol=0, atol=1e-12, err_msg=msg)
            np.testing.assert_allclose(b.weights(), a.weights(), rtol=0, atol=1e-12, err_msg=msg)
            assert b.metrics() == pytest.approx(a.metrics(), abs=1e-12), msg


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_non_finite_inputs_keep_previous_weights(name, params):
    rng = np.random.default_rng(7)
    s = weighting.build(name, 3, NAMES, **params)
    for t in range(2):
        run_step(s, random_stats(rng, t))
    before = s.weights()
    n = 16
    poison = StepStats(2, np.full((n, 3), np.inf), np.repeat(np.arange(4), 4), np.full((n, 3), np.nan), lr=np.nan,
                       gram=np.full((3, 3), np.nan), losses=np.full(3, np.nan),
                       clipped_advantage_weights=np.full(n, np.nan))
    s.before_update(poison)
    s.after_update(poison)
    np.testing.assert_array_equal(s.weights(), before)
    assert s.metrics()["skipped"] == 1.0


REPRS = {
    "ctwa": "CTWA(cov_targets=[0.15, 0.08, 0.08], initial_weights=[0.333, 0.333, 0.334], ceilings=[1.0, 0.95, 0.95], "
    "step_size=0.05, ema_rate=0.1, outlier_factor=100.0)",
    "lagrangian": "Lagrangian(primary='accuracy', targets=0.9, dual_lr=0.01, lambda_init=0.0, lambda_max=None)",
    "tchebycheff": "Tchebycheff(weights=None, mu=0.1, smooth=True, ideal=None, preference_lr=0.0)",
    "pama": "PAMA(noon=True)",
    "mgda": "MGDA(solver='exact', normalize_gradients=False, epsilon=0.001, max_iters=100)",
    "nash_mtl": "NashMTL(ridge=1e-08)",
    "gradnorm": "GradNorm(alpha=1.5, lr=0.025, eps=0.001, scale_invariant=True)",
    "famo": "FAMO(lr=0.025, weight_decay=0.001, optimizer='adam', eps=0.001)",
}


@pytest.mark.parametrize("name", sorted(REPRS))
def test_repr_pinned(name):
    assert repr(weighting.build(name, 3, NAMES)) == REPRS[name]


@pytest.mark.parametrize("name", sorted(REPRS))
def test_unknown_parameter_raises_with_accepted_ones(name):
    with pytest.raises(ValueError, match=rf"strategy '{name}' got unknown parameter\(s\) \['bogus'\]; it accepts"):
        weighting.build(name, 3, NAMES, bogus=1)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("ctwa", {"cov_targets": [0.1, 0.1]}, r"cov_targets has 2 entries but objectives has 3 "
                                              r"\(accuracy, conciseness, clarity\)"),
        ("ctwa", {"step_size": -0.05}, "step_size must be"),
        ("ctwa", {"ema_rate": 1.5}, "ema_rate must be"),
        ("ctwa", {"ceilings": [1.0]}, "ceilings has 1 entries"),
        ("ctwa", {"initial_weights": [0.5, 0.5, 0.0]}, "initial_weights must be positive"),
        ("lagrangian", {"dual_lr": -0.01}, "dual_lr must be"),
        ("lagrangian", {"targets": [0.9, 0.9, 0.9]}, r"targets has 3 entries but there are 2 constraint objectives "
                                                    r"\(conciseness, clarity\)"),
        ("lagrangian", {"primary": "speed"}, "primary 'speed' is not an objective"),
        ("lagrangian", {"primary": 3}, "primary must be"),
        ("lagrangian", {"lambda_init": 2.0, "lambda_max": 1.0}, "lambda_init"),
        ("tchebycheff", {"mu": 0.0}, "mu must be"),
        ("tchebycheff", {"preference_lr": -1.0}, "preference_lr must be"),
        ("tchebycheff", {"weights": [1.0, 1.0]}, "weights has 2 entries"),
        ("tchebycheff", {"ideal": [1.0, 1.0]}, "ideal must be 3 finite numbers"),
        ("pama", {"noon": "yes"}, "noon must be true or false"),
        ("mgda", {"solver": "qp"}, "solver must be"),
        ("mgda", {"epsilon": -1.0}, "epsilon must be"),
        ("nash_mtl", {"ridge": -1e-3}, "ridge must be"),
        ("gradnorm", {"lr": -0.1}, "lr must be a positive number"),
        ("gradnorm", {"alpha": -1.0}, "alpha must be"),
        ("famo", {"lr": -0.025}, r"lr must be a non-negative number, but got -0.025 \(default 0.025\)"),
        ("famo", {"weight_decay": -1.0}, "weight_decay must be"),
        ("famo", {"optimizer": "rmsprop"}, "optimizer must be"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_parameter(name, params, match):
    with pytest.raises(ValueError, match=match):
        weighting.build(name, 3, NAMES, **params)


def test_ctwa_requires_targets_for_other_objective_counts():
    with pytest.raises(ValueError, match=r"cov_targets is required with 2 objectives \(a, b\)"):
        weighting.build("ctwa", 2, ["a", "b"])
    s = weighting.build("ctwa", 2, ["a", "b"], cov_targets=[0.1, 0.1])
    np.testing.assert_allclose(s.weights(), [0.5, 0.5])


# ------------------------------------------------------------------------------------------------------------------
# layer-3 transcriptions (written from the papers' equations, independently of the strategy classes)
# ------------------------------------------------------------------------------------------------------------------
def ctwa_reference(steps, targets=(0.15, 0.08, 0.08), eta=0.05, tau=0.1, w0=(0.333, 0.333, 0.334),
                   ceilings=(1.0, 0.95, 0.95), outlier=100.0):
    log_w, ema = np.log(np.asarray(w0) / sum(w0)), [None] * len(w0)  # None: not observed yet
    for r, gid, c in steps:
        fin = [i for i in range(len(c)) if math.isfinite(c[i])]
        med = float(np.median([abs(c[i]) for i in fin]))
        keep = [i for i in fin if outlier is None or med == 0 or abs(c[i]) <= outlier * med]
        for k in range(len(w0)):
            covs = []
            for g in sorted(set(gid.tolist())):
                idx = [i for i in keep if gid[i] == g and not math.isnan(r[i, k])]
                if len(idx) < 2:
                    continue
                rm, cm = sum(r[i, k] for i in idx) / len(idx), sum(c[i] for i in idx) / len(idx)
                covs.append(sum((r[i, k] - rm) * (c[i] - cm) for i in idx) / len(idx))
            if covs:  # the EMA starts at the first observed covariance (reference code)
                cov = sum(covs) / len(covs)
                ema[k] = cov if ema[k] is None else (1 - tau) * ema[k] + tau * cov
        for k in range(len(w0)):
            scored = [x for x in r[:, k] if not math.isnan(x)]
            at_ceiling = bool(scored) and sum(scored) / len(scored) >= ceilings[k]
            m = 0.0 if ema[k] is None else ema[k]
            log_w[k] += 0.0 if at_ceiling else eta * max(targets[k] - m, 0.0)
    e = np.exp(log_w)
    return e / e.sum()


def lagrangian_reference(means_per_step, primary=0, target=0.9, lr=0.01):
    lam = {j: 0.0 for j in range(len(means_per_step[0])) if j != primary}
    for means in means_per_step:
        for j in lam:
            lam[j] = max(0.0, lam[j] + lr * (target - means[j]))
    return [1.0 if j == primary else lam[j] for j in range(len(means_per_step[0]))]


def omd_tch_reference(rewards_per_step, pref, lr):
    """OMD-TCH (arXiv 2410.21764): λ ← λ·exp(η p (z* − r̄)) / Σ, weights λ·p / Σ; z* = running max reward."""
    lam, ideal = np.full(len(pref), 1.0 / len(pref)), np.full(len(pref), -np.inf)
    for r in rewards_per_step:
        ideal = np.maximum(ideal, np.nanmax(r, axis=0))
        lam = lam * np.exp(lr * pref * (ideal - np.nanmean(r, axis=0)))
        lam = lam / lam.sum()
    v = lam * pref
    return v / v.sum()


def pama_reference(adv, gid, noon=True):
    cs = []
    for n in range(len(adv)):
        same = [i for i in range(len(adv)) if gid[i] == gid[n]]
        objs = [k for k in range(adv.shape[1]) if any(adv[i, k] != 0 for i in same)]
        vals = {k: (max(adv[n, k], 0.0) if noon else adv[n, k]) for k in objs}
        if not objs or (noon and all(v == 0 for v in vals.values())):
            continue
        c = np.zeros(adv.shape[1])
        lo, hi = min(vals.values()), max(vals.values())
        if lo >= 0 or hi <= 0:
            ties = [k for k in objs if vals[k] == (lo if lo >= 0 else hi)]
            for k in ties:
                c[k] = 1 / len(ties)
        else:
            low, high = [k for k in objs if vals[k] == lo], [k for k in objs if vals[k] == hi]
            for k in low:
                c[k] = hi / (hi - lo) / len(low)
            for k in high:
                c[k] = -lo / (hi - lo) / len(high)
        cs.append(c)
    return np.mean(cs, axis=0) if cs else None


def project_simplex(v):
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1
    rho = np.nonzero(u - css / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


def mgda_reference(G, iters=5000):
    """Projected gradient descent on αᵀGα over the simplex (a different algorithm from the strategy's)."""
    alpha = np.full(len(G), 1.0 / len(G))
    step = 1.0 / (2 * np.linalg.eigvalsh(G).max())
    for _ in range(iters):
        alpha = project_simplex(alpha - step * 2 * G @ alpha)
    return alpha


def nash_reference(G, sweeps=20000):
    """Cyclic exact coordinate minimisation of ½αᵀGα − Σ log α: G_ii α_i² + s_i α_i − 1 = 0 per coordinate."""
    alpha = np.ones(len(G))
    for _ in range(sweeps):
        for i in range(len(G)):
            s = G[i] @ alpha - G[i, i] * alpha[i]
            alpha[i] = (-s + math.sqrt(s * s + 4 * G[i, i])) / (2 * G[i, i])
    return alpha / alpha.sum()


def gradnorm_reference(steps, alpha=1.5, lr=0.025, eps=1e-3, scale_invariant=True):
    k = steps[0][1].shape[0]
    W, L0 = [1.0] * k, None
    for means, G in steps:
        norms = [math.sqrt(max(G[i, i], 0.0)) for i in range(k)]
        L = [max(1 - m, 0.0) + eps for m in means]
        L0 = L0 or L
        ratio = [L[i] / L0[i] for i in range(k)]
        rel = [x / (sum(ratio) / k) for x in ratio]
        gw = [W[i] * norms[i] for i in range(k)]
        target = [sum(gw) / k * rel[i] ** alpha for i in range(k)]
        scale = sum(norms) / k if scale_invariant else 1.0
        W = [max(W[i] - lr * np.sign(gw[i] - target[i]) * norms[i] / scale, 1e-3) for i in range(k)]
        W = [k * x / sum(W) for x in W]
    return np.asarray(W) / k


def famo_torchjd(means_per_step, lr=0.025, weight_decay=1e-3, eps=1e-3):
    """Weights of torchjd's FAMO: the gradient of its scalarized loss w.r.t. the losses is (c z / L)."""
    from torchjd.scalarization import FAMO as TorchjdFAMO

    famo = TorchjdFAMO(len(means_per_step[0]), lr=lr, weight_decay=weight_decay).double()
    prev, out = None, []
    for means in means_per_step:
        loss = torch.tensor(np.maximum(1 - np.asarray(means), 0) + eps - 1e-8, dtype=torch.float64)  # it adds 1e-8
        if prev is not None:
            famo(prev)
            famo.update(loss)
        x = loss.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(famo(x), x)
        out.append((grad / grad.sum()).numpy())
        prev = loss
    return out


# ------------------------------------------------------------------------------------------------------------------
# (2) one table: weights after 3 steps of a shared fixture
# ------------------------------------------------------------------------------------------------------------------
GID = np.repeat(np.arange(3), 4)  # 3 prompts × 4 completions
R = [
    np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 1], [1, 1, 1], [1, 0, 1],
              [1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1], [0, 1, 1]], float),
    np.array([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 1], [1, 1, 1],
              [0, 1, 1], [1, 0, 1], [1, 1, 1], [0, 1, 0], [1, 0, 1], [0, 0, 1]], float),
    np.array([[1, 0, 1], [1, 1, 1], [1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 1],
              [1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 1], [1, 1, 1]], float),
]
C = [  # CTWA's clipped advantage weights per completion
    np.array([0.8, 0.1, -0.4, -0.5, 0.3, 0.0, 0.6, -0.9, -0.7, 0.5, 0.1, 0.1]),
    np.array([0.6, -0.2, 0.1, -0.5, -0.3, 0.4, 0.2, -0.3, 0.5, -0.8, 0.4, -0.1]),
    np.array([-0.1, 0.3, 0.2, -0.4, -0.6, 0.5, 0.4, -0.3, 0.0, 0.3, 0.1, -0.4]),
]
GRAM = [
    np.array([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 0.5]]),
    np.array([[1.5, -0.4, 0.1], [-0.4, 2.0, 0.6], [0.1, 0.6, 0.8]]),
    np.array([[1.0, 0.3, 0.3], [0.3, 0.6, -0.1], [0.3, -0.1, 1.2]]),
]
TABLE_PARAMS = {"tchebycheff": {"preference_lr": 0.5}}
TABLE = {  # computed with the layer-3 transcriptions above (see test_table_matches_transcriptions)
    "ctwa": [0.3316267801, 0.3357505635, 0.3326226564],
    "lagrangian": [1.0, 0.026 / 3, 0.002],  # by hand: λ_j = 0.01·Σ_t (0.9 − mean_t r_j), clipped at 0
    "tchebycheff": [0.3391886806, 0.3487426683, 0.3120686511],
    "pama": [0.3636363636, 0.4545454545, 0.1818181818],  # PAMA is memoryless: step 3's advantages only
    "mgda": [11 / 151, 0.6026490066, 0.3245033113],
    "nash_mtl": [0.2643040021, 0.4238692752, 0.3118267227],
    "gradnorm": [0.3050067390, 0.3587569970, 0.3362362640],
    "famo": [0.2822945178, 0.1564658811, 0.5612396011],  # torchjd.scalarization.FAMO
}


def fixture_steps():
    return [StepStats(t, R[t], GID, group_center(R[t], GID), lr=1e-6, gram=GRAM[t], clipped_advantage_weights=C[t])
            for t in range(3)]


def test_table_matches_transcriptions():
    """The pinned values are what the independent transcriptions give on the fixture."""
    means = [r.mean(axis=0) for r in R]
    assert ctwa_reference(list(zip(R, [GID] * 3, C))) == pytest.approx(TABLE["ctwa"], abs=1e-9)
    assert lagrangian_reference(means) == pytest.approx(TABLE["lagrangian"], abs=1e-15)
    assert omd_tch_reference(R, np.full(3, 1 / 3), 0.5) == pytest.approx(TABLE["tchebycheff"], abs=1e-9)
    assert pama_reference(group_center(R[2], GID), GID) == pytest.approx(TABLE["pama"], abs=1e-9)
    assert mgda_reference(GRAM[2]) == pytest.approx(TABLE["mgda"], abs=1e-9)
    assert nash_reference(GRAM[2]) == pytest.approx(TABLE["nash_mtl"], abs=1e-9)
    assert gradnorm_reference(list(zip(means, GRAM))) == pytest.approx(TABLE["gradnorm"], abs=1e-9)
    assert famo_torchjd(means)[-1] == pytest.approx(TABLE["famo"], abs=1e-9)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_table_of_weights_after_three_steps(name):
    s = weighting.build(name, 3, NAMES, **TABLE_PARAMS.get(name, {}))
    for stats in fixture_steps():
        run_step(s, stats)
    np.testing.assert_allclose(s.weights(), TABLE[name], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# (3) independent computations, per method
# ------------------------------------------------------------------------------------------------------------------
# -- ctwa --------------------------------------------------------------------------------------------------------
def test_ctwa_hand_worked_step():
    s = weighting.build("ctwa", 3, NAMES)
    r = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    stats = StepStats(0, r, np.zeros(2), group_center(r, np.zeros(2)), clipped_advantage_weights=np.array([0.5, -0.5]))
    run_step(s, stats)
    # cov = [0.25, −0.25, 0] → the EMA starts at the first observation: [0.25, −0.25, 0] → deficits
    # [relu(0.15 − 0.25), 0.08 + 0.25, 0.08] = [0, 0.33, 0.08]; clarity's mean 1.0 ≥ its ceiling 0.95, so its deficit is 0.
    e = np.array([0.333, 0.333 * math.exp(0.05 * 0.33), 0.334])
    np.testing.assert_allclose(s.weights(), e / e.sum(), rtol=1e-12)
    m = s.metrics()
    assert m["cov/accuracy"] == pytest.approx(0.25) and m["ema_cov/conciseness"] == pytest.approx(-0.25)
    assert m["deficit/clarity"] == 0.0 and m["deficit/accuracy"] == 0.0
    assert m["deficit/conciseness"] == pytest.approx(0.33)
    # second step, same batch: the EMA now moves at rate 0.1 from the first observation (unchanged here)
    run_step(s, stats)
    assert s.metrics()["ema_cov/conciseness"] == pytest.approx(-0.25)


def test_ctwa_weights_change_only_after_the_update():
    s = weighting.build("ctwa", 3, NAMES)
    stats = fixture_steps()[0]
    s.before_update(stats)
    np.testing.assert_array_equal(s.weights(), [0.333, 0.333, 0.334])


def test_ctwa_starts_at_exactly_the_given_initial_weights():
    # softmax(log w0) gives 0.29999999999999993 for 0.3 here, and its last bit depends on the CPU's exp and log
    s = weighting.build("ctwa", 3, NAMES, initial_weights=[0.2, 0.3, 0.5])
    assert s.weights().tolist() == [0.2, 0.3, 0.5]


@pytest.mark.parametrize("seed", range(4))
def test_ctwa_matches_transcription(seed):
    rng = np.random.default_rng(seed)
    s = weighting.build("ctwa", 3, NAMES)
    history = []
    for t in range(10):
        stats = random_stats(rng, t)
        stats.clipped_advantage_weights[rng.integers(0, 16)] = 1e4  # an outlier the reference code drops
        stats.clipped_advantage_weights[rng.integers(0, 16)] = np.nan
        history.append((stats.rewards, stats.group_ids, stats.clipped_advantage_weights))
        run_step(s, stats)
        np.testing.assert_allclose(s.weights(), ctwa_reference(history), rtol=1e-12, err_msg=f"seed={seed} step={t}")


def test_ctwa_equal_deficits_leave_weights_unchanged_and_ceiling_stops_growth():
    s = weighting.build("ctwa", 3, NAMES, cov_targets=[0.1, 0.1, 0.1], initial_weights=[1, 1, 1], ceilings=[2, 2, 2])
    r = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # no within-prompt variation: every covariance is 0
    run_step(s, StepStats(0, r, np.zeros(2), np.zeros((2, 3)), clipped_advantage_weights=np.array([1.0, -1.0])))
    np.testing.assert_allclose(s.weights(), [1 / 3] * 3, rtol=1e-12)
    s = weighting.build("ctwa", 3, NAMES, cov_targets=[0.1, 0.1, 0.1], initial_weights=[1, 1, 1], ceilings=[1, 2, 2])
    run_step(s, StepStats(0, r, np.zeros(2), np.zeros((2, 3)), clipped_advantage_weights=np.array([1.0, -1.0])))
    assert s.weights()[0] < s.weights()[1] == pytest.approx(s.weights()[2])  # accuracy reached its ceiling


# -- lagrangian --------------------------------------------------------------------------------------------------
def test_lagrangian_dual_ascent_by_hand_and_scalarization():
    s = weighting.build("lagrangian", 3, NAMES, primary="accuracy", targets=[0.8, 0.5], dual_lr=0.1, lambda_max=0.05)
    r = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # means [0.5, 0, 0.5]
    run_step(s, StepStats(0, r, np.zeros(2), group_center(r, np.zeros(2))))
    # conciseness: 0 + 0.1·(0.8 − 0) = 0.08 → clipped to λ_max 0.05; clarity: 0.1·(0.5 − 0.5) = 0
    np.testing.assert_allclose(s.weights(), [1.0, 0.05, 0.0])
    np.testing.assert_allclose(s.scalarize(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, np.nan]])), [1.05, 0.05])
    r = np.array([[1.0, 1.0, 1.0], [1.0, np.nan, 1.0]])  # conciseness mean 1.0, clarity 1.0
    run_step(s, StepStats(1, r, np.zeros(2), np.zeros((2, 3))))
    np.testing.assert_allclose(s.weights(), [1.0, 0.05 - 0.1 * 0.2, 0.0])
    assert s.metrics()["violation/clarity"] == pytest.approx(-0.5) and not s.on_simplex


def test_lagrangian_nan_mean_keeps_that_multiplier():
    s = weighting.build("lagrangian", 3, NAMES, lambda_init=0.2)
    r = np.array([[1.0, np.nan, 0.0], [0.0, np.nan, 0.0]])
    run_step(s, StepStats(0, r, np.zeros(2), np.zeros((2, 3))))
    np.testing.assert_allclose(s.weights(), [1.0, 0.2, 0.2 + 0.01 * 0.9])


# -- tchebycheff -------------------------------------------------------------------------------------------------
def test_tchebycheff_hand_worked_per_sequence():
    r = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, np.nan, 0.0], [np.nan] * 3])
    plain = weighting.build("tchebycheff", 3, NAMES, smooth=False, ideal=[1.0, 1.0, 1.0], weights=[0.5, 0.25, 0.25])
    # −max_i w_i (1 − r_i): [−0.25, −0.5, −0.25 (NaN objective dropped), NaN]
    np.testing.assert_allclose(plain.scalarize(r), [-0.25, -0.5, -0.25, np.nan])
    smooth = weighting.build("tchebycheff", 3, NAMES, mu=0.1, ideal=[1.0, 1.0, 1.0], weights=[0.5, 0.25, 0.25])
    expected = [-0.1 * math.log(math.exp(0) + math.exp(2.5) + math.exp(0)),
                -0.1 * math.log(math.exp(5) + math.exp(2.5) + math.exp(2.5)),
                -0.1 * math.log(math.exp(0) + math.exp(2.5)), np.nan]
    np.testing.assert_allclose(smooth.scalarize(r), expected, rtol=1e-12)


def test_tchebycheff_matches_torchjd_stch():
    from torchjd.scalarization import STCH

    rng = np.random.default_rng(3)
    r, pref, ideal = rng.random((6, 3)), np.array([0.2, 0.3, 0.5]), np.array([1.2, 1.1, 1.0])
    s = weighting.build("tchebycheff", 3, NAMES, mu=0.05, weights=pref.tolist(), ideal=ideal.tolist())
    stch = STCH(0.05, weights=torch.tensor(pref), reference=torch.tensor(-ideal))  # minimises f = −r, z = −z*
    expected = [-float(stch(torch.tensor(-row))) for row in r]
    np.testing.assert_allclose(s.scalarize(r), expected, rtol=1e-12)


def test_tchebycheff_smooth_tends_to_plain_as_mu_vanishes():
    rng = np.random.default_rng(0)
    r = rng.random((20, 3))
    plain = weighting.build("tchebycheff", 3, NAMES, smooth=False, ideal=[1, 1, 1]).scalarize(r)
    for mu in (1.0, 0.1, 0.01, 1e-4, 1e-8):
        smooth = weighting.build("tchebycheff", 3, NAMES, mu=mu, ideal=[1, 1, 1]).scalarize(r)
        assert np.all(np.isfinite(smooth)), mu  # centred log-sum-exp: no overflow for tiny μ
        assert np.all(smooth <= plain + 1e-12) and np.all(plain - smooth <= mu * math.log(3) + 1e-12), mu
    np.testing.assert_allclose(smooth, plain, atol=1e-7)


def test_tchebycheff_rows_are_independent_and_ideal_is_running_max():
    s = weighting.build("tchebycheff", 3, NAMES)
    r0 = np.array([[0.5, 0.0, np.nan], [0.2, 0.4, np.nan]])
    s.before_update(StepStats(0, r0, np.zeros(2), np.zeros((2, 3))))
    assert s.state_dict()["ideal"] == [0.5, 0.4, None]
    s.before_update(StepStats(1, np.array([[0.3, 0.9, 1.0]]), np.zeros(1), np.zeros((1, 3))))
    assert s.state_dict()["ideal"] == [0.5, 0.9, 1.0]
    r = np.random.default_rng(1).random((5, 3))
    np.testing.assert_allclose(s.scalarize(r), np.concatenate([s.scalarize(row[None]) for row in r]), rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_tchebycheff_omd_matches_transcription(seed):
    rng = np.random.default_rng(seed)
    pref = rng.random(3) + 0.1
    s = weighting.build("tchebycheff", 3, NAMES, weights=pref.tolist(), preference_lr=2.0)
    seen = []
    for t in range(8):
        r = rng.random((8, 3)) * rng.uniform(0.2, 1.0, 3)
        seen.append(r)
        run_step(s, StepStats(t, r, np.repeat(np.arange(2), 4), np.zeros((8, 3))))
        np.testing.assert_allclose(s.weights(), omd_tch_reference(seen, pref / pref.sum(), 2.0), rtol=1e-12,
                                   err_msg=f"seed={seed} step={t}")
        np.testing.assert_allclose(s.scalarize(r), r @ s.weights(), rtol=1e-12)
    lagging = weighting.build("tchebycheff", 3, NAMES, preference_lr=1.0, ideal=[1, 1, 1])
    lagging.before_update(StepStats(0, np.array([[1.0, 0.2, 0.9]]), np.zeros(1), np.zeros((1, 3))))
    assert np.argmax(lagging.weights()) == 1  # the objective furthest from the ideal point gains weight


# -- pama --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_pama_closed_form_against_brute_force_over_the_simplex(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=3) + rng.choice([-1.0, 0.0, 1.0])
    c, s_star = min_norm_scalar_combination(a)
    assert isclose_simplex(c) and s_star == pytest.approx(c @ a, abs=1e-12)
    assert s_star == pytest.approx(min(max(0.0, a.min()), a.max()), abs=1e-12)  # Proj_[min, max](0), Theorem 1
    grid = [np.array([i, j, 200 - i - j]) / 200 for i in range(201) for j in range(201 - i)]
    assert (c @ a) ** 2 <= min((g @ a) ** 2 for g in grid) + 1e-12, f"seed={seed}"


def test_pama_hand_worked_batch():
    adv = np.array([[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0], [0.2, 0.1, 0.0], [-0.2, -0.1, 0.0]])
    s = weighting.build("pama", 3, NAMES)
    s.before_update(StepStats(0, np.zeros((4, 3)), np.array([0, 0, 1, 1]), adv))
    # clarity carries no signal in either prompt and is left out; Noon-clipped rows: [0.5, 0] → conciseness,
    # [0, 0.5] → accuracy, [0.2, 0.1] → conciseness, [0, 0] → uninformative.
    np.testing.assert_allclose(s.weights(), [1 / 3, 2 / 3, 0.0])
    m = s.metrics()
    assert m["informative_fraction"] == 0.75 and m["s_star_mean"] == pytest.approx(0.1 / 3)
    assert m["improving_fraction"] == pytest.approx(1 / 3)
    free = weighting.build("pama", 3, NAMES, noon=False)
    free.before_update(StepStats(0, np.zeros((4, 3)), np.array([0, 0, 1, 1]), adv))
    # mixed signs: c puts 0.5/0.5 on (−0.5, 0.5); one-sign rows pick the entry closest to 0 (0.1 and −0.1)
    np.testing.assert_allclose(free.weights(), [0.25, 0.75, 0.0])


@pytest.mark.parametrize("seed", range(4))
def test_pama_matches_transcription(seed):
    rng = np.random.default_rng(seed)
    for noon in (True, False):
        s = weighting.build("pama", 3, NAMES, noon=noon)
        stats = random_stats(rng, 0, groups=6)
        s.before_update(stats)
        np.testing.assert_allclose(s.weights(), pama_reference(stats.advantages, stats.group_ids, noon), rtol=1e-12,
                                   err_msg=f"seed={seed} noon={noon}")


def test_pama_without_information_keeps_weights():
    s = weighting.build("pama", 3, NAMES)
    s.before_update(StepStats(0, np.ones((4, 3)), np.array([0, 0, 1, 1]), np.zeros((4, 3))))
    np.testing.assert_array_equal(s.weights(), np.full(3, 1 / 3))
    assert s.metrics()["skipped"] == 1.0


# -- mgda --------------------------------------------------------------------------------------------------------
def _kkt_gap(G, a):
    """Largest violation of the min-norm KKT conditions: (Gα)_i ≥ αᵀGα, with equality where α_i > 0."""
    Ga, q = G @ a, a @ G @ a
    return max(q - Ga.min(), max(abs(Ga[i] - q) for i in range(len(a)) if a[i] > 1e-9)) / np.trace(G)


@pytest.mark.parametrize("seed", range(10))
def test_mgda_kkt_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 4
    jac = rng.normal(size=(k, max(1, k + 2 - 2 * (seed % 3))))  # fewer columns than rows: a singular G
    G = jac @ jac.T
    s = weighting.build("mgda", k, [f"o{i}" for i in range(k)])
    s.before_update(StepStats(0, np.zeros((2, k)), np.zeros(2), np.zeros((2, k)), gram=G))
    w = s.weights()
    assert isclose_simplex(w) and _kkt_gap(G, w) < 1e-10, f"seed={seed}"
    assert w @ G @ w <= mgda_reference(G) @ G @ mgda_reference(G) + 1e-9 * np.trace(G), f"seed={seed}"


def test_mgda_two_objectives_closed_form_and_frank_wolfe():
    G = np.array([[3.0, 1.0], [1.0, 2.0]])
    expected = (G[1, 1] - G[0, 1]) / (G[0, 0] + G[1, 1] - 2 * G[0, 1])  # Sener & Koltun, Algorithm 1
    for solver in ("exact", "frank_wolfe"):
        s = weighting.build("mgda", 2, ["a", "b"], solver=solver)
        s.before_update(StepStats(0, np.zeros((1, 2)), np.zeros(1), np.zeros((1, 2)), gram=G))
        np.testing.assert_allclose(s.weights(), [expected, 1 - expected], atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_mgda_frank_wolfe_reaches_the_exact_min_norm(seed):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(3, 5))
    G = jac @ jac.T
    fw = weighting.build("mgda", 3, NAMES, solver="frank_wolfe", epsilon=1e-9, max_iters=5000)
    fw.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), gram=G))
    exact = min_norm_weights(G)
    # Frank-Wolfe converges sublinearly: it stays above the exact minimum, close to it
    lo, val = exact @ G @ exact, fw.weights() @ G @ fw.weights()
    assert lo - 1e-12 * np.trace(G) <= val <= lo * (1 + 2e-3), f"seed={seed}"


def test_mgda_zero_gradient_and_normalised_gradients():
    G = np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    s = weighting.build("mgda", 3, NAMES)
    s.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), gram=G))
    np.testing.assert_allclose(s.weights(), [0.2, 0.0, 0.8])  # orthogonal: α ∝ 1/‖g‖² over the live objectives
    assert s.metrics()["zero_gradient_objectives"] == 1.0
    n = weighting.build("mgda", 3, NAMES, normalize_gradients=True)
    n.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), gram=G))
    np.testing.assert_allclose(n.weights(), [1 / 3, 0.0, 2 / 3])  # unit gradients: α = ½ each, w ∝ α/‖g‖


# -- nash_mtl ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_nash_mtl_bargaining_condition_and_coordinate_descent(seed):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(3, 6)) * np.array([[0.1], [1.0], [10.0]])
    G = jac @ jac.T
    s = weighting.build("nash_mtl", 3, NAMES, ridge=0.0)
    s.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), gram=G))
    w = s.weights()
    share = w * (G @ w)  # Gα = 1/α  ⇔  α_i (Gα)_i = 1 for every i: equal shares for any scaling of α
    np.testing.assert_allclose(share / share.mean(), np.ones(3), rtol=1e-9, err_msg=f"seed={seed}")
    np.testing.assert_allclose(w, nash_reference(G / np.linalg.norm(G), sweeps=4000), rtol=1e-7)
    alpha, ok = nash_bargaining_weights(G)
    assert ok and np.max(np.abs(alpha * (G @ alpha) - 1)) < 1e-12


def test_nash_mtl_orthogonal_zero_and_conflicting_gradients():
    s = weighting.build("nash_mtl", 3, NAMES)
    s.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), gram=np.diag([4.0, 0.0, 1.0])))
    np.testing.assert_allclose(s.weights(), [1 / 3, 0.0, 2 / 3], rtol=1e-6)  # α ∝ 1/‖g‖; zero gradient → 0
    opposed = np.array([[1.0, -1.0], [-1.0, 1.0]])  # ∇J_1 = −∇J_2: unbounded without the ridge
    s = weighting.build("nash_mtl", 2, ["a", "b"])
    s.before_update(StepStats(0, np.zeros((1, 2)), np.zeros(1), np.zeros((1, 2)), gram=opposed))
    np.testing.assert_allclose(s.weights(), [0.5, 0.5], rtol=1e-9)
    s = weighting.build("nash_mtl", 2, ["a", "b"], ridge=0.0)
    s.before_update(StepStats(0, np.zeros((1, 2)), np.zeros(1), np.zeros((1, 2)), gram=opposed))
    assert s.metrics()["skipped"] == 1.0 and np.all(s.weights() == 0.5)


def test_nash_mtl_torchjd_needs_cvxpy():
    """torchjd's NashMTL solves the same problem with cvxpy/ECOS, which are not dependencies of moalign."""
    from torchjd.aggregation import NashMTL as TorchjdNashMTL

    try:
        aggregator = TorchjdNashMTL(n_tasks=3)
    except ImportError:
        pytest.skip("cvxpy/ecos not installed: the comparison runs only where torchjd[nash_mtl] is")
    jac = np.random.default_rng(0).normal(size=(3, 5))
    w_torchjd = aggregator.weighting(torch.tensor(jac)).numpy()
    s = weighting.build("nash_mtl", 3, NAMES, ridge=0.0)
    s.before_update(StepStats(0, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), gram=jac @ jac.T))
    np.testing.assert_allclose(s.weights(), w_torchjd / w_torchjd.sum(), rtol=1e-3)


# -- gradnorm ----------------------------------------------------------------------------------------------------
def test_gradnorm_hand_worked_step():
    s = weighting.build("gradnorm", 2, ["a", "b"])
    s.before_update(StepStats(0, np.array([[1.0, 0.0]]), np.zeros(1), np.zeros((1, 2)), gram=np.diag([4.0, 1.0])))
    # norms [2, 1], first step: r̃ = 1, target = mean(W·‖g‖) = 1.5; W ← 1 ∓ 0.025·[2, 1]/1.5, then Σ W = 2
    W = np.array([1 - 0.025 * 2 / 1.5, 1 + 0.025 * 1 / 1.5])
    np.testing.assert_allclose(s.weights(), W / W.sum(), rtol=1e-12)


@pytest.mark.parametrize(("seed", "scale_invariant"), [(0, True), (1, True), (2, False), (3, False)])
def test_gradnorm_matches_transcription(seed, scale_invariant):
    rng = np.random.default_rng(seed)
    s = weighting.build("gradnorm", 3, NAMES, scale_invariant=scale_invariant, lr=0.05)
    history = []
    for t in range(10):
        stats = random_stats(rng, t, nan_frac=0.0)
        history.append((stats.objective_means, stats.gram))
        run_step(s, stats)
        np.testing.assert_allclose(s.weights(), gradnorm_reference(history, lr=0.05, scale_invariant=scale_invariant),
                                   rtol=1e-12, err_msg=f"seed={seed} step={t}")


def test_gradnorm_survives_losses_crossing_zero_and_zero_norms():
    s = weighting.build("gradnorm", 3, NAMES, scale_invariant=False, lr=1.0)
    for t, r in enumerate([np.array([[1.0, 0.0, 0.5]]), np.array([[3.0, 0.2, -2.0]]), np.array([[-1.0, 1.0, 5.0]])]):
        # rewards outside [0, 1] make 1 − mean negative; the policy-gradient losses cross zero
        stats = StepStats(t, r, np.zeros(1), np.zeros((1, 3)), gram=np.diag([0.0, 9.0, 0.0]), losses=np.array([-1, 0, 1]))
        s.before_update(stats)
        assert isclose_simplex(s.weights()) and np.all(s.weights() > 0), t
        assert s.metrics()["skipped"] == 0.0
    s.before_update(StepStats(3, np.array([[1.0, 1.0, 1.0]]), np.zeros(1), np.zeros((1, 3)), gram=np.zeros((3, 3))))
    assert s.metrics()["skipped"] == 1.0  # every gradient norm is 0: nothing to balance


# -- famo --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_famo_matches_torchjd_over_steps(seed):
    rng = np.random.default_rng(seed)
    s = weighting.build("famo", 3, NAMES, lr=0.1, weight_decay=1e-2)
    means = []
    for t in range(10):
        stats = random_stats(rng, t, nan_frac=0.0)
        means.append(stats.objective_means)
        run_step(s, stats)
        np.testing.assert_allclose(s.weights(), famo_torchjd(means, lr=0.1, weight_decay=1e-2)[-1], rtol=1e-9,
                                   err_msg=f"seed={seed} step={t}")


def test_famo_sgd_formula_and_first_step():
    s = weighting.build("famo", 2, ["a", "b"], optimizer="sgd", lr=2.0, weight_decay=0.1)
    s.before_update(StepStats(0, np.array([[0.5, 0.75]]), np.zeros(1), np.zeros((1, 2))))
    L0 = np.array([0.5, 0.25]) + 1e-3
    np.testing.assert_allclose(s.weights(), (1 / L0) / (1 / L0).sum(), rtol=1e-12)  # ξ = 0: w ∝ 1/L
    s.before_update(StepStats(1, np.array([[0.75, 0.75]]), np.zeros(1), np.zeros((1, 2))))
    L1 = np.array([0.25, 0.25]) + 1e-3
    delta = np.log(L0) - np.log(L1)  # a improved, b did not
    z0 = np.array([0.5, 0.5])
    xi = -2.0 * (z0 * (delta - z0 @ delta) + 0.1 * np.zeros(2))
    z = np.exp(xi) / np.exp(xi).sum()
    np.testing.assert_allclose(s.weights(), (z / L1) / (z / L1).sum(), rtol=1e-12)
    assert s.weights()[1] > s.weights()[0]  # the objective that improved least gains weight

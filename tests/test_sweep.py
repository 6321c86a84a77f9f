"""Preset sweeps (moalign.sweep) and IGD+ (moalign.pareto.igd_plus), each against an independent computation."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from moalign.pareto import igd_plus
from moalign.sweep import (best_of_n_curve, dirichlet_presets, expected_best_of_n, smallest_n_reaching,
                           sweep_equivalent_n)


def _best_of_n_by_enumeration(val, test, n):
    """Every n-subset of the pool, the val-best kept (ties: lowest index), its test HV averaged."""
    picks = []
    for subset in itertools.combinations(range(len(val)), n):
        best = min(subset, key=lambda i: (-val[i], i))
        picks.append(test[best])
    return float(np.mean(picks))


def test_hand_worked_example():
    val, test = [0.3, 0.1, 0.2], [0.5, 0.9, 0.6]
    # N=1: mean of all; N=2: {0,1}->0.5, {0,2}->0.5, {1,2}->0.6; N=3: the val-best (0) -> 0.5
    assert [expected_best_of_n(val, test, n) for n in (1, 2, 3)] == pytest.approx([2.0 / 3, 1.6 / 3, 0.5])
    curve = best_of_n_curve(np.array([val]), np.array([test]))
    assert smallest_n_reaching(curve, 0.55) == 1  # N=1 already reaches it: choosing on val can hurt on test
    assert smallest_n_reaching(curve, 0.7) is None


@pytest.mark.parametrize("seed", range(5))
def test_exact_expectation_matches_enumeration_with_ties(seed):
    rng = np.random.default_rng(seed)
    val = rng.integers(0, 4, 7).astype(float)  # many ties
    test = rng.random(7)
    for n in range(1, 8):
        assert expected_best_of_n(val, test, n) == pytest.approx(_best_of_n_by_enumeration(val, test, n)), seed


def test_sweep_equivalent_n_point_and_bootstrap():
    # two seeds, pool of 4 presets whose test HV follows val HV: best-of-N rises with N
    val = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    test = val.copy()
    curve = best_of_n_curve(val, test)
    assert curve == pytest.approx([0.25, 0.3333333, 0.375, 0.4], abs=1e-6)  # E[max of N of {.1,.2,.3,.4}]
    res = sweep_equivalent_n(val, test, dynamic=[0.34, 0.34], n_boot=300)
    assert res["n"] == 3 and res["target"] == pytest.approx(0.34)
    lo, hi = res["ci"]
    assert 1 <= lo <= 3 <= hi <= 5
    assert sweep_equivalent_n(val, test, dynamic=[0.5, 0.5], n_boot=50)["n"] is None
    with pytest.raises(ValueError, match="one per seed"):
        sweep_equivalent_n(val, test, dynamic=[0.5])


def test_dirichlet_presets_are_seeded_on_the_simplex():
    a, b = dirichlet_presets(8, 6, seed=0), dirichlet_presets(8, 6, seed=0)
    assert np.array_equal(a, b) and a.shape == (6, 8)
    assert np.allclose(a.sum(axis=1), 1) and (a > 0).all()
    assert not np.array_equal(a, dirichlet_presets(8, 6, seed=1))


def test_dirichlet_alpha_concentrates_and_alpha_1_keeps_the_benched_presets():
    """alpha = 1 draws exactly the presets the K = 8 campaign trained (recorded in its committed summary);
    alpha = 4 matches the Dirichlet variance (1/K)(1 - 1/K)/(K alpha + 1) (a closed form, not numpy's sampler)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    recorded = json.loads((root / "benchmarks/results/bench_habits/K8_bench.json").read_text())["sweep"]["presets"]
    assert dirichlet_presets(8, 6, seed=0, alpha=1.0).tolist() == [list(p.values()) for p in recorded]
    k = 8
    for alpha in (1.0, 4.0):
        w = dirichlet_presets(k, 20000, seed=3, alpha=alpha)
        assert np.allclose(w.sum(axis=1), 1) and (w > 0).all()
        assert w.var(axis=0).mean() == pytest.approx((1 / k) * (1 - 1 / k) / (k * alpha + 1), rel=0.05)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        dirichlet_presets(3, 2, seed=0, alpha=0.0)


def _igd_plus_brute_force(points, ref, maximize):
    total = 0.0
    for z in ref:
        best = np.inf
        for a in points:
            d = 0.0
            for ai, zi, mx in zip(a, z, maximize):
                worse = (zi - ai) if mx else (ai - zi)
                d += max(worse, 0.0) ** 2
            best = min(best, d ** 0.5)
        total += best
    return total / len(ref)


@pytest.mark.parametrize("seed", range(4))
def test_igd_plus_against_brute_force_and_pymoo(seed):
    rng = np.random.default_rng(seed)
    points, ref = rng.random((6, 4)), rng.random((9, 4))
    maximize = [True, False, True, True]
    assert igd_plus(points, ref, maximize=maximize) == pytest.approx(_igd_plus_brute_force(points, ref, maximize))
    from pymoo.indicators.igd_plus import IGDPlus

    # pymoo minimises: flip the maximised columns
    sign = np.where(maximize, -1.0, 1.0)
    assert igd_plus(points, ref, maximize=maximize) == pytest.approx(IGDPlus(ref * sign)(points * sign)), seed


def test_igd_plus_zero_on_dominating_points_and_errors():
    assert igd_plus([[1.0, 1.0, 1.0]], [[0.5, 0.2, 0.9], [1.0, 1.0, 1.0]]) == 0.0
    with pytest.raises(ValueError, match="at least one point"):
        igd_plus(np.zeros((0, 2)), [[1.0, 1.0]])
    with pytest.raises(ValueError, match="must have 2 columns"):
        igd_plus([[1.0, 1.0, 1.0]], [[1.0, 1.0]])

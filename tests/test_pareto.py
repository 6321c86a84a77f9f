"""moalign.pareto against independent computations (inclusion-exclusion, grid counting) and invariants."""

from __future__ import annotations

import doctest
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign import pareto
from moalign.pareto import ParetoBuffer, hv_contribution, hypervolume, nondominated, normalize


def brute_hv(points, ref):
    """Inclusion-exclusion over subsets (maximisation): Σ (−1)^{|S|+1} vol(∩ boxes) — exponential, small n only."""
    pts = [p for p in np.asarray(points, float) if np.all(p > ref)]
    total = 0.0
    for r in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, r):
            corner = np.min(subset, axis=0)
            total += (-1) ** (r + 1) * np.prod(corner - ref)
    return total


def grid_hv(points, ref, maximize):
    """Count unit cells dominated by integer points (any directions)."""
    pts = np.asarray(points, int)
    sign = np.where(maximize, 1, -1)
    p, r = pts * sign, np.asarray(ref) * sign
    lo, hi = r, p.max(axis=0) if len(p) else r
    count = 0
    for cell in itertools.product(*[range(int(a), int(b)) for a, b in zip(lo, hi)]):
        upper = np.asarray(cell) + 1
        if any(np.all(q >= upper) for q in p):
            count += 1
    return count


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_matches_inclusion_exclusion(k, seed):
    rng = np.random.default_rng(seed * 10 + k)
    pts = rng.random((7, k))
    ref = np.zeros(k) + 0.05
    assert hypervolume(pts, ref) == pytest.approx(brute_hv(pts, ref), rel=1e-9, abs=1e-12), f"seed={seed} k={k}"


@pytest.mark.parametrize("seed", range(6))
def test_mixed_directions_match_grid_counting(seed):
    rng = np.random.default_rng(seed)
    maximize = [True, False, True]
    pts = np.column_stack([rng.integers(1, 6, 6), rng.integers(0, 5, 6), rng.integers(1, 6, 6)])
    ref = [0, 5, 0]
    assert hypervolume(pts, ref, maximize=maximize) == grid_hv(pts, ref, maximize), f"seed={seed}"


@pytest.mark.parametrize("seed", range(8))
def test_contribution_identity(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 4
    pts = rng.random((30, k))
    ref = np.zeros(k)
    total = hypervolume(pts, ref)
    for i in range(0, 30, 7):
        rest = np.delete(pts, i, axis=0)
        expected = total - hypervolume(rest, ref)
        assert hv_contribution(pts[i], rest, ref) == pytest.approx(expected, abs=1e-12), f"seed={seed} i={i}"


def test_contribution_large_buffer_matches_naive():
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(1000, 3)))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    p = x[0] * 1.01
    naive = hypervolume(np.vstack([x, p]), [0, 0, 0]) - hypervolume(x, [0, 0, 0])
    assert hv_contribution(p, x, [0, 0, 0]) == pytest.approx(naive, rel=1e-6, abs=1e-12)


def test_maximizing_negation_equals_minimizing():
    rng = np.random.default_rng(1)
    pts = rng.random((10, 3))
    ref = np.zeros(3)
    assert hypervolume(pts, ref) == pytest.approx(hypervolume(-pts, -ref, maximize=False))


def test_points_not_dominating_ref_contribute_zero():
    assert hypervolume([[2.0, -1.0], [-3.0, 4.0]], [0.0, 0.0]) == 0.0
    assert hypervolume([[2.0, 0.0]], [0.0, 0.0]) == 0.0  # on the boundary: zero volume, no crash
    assert hv_contribution([2.0, -1.0], [[1.0, 1.0]], [0.0, 0.0]) == 0.0
    assert hypervolume([[2.0, -1.0], [1.0, 1.0]], [0.0, 0.0]) == 1.0


def test_empty_duplicates_and_dominated():
    assert hypervolume(np.empty((0, 3)), [0, 0, 0]) == 0.0
    assert hv_contribution([1, 1], np.empty((0, 2)), [0, 0]) == 1.0
    assert hypervolume([[1, 2], [1, 2]], [0, 0]) == 2.0
    assert hypervolume([[1, 2], [0.5, 1]], [0, 0]) == 2.0
    assert hv_contribution([1, 2], [[1, 2]], [0, 0]) == 0.0
    assert nondominated([[1, 2], [1, 2], [0, 0]]).tolist() == [True, True, False]
    assert nondominated(np.empty((0, 2))).tolist() == []


def test_bad_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="'points' contains NaN"):
        hypervolume([[np.nan, 1.0]], [0, 0])
    with pytest.raises(ValueError, match="'ref' contains NaN"):
        hypervolume([[1.0, 1.0]], [np.nan, 0])
    with pytest.raises(ValueError, match="'points' has 3 objectives per point, but 2 were expected"):
        hypervolume([[1.0, 1.0, 1.0]], [0, 0])
    with pytest.raises(ValueError, match="'point' must have length 2, but it has length 3"):
        hv_contribution([1, 1, 1], [[1, 1]], [0, 0])
    with pytest.raises(ValueError, match="'maximize' must be one bool or 2 bools"):
        hypervolume([[1, 1]], [0, 0], maximize=[True, False, True])
    with pytest.raises(ValueError, match="'upper' must exceed 'lower'.*\\[1\\]"):
        normalize([[1, 1]], [0, 1], [1, 1])


def test_normalize_directions_and_inputs_unchanged():
    pts = np.array([[0.5, 512.0]])
    before = pts.copy()
    out = normalize(pts, [0, 0], [1, 2048], maximize=[True, False])
    np.testing.assert_allclose(out, [[0.5, 0.75]])
    np.testing.assert_array_equal(pts, before)


def test_inputs_are_not_modified():
    pts = np.array([[1.0, 2.0], [2.0, 1.0]])
    ref = np.array([0.0, 0.0])
    copies = pts.copy(), ref.copy()
    hypervolume(pts, ref, maximize=[True, True])
    hv_contribution(pts[0], pts, ref)
    nondominated(pts)
    np.testing.assert_array_equal(pts, copies[0])
    np.testing.assert_array_equal(ref, copies[1])


point_sets = st.lists(st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * 3), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(point_sets, st.randoms(use_true_random=False))
def test_permutation_invariance(points, rnd):
    shuffled = list(points)
    rnd.shuffle(shuffled)
    assert hypervolume(points, [0, 0, 0]) == pytest.approx(hypervolume(shuffled, [0, 0, 0]), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(point_sets, st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * 3))
def test_monotone_and_contribution_nonnegative(points, extra):
    before = hypervolume(points, [0, 0, 0])
    after = hypervolume(points + [extra], [0, 0, 0])
    contribution = hv_contribution(extra, points, [0, 0, 0])
    assert after >= before - 1e-12
    assert contribution >= 0.0
    assert contribution == pytest.approx(after - before, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(point_sets, st.integers(0, 11), st.floats(0.0, 1.0))
def test_dominated_point_contributes_zero(points, i, shrink):
    q = np.asarray(points[i % len(points)]) * shrink
    assert hv_contribution(q, points, [0, 0, 0]) == 0.0


def test_buffer_keeps_only_nondominated_and_round_trips():
    buf = ParetoBuffer([0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    pts = rng.random((40, 3))
    deltas = [buf.add(p, step=i) for i, p in enumerate(pts[:20])]
    assert all(d >= 0 for d in deltas)
    assert nondominated(buf.points).all()
    assert buf.hypervolume() == pytest.approx(hypervolume(pts[:20], [0, 0, 0]))
    restored = ParetoBuffer([0.0, 0.0, 0.0])
    restored.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    for i, p in enumerate(pts[20:], start=20):
        assert buf.add(p, i) == restored.add(p, i)
    np.testing.assert_array_equal(buf.points, restored.points)
    assert buf.steps == restored.steps


def test_buffer_ref_none_and_max_size():
    buf = ParetoBuffer(None)
    assert buf.add([0.2, 0.2], step=0) == 0.0 and len(buf) == 0
    assert buf.ref.tolist() == [0.2, 0.2]
    assert buf.add([0.5, 0.3], step=1) == pytest.approx(0.03)
    capped = ParetoBuffer([0, 0], max_size=2)
    for i, p in enumerate([[1, 5], [2, 4], [3, 3], [5, 1]]):
        capped.add(p, i)
    assert len(capped) == 2
    with pytest.raises(ValueError, match="NaN"):
        capped.add([np.nan, 1], 9)
    with pytest.raises(ValueError, match="2 points but 1 steps"):
        ParetoBuffer([0, 0]).load_state_dict({"ref": [0, 0], "maximize": [True, True], "points": [[1, 1], [2, 0.5]],
                                              "steps": [0]})


def test_doctests():
    assert doctest.testmod(pareto).failed == 0

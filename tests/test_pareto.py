"""moalign.pareto against independent computations (inclusion–exclusion, grid counting) and invariants.

The reference computations below share no code with moalign.pareto or moocore: inclusion–exclusion over the
boxes of every subset, written in the original directions, and counting unit cells on integer points.
"""

from __future__ import annotations

import doctest
import importlib.util
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import moocore
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from moalign import pareto
from moalign.pareto import ParetoBuffer, hv_contribution, hypervolume, nondominated, normalize

ROOT = Path(__file__).resolve().parents[1]


# -- independent computations ---------------------------------------------------------------------------------
def hv_inclusion_exclusion(points, ref, maximize) -> float:
    """Σ over non-empty subsets T of (−1)^(|T|+1)·vol(∩_{q∈T} box(q)); box(q) spans ref..q in each objective."""
    ref = np.asarray(ref, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, ref.size)
    mx = np.broadcast_to(np.asarray(maximize, dtype=bool), ref.shape)
    total = 0.0
    for size in range(1, len(pts) + 1):
        for subset in itertools.combinations(range(len(pts)), size):
            sub = pts[list(subset)]
            sides = np.where(mx, sub.min(axis=0) - ref, ref - sub.max(axis=0))  # empty side when ≤ 0
            total += (-1) ** (size + 1) * float(np.prod(np.clip(sides, 0.0, None)))
    return total


def hv_grid(points, ref, maximize) -> int:
    """Number of unit cells [c, c+1]^k dominated by integer points, each objective in its own direction."""
    ref = np.asarray(ref, dtype=int)
    pts = np.asarray(points, dtype=int).reshape(-1, ref.size)
    mx = np.broadcast_to(np.asarray(maximize, dtype=bool), ref.shape)
    if len(pts) == 0:
        return 0
    lo = np.minimum(ref, pts.min(axis=0))
    hi = np.maximum(ref, pts.max(axis=0))
    cells = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, ref.size)
    covered = np.zeros(len(cells), dtype=bool)
    for q in pts:
        inside_max = (cells >= ref) & (cells + 1 <= q)  # maximised: ref ≤ cell, cell + 1 ≤ q
        inside_min = (cells >= q) & (cells + 1 <= ref)  # minimised: q ≤ cell, cell + 1 ≤ ref
        covered |= np.where(mx, inside_max, inside_min).all(axis=1)
    return int(covered.sum())


def dominates(a, b, maximize) -> bool:
    a, b = np.where(maximize, a, -np.asarray(a)), np.where(maximize, b, -np.asarray(b))
    return bool(np.all(a >= b) and np.any(a > b))


def random_case(rng, k, n, integer=False):
    """Points, ref and mixed directions; some points fail to dominate ref and some coordinates tie."""
    maximize = [bool(m) for m in rng.random(k) < 0.5]
    if integer:
        pts = rng.integers(0, 5, size=(n, k)).astype(float)
        ref = np.where(maximize, rng.integers(0, 2, k), rng.integers(3, 5, k)).astype(float)
    else:
        pts = rng.random((n, k))
        pts[rng.random((n, k)) < 0.15] = 0.5  # ties
        ref = np.where(maximize, 0.1, 0.9)
    return pts, ref, maximize


# -- hypervolume against independent computations ---------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_matches_inclusion_exclusion(k, seed):
    rng = np.random.default_rng(1000 * k + seed)
    pts, ref, maximize = random_case(rng, k, n=7)
    expected = hv_inclusion_exclusion(pts, ref, maximize)
    got = hypervolume(pts, ref, maximize=maximize)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), f"seed={1000 * k + seed} k={k} maximize={maximize}"


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_and_contribution_match_grid_counting(k, seed):
    rng = np.random.default_rng(2000 * k + seed)
    pts, ref, maximize = random_case(rng, k, n=8, integer=True)
    msg = f"seed={2000 * k + seed} k={k} maximize={maximize}"
    assert hypervolume(pts, ref, maximize=maximize) == hv_grid(pts, ref, maximize), msg
    for p in rng.integers(0, 5, size=(4, k)).astype(float):
        expected = hv_grid(np.vstack([pts, p]), ref, maximize) - hv_grid(pts, ref, maximize)
        assert hv_contribution(p, pts, ref, maximize=maximize) == pytest.approx(expected, abs=1e-9), f"{msg} p={p}"


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", range(3))
def test_contribution_identity(k, seed):
    """hv_contribution(p_i, rest) = HV(all) − HV(all but p_i); for a front it also equals moocore's HVC."""
    rng = np.random.default_rng(3000 * k + seed)
    front = np.abs(rng.normal(size=(25, k)))
    front /= np.linalg.norm(front, axis=1, keepdims=True)  # mutually non-dominated (maximised)
    ref = np.zeros(k)
    total = hypervolume(front, ref)
    hvc = moocore.hv_contributions(-front, ref=-ref)
    for i in range(len(front)):
        rest = np.delete(front, i, axis=0)
        got = hv_contribution(front[i], rest, ref)
        assert got == pytest.approx(total - hypervolume(rest, ref), rel=1e-7, abs=1e-12), f"seed={seed} k={k} i={i}"
        assert got == pytest.approx(hvc[i], rel=1e-7, abs=1e-12), f"seed={seed} k={k} i={i}"


@pytest.mark.parametrize("k", [2, 3, 4])
def test_contribution_against_a_1000_point_buffer_matches_naive(k):
    seed = 4000 + k
    rng = np.random.default_rng(seed)
    buffer = np.abs(rng.normal(size=(1000, k)))
    buffer /= np.linalg.norm(buffer, axis=1, keepdims=True)
    ref = np.zeros(k)
    base = hypervolume(buffer, ref)
    for radius in (1.001, 1.01, 1.05, 0.99):  # 0.99: usually dominated
        p = np.abs(rng.normal(size=k))
        p *= radius / np.linalg.norm(p)
        naive = hypervolume(np.vstack([buffer, p]), ref) - base
        assert hv_contribution(p, buffer, ref) == pytest.approx(naive, rel=1e-6, abs=1e-12), f"seed={seed} r={radius}"


# -- identities ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_dominated_points_leave_hypervolume_unchanged(seed):
    rng = np.random.default_rng(seed)
    pts, ref, maximize = random_case(rng, 3, n=10)
    toward_ref = rng.random((10, 1))
    dominated = ref + (pts - ref) * toward_ref  # between ref and a point: weakly dominated by it
    before = hypervolume(pts, ref, maximize=maximize)
    assert hypervolume(np.vstack([pts, dominated]), ref, maximize=maximize) == pytest.approx(before), f"seed={seed}"
    for q in dominated:
        assert hv_contribution(q, pts, ref, maximize=maximize) == 0.0, f"seed={seed}"


@pytest.mark.parametrize("seed", range(5))
def test_maximizing_negation_equals_minimizing(seed):
    rng = np.random.default_rng(seed)
    pts, ref, maximize = random_case(rng, 4, n=12)
    flip = rng.random(4) < 0.5  # negate some objectives and flip their direction
    pts2, ref2 = np.where(flip, -pts, pts), np.where(flip, -ref, ref)
    maximize2 = [m != f for m, f in zip(maximize, flip)]
    msg = f"seed={seed}"
    assert hypervolume(pts, ref, maximize=maximize) == pytest.approx(hypervolume(pts2, ref2, maximize=maximize2)), msg
    assert hv_contribution(pts[0], pts[1:], ref, maximize=maximize) == pytest.approx(
        hv_contribution(pts2[0], pts2[1:], ref2, maximize=maximize2)
    ), msg
    assert nondominated(pts, maximize=maximize).tolist() == nondominated(pts2, maximize=maximize2).tolist(), msg
    assert hypervolume(pts, ref) == pytest.approx(hypervolume(-pts, -ref, maximize=False)), msg


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_points_not_dominating_ref_contribute_zero(k):
    ref = np.zeros(k)
    outside = np.eye(k) * 2.0 - 1.0  # one coordinate better than ref, the others worse
    boundary = np.ones((1, k))
    boundary[0, 0] = 0.0  # equal to ref in one objective: zero volume
    assert hypervolume(outside, ref) == 0.0
    assert hypervolume(boundary, ref) == 0.0
    assert hv_contribution(outside[0], np.ones((1, k)) * 0.5, ref) == 0.0
    assert hv_contribution(boundary[0], np.empty((0, k)), ref) == 0.0
    assert hypervolume(np.vstack([outside, boundary, np.full((1, k), 0.5)]), ref) == pytest.approx(0.5**k)
    # a set whose members do not dominate ref adds nothing to a new point's contribution
    assert hv_contribution(np.full(k, 0.5), outside, ref) == pytest.approx(0.5**k)


def test_empty_set():
    assert hypervolume(np.empty((0, 3)), [0.0, 0.0, 0.0]) == 0.0
    assert hypervolume([], ref=[0.0, 0.0]) == 0.0
    assert hv_contribution([1.0, 2.0], [], ref=[0.0, 0.0]) == 2.0
    assert hv_contribution([1.0, 2.0], np.empty((0, 2)), ref=0.0) == 2.0  # scalar ref is broadcast
    assert nondominated(np.empty((0, 2))).tolist() == []
    assert nondominated([]).tolist() == []


def test_duplicates():
    assert hypervolume([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0]], [0.0, 0.0]) == 3.0
    assert hv_contribution([1.0, 2.0], [[1.0, 2.0]], [0.0, 0.0]) == 0.0
    # documented choice: every copy of a non-dominated point is kept (keep_weakly=True semantics)
    assert nondominated([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [2.0, 1.0]]).tolist() == [True, True, False, True]


def test_one_objective_is_trivial():
    assert hypervolume([[3.0], [5.0], [-1.0]], ref=[1.0]) == 4.0
    assert hypervolume([[3.0], [5.0]], ref=[10.0], maximize=False) == 7.0
    assert hv_contribution([6.0], [[3.0], [5.0]], ref=[1.0]) == 1.0
    assert hv_contribution([4.0], [[3.0], [5.0]], ref=[1.0]) == 0.0
    assert nondominated([[3.0], [5.0], [5.0]]).tolist() == [False, True, True]


@pytest.mark.parametrize("seed", range(5))
def test_nondominated_matches_pairwise_definition(seed):
    rng = np.random.default_rng(5000 + seed)
    pts, _, maximize = random_case(rng, 3, n=30, integer=True)
    expected = [not any(dominates(q, p, maximize) for q in pts) for p in pts]
    assert nondominated(pts, maximize=maximize).tolist() == expected, f"seed={5000 + seed}"


def test_normalize_design_space():
    evals = np.array([[0.5, 512.0, 0.25], [1.0, 0.0, 1.0], [0.0, 2048.0, 0.0]])
    space = normalize(evals, lower=[0, 0, 0], upper=[1, 2048, 1], maximize=[True, False, True])
    np.testing.assert_allclose(space, [[0.5, 0.75, 0.25], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    # a single point stays a single point; scalar bounds are broadcast
    np.testing.assert_allclose(normalize([2.0, 4.0], lower=0.0, upper=8.0, maximize=False), [0.75, 0.5])
    # the HV of normalised points equals the HV in the original units divided by the box volume
    raw_hv = hypervolume(evals, ref=[0.0, 2048.0, 0.0], maximize=[True, False, True])
    assert hypervolume(space, ref=[0.0, 0.0, 0.0]) == pytest.approx(raw_hv / 2048.0)


# -- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise_naming_the_argument(bad):
    with pytest.raises(ValueError, match=r"'points' contains NaN or infinite values in 1 row\(s\), e.g. row 1"):
        hypervolume([[1.0, 1.0], [bad, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="'ref' contains NaN or infinite values.*finite"):
        hypervolume([[1.0, 1.0]], [bad, 0.0])
    with pytest.raises(ValueError, match="'point' contains NaN or infinite"):
        hv_contribution([bad, 1.0], [[1.0, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="'points' contains NaN or infinite"):
        hv_contribution([1.0, 1.0], [[bad, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="'points' contains NaN or infinite"):
        nondominated([[bad, 1.0]])
    with pytest.raises(ValueError, match="'upper' contains NaN or infinite"):
        normalize([[1.0, 1.0]], [0.0, 0.0], [1.0, bad])


def test_wrong_shapes_raise_naming_the_argument():
    with pytest.raises(ValueError, match="'points' must be numbers in a regular array"):
        hypervolume([[1.0, 2.0], [1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="'ref' must have length 3, but it has length 2"):
        hypervolume([[1.0, 1.0, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="'points' must have 2 columns \\(one per objective\\), but it has 3"):
        hv_contribution([1.0, 1.0], [[1.0, 1.0, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="'ref' must have length 2, but it has length 3"):
        hv_contribution([1.0, 1.0], [[1.0, 1.0]], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="'points' must be a 2-D array of shape \\(n, k\\)"):
        hypervolume([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="'points' must be a 2-D array"):
        nondominated(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="'maximize' must be one bool or 2 bools \\(one per objective\\)"):
        hypervolume([[1.0, 1.0]], [0.0, 0.0], maximize=[True, False, True])
    with pytest.raises(ValueError, match="'maximize' must be one bool or a sequence of 2 bools"):
        hypervolume([[1.0, 1.0]], [0.0, 0.0], maximize="max")
    with pytest.raises(ValueError, match="'maximize' must be one bool"):
        hypervolume([[1.0, 1.0]], [0.0, 0.0], maximize=[1, 0])
    with pytest.raises(ValueError, match="'point' is empty"):
        hv_contribution([], [[1.0, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"'upper' must be greater than 'lower'.* objective\(s\) \[1, 2\]"):
        normalize([[1.0, 1.0, 1.0]], [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at most 31 objectives"):
        hypervolume(np.ones((1, 32)), np.zeros(32))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(7)
    pts = rng.random((20, 3))
    point, ref, lower, upper = rng.random(3), np.zeros(3), np.zeros(3), np.ones(3)
    maximize = np.array([True, False, True])
    int_pts = rng.integers(0, 5, size=(6, 3))
    originals = [a.copy() for a in (pts, point, ref, lower, upper, maximize, int_pts)]
    hypervolume(pts, ref, maximize=maximize)
    hypervolume(int_pts, ref, maximize=maximize)
    hv_contribution(point, pts, ref, maximize=maximize)
    hv_contribution(point, int_pts, ref, maximize=maximize)
    nondominated(pts, maximize=maximize)
    normalize(pts, lower, upper, maximize=maximize)
    buf = ParetoBuffer(ref, maximize=maximize)
    for i, p in enumerate(pts):
        buf.add(p, i)
    for a, b in zip((pts, point, ref, lower, upper, maximize, int_pts), originals):
        np.testing.assert_array_equal(a, b)
    assert normalize(pts, lower, upper) is not pts


# -- hypothesis properties ---------------------------------------------------------------------------------------
coordinate = st.one_of(st.integers(0, 3).map(float), st.floats(0.0, 3.0, allow_nan=False, width=32))


@st.composite
def cases(draw, min_size=0):
    """(points, extra point, ref, maximize) in k = 2..4 objectives, with ties and points on ref's boundary."""
    k = draw(st.integers(2, 4))
    maximize = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    points = draw(st.lists(st.lists(coordinate, min_size=k, max_size=k), min_size=min_size, max_size=10))
    extra = draw(st.lists(coordinate, min_size=k, max_size=k))
    ref = [0.0 if m else 3.0 for m in maximize]
    return np.array(points, dtype=float).reshape(-1, k), np.array(extra), np.array(ref), maximize


@settings(max_examples=60, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_permutation_invariance(case, rnd):
    points, extra, ref, maximize = case
    order = list(range(len(points)))
    rnd.shuffle(order)
    shuffled = points[order]
    assert hypervolume(shuffled, ref, maximize=maximize) == pytest.approx(
        hypervolume(points, ref, maximize=maximize), rel=1e-12, abs=1e-12
    )
    assert hv_contribution(extra, shuffled, ref, maximize=maximize) == pytest.approx(
        hv_contribution(extra, points, ref, maximize=maximize), rel=1e-9, abs=1e-12
    )
    assert nondominated(shuffled, maximize=maximize).tolist() == nondominated(points, maximize=maximize)[order].tolist()


@settings(max_examples=80, deadline=None)
@given(cases())
def test_monotone_and_contribution_nonnegative_and_exact(case):
    points, extra, ref, maximize = case
    before = hypervolume(points, ref, maximize=maximize)
    after = hypervolume(np.vstack([points, extra]), ref, maximize=maximize)
    contribution = hv_contribution(extra, points, ref, maximize=maximize)
    assert after >= before - 1e-12
    assert contribution >= 0.0
    assert contribution == pytest.approx(after - before, rel=1e-9, abs=1e-9)


@example(
    case=(np.array([[0.0, 2.220446049250313e-16]]), np.zeros(2), np.array([3.0, 3.0]), [False, False]), i=0, shrink=1.0
)
@settings(max_examples=60, deadline=None)
@given(cases(min_size=1), st.integers(0, 9), st.floats(0.0, 1.0))
def test_dominated_point_contributes_zero(case, i, shrink):
    points, _, ref, maximize = case
    q = points[i % len(points)]
    between = ref + (q - ref) * shrink
    # Rounding can carry `between` past q (q = (0, 2.2e-16), ref 3, shrink 1 gives (0, 0), which strictly
    # dominates q), so clamp it to q's worse side: then q weakly dominates it by construction.
    worse = np.where(maximize, np.minimum(between, q), np.maximum(between, q))
    assert hv_contribution(worse, points, ref, maximize=maximize) == 0.0


# -- ParetoBuffer ----------------------------------------------------------------------------------------------
def test_buffer_adds_and_removes_dominated():
    buf = ParetoBuffer([0.0, 0.0])
    assert buf.add([0.5, 0.5], step=1) == 0.25
    assert buf.add([0.4, 0.4], step=2) == 0.0  # dominated
    assert buf.add([0.5, 0.5], step=3) == 0.0  # duplicate
    assert buf.add([0.8, 0.25], step=4) == pytest.approx(0.075)
    assert buf.add([-0.1, 0.9], step=5) == 0.0  # does not dominate ref
    assert buf.steps == [1, 4] and len(buf) == 2
    assert buf.add([0.6, 0.6], step=6) == pytest.approx(0.36 + 0.2 * 0.25 - 0.25 - 0.075)  # replaces (0.5, 0.5)
    assert buf.points.tolist() == [[0.8, 0.25], [0.6, 0.6]] and buf.steps == [4, 6]
    assert buf.hypervolume() == pytest.approx(0.36 + 0.2 * 0.25)
    assert repr(buf) == "ParetoBuffer(ref=[0.0, 0.0], maximize=[True, True], max_size=None, size=2)"


@pytest.mark.parametrize("seed", range(4))
def test_buffer_tracks_the_front_of_everything_seen(seed):
    rng = np.random.default_rng(6000 + seed)
    stream, ref, maximize = random_case(rng, 3, n=60, integer=seed % 2 == 0)
    buf = ParetoBuffer(ref, maximize=maximize)
    for i, p in enumerate(stream):
        before = hypervolume(stream[:i], ref, maximize=maximize)
        after = hypervolume(stream[: i + 1], ref, maximize=maximize)
        assert buf.add(p, step=i) == pytest.approx(after - before, abs=1e-12), f"seed={6000 + seed} i={i}"
        assert buf.hypervolume() == pytest.approx(after, abs=1e-12), f"seed={6000 + seed} i={i}"
        seen = stream[: i + 1]
        useful = seen[np.all(np.where(maximize, seen > ref, seen < ref), axis=1)]
        front = {tuple(q) for q in useful[nondominated(useful, maximize=maximize)]} if len(useful) else set()
        assert {tuple(q) for q in buf.points} == front, f"seed={6000 + seed} i={i}"
        assert len(buf) == len(front)  # one copy of each front point
    assert all(stream[s].tolist() == q for s, q in zip(buf.steps, buf.points.tolist()))


def _plain_json_types(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain_json_types(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain_json_types(v) for v in x)
    return x is None or type(x) in (bool, int, float, str)


@pytest.mark.parametrize("max_size", [None, 4])
def test_buffer_state_round_trip_continues_identically(max_size):
    rng = np.random.default_rng(8)
    stream = rng.random((60, 3))
    maximize = [True, False, True]
    ref = [0.0, 1.0, 0.0]
    straight = ParetoBuffer(ref, maximize=maximize, max_size=max_size)
    deltas = [straight.add(p, i) for i, p in enumerate(stream[:30])]
    state = straight.state_dict()
    assert _plain_json_types(state) and state["format_version"] == 1
    resumed = ParetoBuffer(ref, maximize=maximize, max_size=max_size)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert resumed.state_dict() == state
    for i, p in enumerate(stream[30:], start=30):
        deltas.append(straight.add(p, i))
        assert resumed.add(p, i) == deltas[-1]
    assert resumed.state_dict() == straight.state_dict()
    np.testing.assert_array_equal(resumed.points, straight.points)
    assert sum(d > 0 for d in deltas) > 5  # the buffer was exercised


def test_buffer_ref_none_first_point_becomes_reference():
    buf = ParetoBuffer(None, maximize=[True, False])
    assert buf.ref is None and buf.maximize is None and buf.hypervolume() == 0.0
    empty_state = json.loads(json.dumps(buf.state_dict()))
    assert empty_state["ref"] is None and empty_state["maximize"] == [True, False]
    assert buf.add([0.2, 900.0], step=0) == 0.0
    assert len(buf) == 0 and buf.ref.tolist() == [0.2, 900.0] and buf.maximize.tolist() == [True, False]
    assert buf.add([0.2, 800.0], step=1) == 0.0  # equal to ref in accuracy: no volume
    assert buf.add([0.5, 700.0], step=2) == pytest.approx(0.3 * 200.0)
    assert buf.steps == [2]
    # a state saved before the first point restores into a fresh ref=None buffer and continues the same way
    again = ParetoBuffer(None, maximize=[True, False])
    again.load_state_dict(empty_state)
    assert [again.add(p, i) for i, p in enumerate([[0.2, 900.0], [0.2, 800.0], [0.5, 700.0]])] == [0.0, 0.0, 60.0]
    # a ref=None buffer takes the saved reference point
    fresh = ParetoBuffer(None, maximize=[True, False])
    fresh.load_state_dict(buf.state_dict())
    assert fresh.ref.tolist() == [0.2, 900.0] and fresh.steps == [2]


def test_buffer_max_size_drops_the_smallest_contributor():
    buf = ParetoBuffer([0.0, 0.0], max_size=3)
    for i, p in enumerate([[1.0, 5.0], [2.0, 4.0], [4.0, 2.0]]):
        buf.add(p, i)
    candidate = np.vstack([buf.points, [3.0, 3.5]])
    exclusive = [hypervolume(candidate, [0, 0]) - hypervolume(np.delete(candidate, i, 0), [0, 0]) for i in range(4)]
    assert exclusive == pytest.approx([1.0, 0.5, 2.0, 1.5])  # worked out by hand: (2, 4) contributes least
    assert buf.add([3.0, 3.5], step=3) == pytest.approx(1.5)  # the box (2, 3] × (2, 3.5]
    assert buf.points.tolist() == [[1.0, 5.0], [4.0, 2.0], [3.0, 3.5]] and buf.steps == [0, 2, 3]
    # the new point itself is dropped when it contributes least; add still returns its ΔHV
    tiny = ParetoBuffer([0.0, 0.0], max_size=2)
    tiny.add([1.0, 5.0], 0), tiny.add([5.0, 1.0], 1)
    assert tiny.add([2.0, 1.05], 2) == pytest.approx(0.05)  # exclusive: 3.95, 3.0, 0.05
    assert tiny.points.tolist() == [[1.0, 5.0], [5.0, 1.0]] and tiny.steps == [0, 1]
    # exact ties: the earliest-added member goes
    tie = ParetoBuffer([0.0, 0.0], max_size=2)
    for i, p in enumerate([[1.0, 3.0], [3.0, 1.0], [2.0, 2.0]]):  # exclusive contributions 1, 1, 1
        tie.add(p, i)
    assert tie.steps == [1, 2]


def test_buffer_views_are_copies():
    ref = np.array([0.0, 0.0])
    buf = ParetoBuffer(ref)
    ref[0] = 10.0  # the caller's array changes afterwards: the buffer keeps its own copy
    point = np.array([1.0, 1.0])
    buf.add(point, 0)
    point[0] = 5.0
    buf.points[0, 0] = 7.0
    buf.steps.append(99)
    buf.ref[0] = 3.0
    assert buf.points.tolist() == [[1.0, 1.0]] and buf.steps == [0] and buf.ref.tolist() == [0.0, 0.0]


def test_buffer_errors_name_the_problem():
    buf = ParetoBuffer([0.0, 0.0])
    with pytest.raises(ValueError, match="'point' contains NaN"):
        buf.add([np.nan, 1.0], 0)
    with pytest.raises(ValueError, match="'point' must have length 2, but it has length 3"):
        buf.add([1.0, 1.0, 1.0], 0)
    with pytest.raises(ValueError, match="'step' must be an integer"):
        buf.add([1.0, 1.0], 1.5)
    with pytest.raises(ValueError, match="'max_size' must be a positive integer or None"):
        ParetoBuffer([0.0, 0.0], max_size=0)
    with pytest.raises(ValueError, match="'ref' contains NaN"):
        ParetoBuffer([np.nan, 0.0])
    with pytest.raises(ValueError, match="'maximize' must be one bool or 2 bools"):
        ParetoBuffer([0.0, 0.0], maximize=[True, True, True])
    with pytest.raises(ValueError, match="'point' must have length 3 \\(one value per entry of 'maximize'\\)"):
        ParetoBuffer(None, maximize=[True, False, True]).add([1.0, 1.0], 0)
    with pytest.raises(ValueError, match="'point' contains NaN"):
        ParetoBuffer(None).add([np.nan, 1.0], 0)


def test_buffer_load_state_dict_validates():
    buf = ParetoBuffer([0.0, 0.0])
    buf.add([1.0, 2.0], 0), buf.add([2.0, 1.0], 1)
    good = buf.state_dict()

    def load(into=None, **changes):
        state = {**good, **changes}
        buffer = ParetoBuffer([0.0, 0.0]) if into is None else into
        buffer.load_state_dict({k: v for k, v in state.items() if v != "DROP"})

    with pytest.raises(ValueError, match=r"missing keys \['steps'\]"):
        load(steps="DROP")
    with pytest.raises(ValueError, match=r"unknown keys \['extra'\]"):
        load(extra=1)
    with pytest.raises(ValueError, match="format_version 2"):
        load(format_version=2)
    with pytest.raises(ValueError, match="state has 3 objectives .* this buffer has 2"):
        load(ref=[0.0, 0.0, 0.0], points=[[1.0, 1.0, 1.0]], steps=[0], maximize=[True] * 3)
    with pytest.raises(ValueError, match="ref=\\[0.5, 0.0\\], but this buffer was built with ref=\\[0.0, 0.0\\]"):
        load(ref=[0.5, 0.0])
    with pytest.raises(ValueError, match="'state.points' must have 2 columns"):
        load(points=[[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]])
    with pytest.raises(ValueError, match="2 points but 1 steps"):
        load(steps=[0])
    with pytest.raises(ValueError, match="maximize=\\[True, False\\].*same directions"):
        load(maximize=[True, False])
    with pytest.raises(ValueError, match="max_size=3.*max_size=None"):
        load(max_size=3)
    with pytest.raises(ValueError, match="dominated or duplicate points"):
        load(points=[[1.0, 2.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match="do not strictly dominate its ref"):
        load(points=[[1.0, 2.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match="must be a dict"):
        ParetoBuffer([0.0, 0.0]).load_state_dict([1, 2])
    with pytest.raises(ValueError, match="3 objectives, but this buffer's 'maximize' has 2"):
        load(ParetoBuffer(None, maximize=[True, True]), ref=[0.0, 0.0, 0.0], points=[], steps=[],
             maximize=[True] * 3)
    load(ParetoBuffer(None))  # a ref=None buffer accepts any reference point


# -- docs and packaging -------------------------------------------------------------------------------------------
def test_doctests():
    result = doctest.testmod(pareto, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


def test_core_is_framework_free():
    code = "import sys, moalign.pareto; bad = {'torch', 'trl', 'transformers'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_benchmark_script_runs_at_a_tiny_size(capsys):
    spec = importlib.util.spec_from_file_location("bench_pareto", ROOT / "benchmarks" / "bench_pareto.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--n", "50", "--repeats", "6", "--warmup", "1", "--points", "3"])
    assert [r["method"] for r in result["rows"]][0] == "hv_contribution"
    assert all(r["max_abs_diff"] < 1e-12 and math.isfinite(r["median_ms"]) for r in result["rows"])
    assert "| hv_contribution |" in capsys.readouterr().out


def test_benchmark_script_times_the_hypervolume_strategy_per_step(capsys):
    """--strategy-ks (issue 29 item 4): the strategy's own ΔHV work per RL step at several K."""
    spec = importlib.util.spec_from_file_location("bench_pareto", ROOT / "benchmarks" / "bench_pareto.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--strategy-ks", "3", "8", "--steps", "12", "--batch", "8", "--runs", "2"])
    rows = result["strategy_rows"]
    assert [r["k"] for r in rows] == [3, 8] and all(r["steps"] == 12 and r["runs"] == 2 for r in rows)
    assert all(math.isfinite(r["median_ms"]) and r["median_ms"] >= 0 for r in rows)
    assert all(1 <= r["final_buffer_size"] <= 12 for r in rows)  # the buffer holds the non-dominated batch means
    assert "| 8 |" in capsys.readouterr().out

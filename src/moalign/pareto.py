"""Pareto tooling: hypervolume, hypervolume contribution, non-dominated filtering, normalisation, a Pareto buffer.

Exact hypervolumes come from moocore [1]_ (C implementations of the dimension-sweep, HV3D+/HV4D+ and recursive
algorithms [2]_ [3]_). This module only prepares the inputs: it checks them, flips the objectives that are
maximised (moocore minimises by default and spells the option ``maximise``; that spelling stays inside this
module), drops the points that cannot contribute, and reduces a hypervolume contribution to one small hypervolume.

Conventions shared by every function:

- ``points`` is an array-like of shape ``(n, k)``: one row per point, one column per objective. It is positional;
  the options are keyword-only.
- ``maximize`` is one bool for all objectives or ``k`` bools, one per objective (mixed directions are allowed).
- ``ref`` is the reference point: ``k`` numbers, or one number used for every objective.
- A point contributes only if it *strictly* dominates ``ref`` (it is better than ``ref`` in every objective);
  the others are dropped before moocore is called, so they add nothing and never raise.
- NaN or infinite values raise :class:`ValueError` naming the argument. Inputs are never modified.

References
----------
.. [1] M. López-Ibáñez, F. Rooney, L. Schäpermeier. "moocore: Core Algorithms for Multi-Objective Optimization"
   (Python package). https://multi-objective.github.io/moocore/python/ (moalign pins ``moocore>=0.3.2,<0.4``).
.. [2] C. M. Fonseca, L. Paquete, M. López-Ibáñez. "An improved dimension-sweep algorithm for the hypervolume
   indicator". IEEE CEC 2006, 1157–1163.
.. [3] A. P. Guerreiro, C. M. Fonseca. "Computing and updating hypervolume contributions in up to four
   dimensions". IEEE Transactions on Evolutionary Computation 22(3), 2018, 449–463.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import moocore
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ParetoBuffer", "hv_contribution", "hypervolume", "igd_plus", "nondominated", "normalize"]

#: The most objectives ``moocore.hypervolume`` accepts (``HV_DIMENSION_MAX`` in moocore 0.3).
_HV_MAX_OBJECTIVES = 31

Maximize = bool | Sequence[bool]


# -- input checks: small functions that name the argument they check (as moocore's ``_utils.py``) -------------
def _check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or ±inf, naming ``name`` and (for a matrix) the first offending row."""
    if np.isfinite(arr).all():
        return
    if arr.ndim == 2:
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(
            f"{name!r} contains NaN or infinite values in {bad.size} row(s), e.g. row {bad[0]}: "
            f"{arr[bad[0]].tolist()}; give finite numbers (drop those rows, e.g. "
            f"{name}[np.isfinite({name}).all(axis=1)], or repair them)"
        )
    raise ValueError(f"{name!r} contains NaN or infinite values: {arr.tolist()}; give finite numbers")


def _as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # ragged rows, strings, None, ...
        raise ValueError(f"{name!r} must be numbers in a regular array, but numpy cannot read it: {exc}") from None


def _array_2d_of_points(x: ArrayLike, name: str, k: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 matrix ``(n, k)``; an empty input becomes ``(0, k)``.

    No copy is made when ``x`` already is a float64 array. ``k`` (when given) is the number of objectives the
    other arguments imply.
    """
    arr = _as_float_array(x, name)
    if arr.size == 0 and arr.ndim <= 2 and (arr.ndim < 2 or arr.shape[1] in (0, k)):
        return np.zeros((0, k or 0))
    if arr.ndim != 2:
        raise ValueError(
            f"{name!r} must be a 2-D array of shape (n, k), one row per point and one column per objective, "
            f"but it has shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name!r} has points with zero objectives; give at least one column")
    if k is not None and arr.shape[1] != k:
        raise ValueError(
            f"{name!r} must have {k} columns (one per objective), but it has {arr.shape[1]}; "
            "give every point the same objectives, in the same order"
        )
    _check_finite(arr, name)
    return arr


def _array_1d_of_length_n(x: ArrayLike, n: int | None, name: str, *, broadcast: bool = False) -> np.ndarray:
    """``x`` as a finite float64 vector of length ``n`` (any length ≥ 1 when ``n`` is None).

    With ``broadcast=True`` a single number is repeated ``n`` times (as moocore does for ``ref``).
    """
    arr = _as_float_array(x, name)
    if arr.ndim > 1:
        raise ValueError(f"{name!r} must be a 1-D sequence of numbers, but it has shape {arr.shape}")
    arr = arr.reshape(-1)
    if n is None:
        if arr.size == 0:
            raise ValueError(f"{name!r} is empty; give one value per objective")
    elif arr.size == 1 and broadcast and n != 1:
        arr = np.full(n, arr[0])
    elif arr.size != n:
        raise ValueError(f"{name!r} must have length {n}, but it has length {arr.size}")
    _check_finite(arr, name)
    return arr


def _parse_maximize(maximize: Maximize, k: int) -> np.ndarray:
    """``maximize`` (one bool, or one bool per objective) as a bool vector of length ``k``."""
    values = [maximize] if isinstance(maximize, (bool, np.bool_)) else maximize
    try:
        values = list(values)  # type: ignore[arg-type]
    except TypeError:
        values = None
    if values is None or not all(isinstance(v, (bool, np.bool_)) for v in values):
        raise ValueError(
            f"'maximize' must be one bool or a sequence of {k} bools (one per objective), but got {maximize!r}"
        )
    if len(values) == 1:
        return np.full(k, bool(values[0]))
    if len(values) != k:
        raise ValueError(
            f"'maximize' must be one bool or {k} bools (one per objective), but it has length {len(values)}"
        )
    return np.array(values, dtype=bool)


def _check_dimension(k: int) -> None:
    if k > _HV_MAX_OBJECTIVES:
        raise ValueError(f"moocore computes hypervolumes for at most {_HV_MAX_OBJECTIVES} objectives, but got {k}")


def _signs(maximize: np.ndarray) -> np.ndarray:
    """Multiplier that maps each objective to minimisation space: −1 where maximised, +1 where minimised."""
    return np.where(maximize, -1.0, 1.0)


# -- the computations, in minimisation space ----------------------------------------------------------------
def _hv_min(pm: np.ndarray, rm: np.ndarray) -> float:
    """HV of the rows of ``pm`` (minimised) w.r.t. ``rm``; rows that do not strictly dominate ``rm`` are dropped."""
    pm = pm[(pm < rm).all(axis=1)]
    if len(pm) == 0:
        return 0.0
    return float(moocore.hypervolume(pm, ref=rm))


def _contribution_min(p: np.ndarray, xt: np.ndarray, r: np.ndarray) -> float:
    """ΔHV of point ``p`` (k,) to the set whose columns are ``xt`` (k, n), all minimised, reference ``r``.

    ΔHV(p) = vol([p, r]) − HV({max(q, p) : q ∈ S}, r): each q is projected onto p's box. A q that is at least as
    good as p in all objectives but one (j) covers the whole slab ``x_j ≥ q_j`` of the box, so the uncovered part
    lies below the raised reference ``s`` (``s_j = min(r_j, q_j)`` over such q) and ΔHV(p) = vol([p, s]) −
    HV({max(q, p) < s}, s). Only projections that strictly dominate ``s`` remain, usually a handful, so the
    hypervolume moocore computes is tiny. The tests run on (k, n) arrays without compacting them until the end:
    numpy is much faster there than with row-wise reductions or boolean indexing of (n, k) arrays with small k.
    """
    if not (p < r).all():
        return 0.0
    k, n = xt.shape
    if n == 0:
        return math.prod((r - p).tolist())
    better_or_equal = xt <= p[:, None]  # (k, n)
    count = np.add.reduce(better_or_equal.view(np.int8), axis=0)  # (n,) objectives where q is at least as good
    if (count == k).any():
        return 0.0  # p is weakly dominated by a member of the set
    slab_cap = np.where(better_or_equal | (count != k - 1), np.inf, xt)  # (k, n): a slab's one worse value
    s = np.minimum(r, slab_cap.min(axis=1))  # raised reference point, still > p
    projected = np.maximum(xt, p[:, None])  # (k, n)
    relevant = np.flatnonzero((projected < s[:, None]).all(axis=0))
    box = math.prod((s - p).tolist())
    if relevant.size == 0:
        return box
    covered = float(moocore.hypervolume(np.ascontiguousarray(projected[:, relevant].T), ref=s))
    return max(box - covered, 0.0)  # clip float noise: ΔHV is never negative


# -- public functions -----------------------------------------------------------------------------------------
def hypervolume(points: ArrayLike, /, ref: ArrayLike, *, maximize: Maximize = True) -> float:
    """Exact hypervolume of a set of points with respect to a reference point.

    The hypervolume is the volume of the region dominated by ``points`` and bounded by ``ref``. It is computed by
    ``moocore.hypervolume`` [1]_ after the maximised objectives are negated and the points that do not strictly
    dominate ``ref`` are dropped.

    Parameters
    ----------
    points : array-like, shape (n, k)
        One row per point. May be empty (then the result is 0.0). Duplicates and dominated points are allowed
        and add nothing.
    ref : array-like, shape (k,) or scalar
        Reference point: the worst value of each objective that still counts. A scalar is used for every
        objective.
    maximize : bool or sequence of k bools, default True
        Whether each objective is maximised (True) or minimised (False).

    Returns
    -------
    float
        The hypervolume, ≥ 0.

    Raises
    ------
    ValueError
        If ``points`` is not (n, k), ``ref`` or ``maximize`` have the wrong length, or any value is NaN or
        infinite.

    See Also
    --------
    hv_contribution : what one point adds to a set.
    moocore.hypervolume : the underlying implementation (minimisation by default).

    Notes
    -----
    moocore uses O(n log n) algorithms for k = 2 and 3 (HV3D+ [3]_), O(n²) for k = 4 (HV4D+) and, for k ≥ 5,
    inclusion–exclusion for small sets or a recursive dimension sweep [2]_.

    Examples
    --------
    Two points, both objectives maximised, reference point at the origin:

    >>> hypervolume([[1.0, 2.0], [2.0, 1.0]], ref=[0.0, 0.0])
    3.0

    Mixed directions: maximise the first objective, minimise the second (e.g. a length in tokens):

    >>> hypervolume([[1.0, 200.0]], ref=[0.0, 1000.0], maximize=[True, False])
    800.0

    A point that does not strictly dominate the reference point adds nothing:

    >>> hypervolume([[-1.0, 5.0], [2.0, 0.0]], ref=[0.0, 0.0])
    0.0
    """
    pts = _array_2d_of_points(points, "points")
    if pts.shape[1] == 0:  # empty set: k comes from ref
        k = _array_1d_of_length_n(ref, None, "ref").size
        pts = pts.reshape(0, k)
    k = pts.shape[1]
    r = _array_1d_of_length_n(ref, k, "ref", broadcast=True)
    sign = _signs(_parse_maximize(maximize, k))
    _check_dimension(k)
    return _hv_min(pts * sign, r * sign)


def hv_contribution(point: ArrayLike, /, points: ArrayLike, ref: ArrayLike, *, maximize: Maximize = True) -> float:
    r"""Hypervolume contribution of one point to a set: ``HV(points ∪ {point}) − HV(points)``.

    Exact, and much cheaper than two hypervolumes: the set is projected onto the box that ``point`` dominates,
    the reference point is raised past the parts of that box already covered, and moocore [1]_ computes the
    hypervolume of the few projections that remain (see Notes).

    Parameters
    ----------
    point : array-like, shape (k,)
        The new point.
    points : array-like, shape (n, k)
        The current set; may be empty, may contain dominated points and duplicates.
    ref : array-like, shape (k,) or scalar
        Reference point (a scalar is used for every objective).
    maximize : bool or sequence of k bools, default True
        Whether each objective is maximised (True) or minimised (False).

    Returns
    -------
    float
        ΔHV ≥ 0. It is 0.0 when ``point`` is weakly dominated by a member of ``points`` (duplicates included) or
        does not strictly dominate ``ref``. Negative float noise is clipped to 0.0.

    Raises
    ------
    ValueError
        If the shapes disagree (``point`` fixes k) or any value is NaN or infinite.

    See Also
    --------
    hypervolume
    ParetoBuffer.add : the same quantity for a buffer of non-dominated points.

    Notes
    -----
    In maximisation space, with B(p) = [ref, p] the box p dominates,

    .. math:: \Delta HV(p) = \mathrm{vol}(B(p)) - HV(\{\min(q, p) : q \in S\}, \mathrm{ref}),

    because the part of B(p) that S already covers is the union of the boxes of the projections min(q, p).
    A q that is at least as good as p in all objectives but one, l, covers the slab of B(p) below q_l, so
    the reference point can be raised to s_l = max(ref_l, q_l) over such q; only projections that strictly
    dominate s then matter. For a buffer of mutually non-dominated points near the new point this leaves a
    handful of points, so the cost is a few linear scans of the set (numpy) plus a tiny hypervolume
    (``benchmarks/bench_pareto.py``: about 0.05 ms against 1,000 points in 3 objectives on two CPU cores, versus
    0.2–0.3 ms for two full hypervolumes; docs/BENCHMARKS.md). Reducing ``points`` to its non-dominated subset
    first is not needed (moocore ignores dominated points) and would cost more than it saves.
    ``moocore.hv_contributions`` is not used: it gives each point's contribution *within* a set, where points
    dominated by the new point are ignored, which differs when the new point dominates members of the set.

    Examples
    --------
    The point (2, 2) adds the square [1, 2] × [1, 2] to the staircase of (1, 3) and (3, 1):

    >>> hv_contribution([2.0, 2.0], [[1.0, 3.0], [3.0, 1.0]], ref=[0.0, 0.0])
    1.0

    A dominated point, or one that does not dominate the reference point, adds nothing:

    >>> hv_contribution([0.5, 0.5], [[1.0, 1.0]], ref=[0.0, 0.0])
    0.0
    >>> hv_contribution([3.0, -1.0], [[1.0, 1.0]], ref=[0.0, 0.0])
    0.0
    """
    p = _array_1d_of_length_n(point, None, "point")
    k = p.size
    pts = _array_2d_of_points(points, "points", k)
    r = _array_1d_of_length_n(ref, k, "ref", broadcast=True)
    sign = _signs(_parse_maximize(maximize, k))
    _check_dimension(k)
    xt = np.multiply(pts.T, sign[:, None], order="C")  # (k, n), minimisation space
    return _contribution_min(p * sign, xt, r * sign)


def nondominated(points: ArrayLike, /, *, maximize: Maximize = True) -> np.ndarray:
    """Boolean mask of the points that no other point dominates.

    ``q`` dominates ``p`` when ``q`` is at least as good in every objective and strictly better in one. Exact
    duplicates do not dominate each other, so **every copy of a non-dominated point is kept**
    (``moocore.is_nondominated(..., keep_weakly=True)`` [1]_). To keep one copy, filter the result further,
    e.g. with ``np.unique(points[mask], axis=0)``.

    Parameters
    ----------
    points : array-like, shape (n, k)
        One row per point; may be empty.
    maximize : bool or sequence of k bools, default True
        Whether each objective is maximised (True) or minimised (False).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True for the non-dominated points.

    Examples
    --------
    >>> nondominated([[1.0, 2.0], [2.0, 1.0], [0.5, 0.5], [1.0, 2.0]]).tolist()
    [True, True, False, True]
    >>> nondominated([[1.0, 200.0], [1.0, 100.0]], maximize=[True, False]).tolist()  # shorter is better
    [False, True]
    """
    pts = _array_2d_of_points(points, "points")
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    sign = _signs(_parse_maximize(maximize, pts.shape[1]))
    return np.asarray(moocore.is_nondominated(pts * sign, keep_weakly=True), dtype=bool)


def igd_plus(points: ArrayLike, /, reference_front: ArrayLike, *, maximize: Maximize = True) -> float:
    """IGD+ (inverted generational distance plus) of ``points`` against ``reference_front``; lower is better, 0 when
    ``points`` weakly dominate every reference point.

    For each reference point ``z`` the distance to the nearest point ``a`` counts only the objectives in which ``a``
    is worse than ``z``: ``d+(z, a) = sqrt(sum_i max(z_i - a_i, 0)^2)`` when maximising (``a_i - z_i`` when
    minimising), and IGD+ is the mean over ``z`` of ``min_a d+(z, a)``. Unlike IGD it is weakly Pareto-compliant [4]_.

    Parameters
    ----------
    points : array-like, shape (n, k)
        The approximation set (e.g. one run's front); at least one point.
    reference_front : array-like, shape (m, k)
        The reference set (e.g. the non-dominated union of every run's front); at least one point.
    maximize : bool or sequence of k bools, default True

    Notes
    -----
    ``O(n m k)`` time and memory (one broadcast difference).

    References
    ----------
    .. [4] H. Ishibuchi, H. Masuda, Y. Tanigaki, Y. Nojima. "Modified distance calculation in generational distance
       and inverted generational distance". EMO 2015, LNCS 9019, 110–125.

    Examples
    --------
    >>> igd_plus([[0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]])  # each reference point is 0.5 ahead in one objective
    0.5
    >>> igd_plus([[1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]])
    0.0
    """
    ref = _array_2d_of_points(reference_front, "reference_front")
    pts = _array_2d_of_points(points, "points", ref.shape[1] if len(ref) else None)
    if len(pts) == 0 or len(ref) == 0:
        raise ValueError(f"igd_plus needs at least one point in 'points' ({len(pts)}) and in 'reference_front' "
                         f"({len(ref)})")
    sign = _signs(_parse_maximize(maximize, ref.shape[1]))  # minimisation space: a is worse where a_i > z_i
    shortfall = np.maximum(pts[None, :, :] * sign - ref[:, None, :] * sign, 0.0)  # (m, n, k)
    return float(np.sqrt((shortfall**2).sum(axis=2)).min(axis=1).mean())


def normalize(points: ArrayLike, /, lower: ArrayLike, upper: ArrayLike, *, maximize: Maximize = True) -> np.ndarray:
    """Map each objective to [0, 1] with 1 = better; afterwards every objective is maximised.

    Maximised objectives become ``(x − lower) / (upper − lower)`` and minimised ones
    ``(upper − x) / (upper − lower)``. Values outside ``[lower, upper]`` map outside [0, 1] (no clipping).

    Parameters
    ----------
    points : array-like, shape (n, k) or (k,)
        Points in the original units; a single point (k,) gives a single point back.
    lower, upper : array-like, shape (k,) or scalar
        The worst and best bounds of each objective, in the original units (``lower < upper`` whatever the
        direction).
    maximize : bool or sequence of k bools, default True
        Direction of each objective in the original units.

    Returns
    -------
    numpy.ndarray
        A new float array of the same shape as ``points``, to be used with ``maximize=True``.

    Raises
    ------
    ValueError
        If ``upper <= lower`` for some objective (the message lists their indices), or on NaN/inf or bad shapes.

    Examples
    --------
    The normalised space of docs/design.md for HV over (accuracy, length in tokens, clarity) with
    ``max_completion_length = 2048``: accuracy and clarity as they are, length as ``1 − length / 2048``, reference
    point at the origin.

    >>> evals = [[0.5, 512.0, 0.25], [0.75, 1024.0, 0.5]]
    >>> space = normalize(evals, lower=[0, 0, 0], upper=[1, 2048, 1], maximize=[True, False, True])
    >>> space.tolist()
    [[0.5, 0.75, 0.25], [0.75, 0.5, 0.5]]
    >>> hypervolume(space, ref=[0.0, 0.0, 0.0])
    0.21875
    """
    arr = _as_float_array(points, "points")
    single = arr.ndim == 1 and arr.size > 0
    pts = _array_2d_of_points(arr[None, :] if single else arr, "points")
    k = pts.shape[1]
    if k == 0:
        k = _array_1d_of_length_n(lower, None, "lower").size
        pts = pts.reshape(0, k)
    lo = _array_1d_of_length_n(lower, k, "lower", broadcast=True)
    hi = _array_1d_of_length_n(upper, k, "upper", broadcast=True)
    bad = np.flatnonzero(hi <= lo)
    if bad.size:
        raise ValueError(
            f"'upper' must be greater than 'lower' for every objective, but it is not for objective(s) "
            f"{bad.tolist()} (lower={lo[bad].tolist()}, upper={hi[bad].tolist()}); give the bounds in the "
            "original units, lower < upper, whatever the direction"
        )
    mx = _parse_maximize(maximize, k)
    out = np.where(mx, (pts - lo) / (hi - lo), (hi - pts) / (hi - lo))
    return out[0] if single else out


# -- the buffer ------------------------------------------------------------------------------------------------
class ParetoBuffer:
    """The non-dominated points seen so far, each with the step it was seen at.

    This is the Pareto buffer of the hypervolume-guided weighting of *Learning to Optimize Multi-Objective
    Alignment Through Dynamic Reward Weighting* (arXiv 2509.11452, §4, Algorithm 1): every new point's
    hypervolume contribution ΔHV drives the meta-reward, and a point with ΔHV > 0 joins the buffer.

    Parameters
    ----------
    ref : array-like of shape (k,), or None
        Reference point. ``None`` means *the first point added becomes the reference point* (the paper's
        reference point is the initial policy's point): that first :meth:`add` returns 0.0 and leaves the
        buffer empty, since no point can dominate itself strictly.
    maximize : bool or sequence of k bools, default True
        Direction of each objective.
    max_size : int or None, default None
        Optional cap on the number of points. The buffer only holds mutually non-dominated points, but their
        number can still grow (a front in k ≥ 2 objectives has no size limit). When an add makes it exceed
        ``max_size``, the member with the smallest exclusive contribution ``HV(buffer) − HV(buffer − member)``
        is dropped (the earliest-added one on exact ties); this may be the point just added.

    Attributes
    ----------
    points : numpy.ndarray, shape (n, k)
        A copy of the buffer's points, in insertion order.
    steps : list of int
        The step of each point.
    ref : numpy.ndarray or None
        A copy of the reference point (None until known).
    maximize : numpy.ndarray of bool or None
        The direction of each objective (None until the reference point, and so k, is known).

    Examples
    --------
    >>> buf = ParetoBuffer([0.0, 0.0])
    >>> buf.add([1.0, 1.0], step=0), buf.add([2.0, 0.5], step=5), buf.add([0.5, 0.5], step=10)
    (1.0, 0.5, 0.0)
    >>> buf.steps, buf.hypervolume()
    ([0, 5], 1.5)
    >>> buf.add([2.0, 2.0], step=15)  # dominates both: they leave the buffer
    2.5
    >>> buf.points.tolist(), buf.steps
    ([[2.0, 2.0]], [15])

    With ``ref=None`` the first point is the reference point:

    >>> buf = ParetoBuffer(None, maximize=[True, False])  # e.g. (accuracy, length in tokens)
    >>> buf.add([0.25, 800.0], step=0), len(buf), buf.ref.tolist()
    (0.0, 0, [0.25, 800.0])
    >>> buf.add([0.5, 600.0], step=5)
    50.0
    """

    FORMAT_VERSION = 1
    _STATE_KEYS = frozenset({"format_version", "ref", "maximize", "max_size", "points", "steps"})

    def __init__(self, ref: ArrayLike | None, *, maximize: Maximize = True, max_size: int | None = None):
        if max_size is not None and (
            isinstance(max_size, (bool, np.bool_)) or not isinstance(max_size, (int, np.integer)) or max_size < 1
        ):
            raise ValueError(f"'max_size' must be a positive integer or None, but got {max_size!r}")
        self._max_size = None if max_size is None else int(max_size)
        # The configuration given here; load_state_dict checks a saved state against it.
        self._config_ref = None if ref is None else _array_1d_of_length_n(ref, None, "ref")
        k = None if self._config_ref is None else self._config_ref.size
        self._config_maximize = self._normalize_maximize(maximize, k)
        self._reset(self._config_ref)

    @staticmethod
    def _normalize_maximize(maximize: Maximize, k: int | None) -> bool | list[bool]:
        """Validate ``maximize``: one bool stays a bool, a sequence becomes a list of bools (k of them if known)."""
        if isinstance(maximize, (bool, np.bool_)):
            return bool(maximize)
        n = k if k is not None else (len(maximize) if hasattr(maximize, "__len__") else 1)
        return _parse_maximize(maximize, n).tolist()

    def _reset(self, ref: np.ndarray | None) -> None:
        self._ref = None if ref is None else ref.copy()
        if ref is None:
            self._maximize = None
            self._sign = None
            self._points = np.zeros((0, 0))
        else:
            self._maximize = _parse_maximize(self._config_maximize, ref.size)
            self._sign = _signs(self._maximize)
            self._points = np.zeros((0, ref.size))
        self._steps: list[int] = []

    # -- read-only views -------------------------------------------------------------------------------------
    @property
    def points(self) -> np.ndarray:
        return self._points.copy()

    @property
    def steps(self) -> list[int]:
        return list(self._steps)

    @property
    def ref(self) -> np.ndarray | None:
        return None if self._ref is None else self._ref.copy()

    @property
    def maximize(self) -> np.ndarray | None:
        return None if self._maximize is None else self._maximize.copy()

    @property
    def max_size(self) -> int | None:
        return self._max_size

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        ref = None if self._ref is None else self._ref.tolist()
        mx = self._config_maximize if self._maximize is None else self._maximize.tolist()
        return f"ParetoBuffer(ref={ref}, maximize={mx}, max_size={self._max_size}, size={len(self)})"

    # -- updates ---------------------------------------------------------------------------------------------
    def hypervolume(self) -> float:
        """Hypervolume of the buffer's points (0.0 while empty or before the reference point is known)."""
        if self._ref is None or not len(self._points):
            return 0.0
        return _hv_min(self._points * self._sign, self._ref * self._sign)

    def add(self, point: ArrayLike, step: int) -> float:
        """Offer a point; return its hypervolume contribution ΔHV with respect to the buffer before the call.

        If ΔHV > 0 the point joins the buffer and the members it dominates leave it (then ``max_size`` may drop
        the member with the smallest contribution). Otherwise (dominated, a duplicate, or not strictly
        dominating ``ref``) the buffer is unchanged and 0.0 is returned. With ``ref=None`` the first point
        becomes the reference point and 0.0 is returned.

        Parameters
        ----------
        point : array-like, shape (k,)
            The new point, in the buffer's units and directions.
        step : int
            The step the point was measured at, stored alongside it.

        Raises
        ------
        ValueError
            If ``point`` has NaN/inf values or the wrong length, or ``step`` is not an integer.
        """
        p = _array_1d_of_length_n(point, None if self._ref is None else self._ref.size, "point")
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise ValueError(f"'step' must be an integer (the step the point was measured at), but got {step!r}")
        if self._ref is None:
            if isinstance(self._config_maximize, list) and len(self._config_maximize) != p.size:
                raise ValueError(
                    f"'point' must have length {len(self._config_maximize)} (one value per entry of 'maximize'), "
                    f"but it has length {p.size}"
                )
            _check_dimension(p.size)
            self._reset(p)
            return 0.0
        pm, rm = p * self._sign, self._ref * self._sign
        xm = self._points * self._sign  # (n, k), minimisation space
        delta = _contribution_min(pm, np.ascontiguousarray(xm.T), rm)
        if delta <= 0.0:
            return 0.0
        keep = ~(xm >= pm).all(axis=1)  # drop the members the new point weakly dominates
        self._points = np.vstack([self._points[keep], p[None, :]])
        self._steps = [s for s, kept in zip(self._steps, keep.tolist()) if kept] + [int(step)]
        if self._max_size is not None and len(self._steps) > self._max_size:
            self._drop_smallest_contributor()
        return float(delta)

    def _drop_smallest_contributor(self) -> None:
        # Members are mutually non-dominated and distinct, so moocore's contributions are the exact exclusive
        # ones, HV(buffer) − HV(buffer − member). The buffer has ≥ 2 points here, hence k ≥ 2.
        contributions = moocore.hv_contributions(self._points * self._sign, ref=self._ref * self._sign)
        i = int(np.argmin(contributions))  # first minimum: the earliest-added on ties
        self._points = np.delete(self._points, i, axis=0)
        del self._steps[i]

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole buffer as a JSON-serialisable dict (plain lists, floats, bools and ints).

        Keys: ``format_version`` (currently 1), ``ref`` (list or None), ``maximize`` (list of k bools, or the
        constructor's value while ``ref`` is unknown), ``max_size``, ``points`` (list of lists), ``steps``.
        """
        return {
            "format_version": self.FORMAT_VERSION,
            "ref": None if self._ref is None else [float(v) for v in self._ref],
            "maximize": self._config_maximize if self._maximize is None else [bool(m) for m in self._maximize],
            "max_size": self._max_size,
            "points": [[float(v) for v in row] for row in self._points],
            "steps": [int(s) for s in self._steps],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the buffer then continues exactly as the saved one would.

        The state must come from a buffer with the same configuration: the same ``maximize`` and ``max_size``,
        and, when this buffer was given a ``ref``, the same reference point. A buffer built with ``ref=None``
        takes the saved reference point.

        Raises
        ------
        ValueError
            Naming the problem: missing or unknown keys, an unsupported ``format_version``, a configuration that
            differs from this buffer's, points of the wrong length, points and steps of different lengths, or
            points that are not mutually non-dominated or do not strictly dominate ``ref``.
        """
        if not isinstance(state, dict):
            raise ValueError(f"ParetoBuffer state must be a dict (from state_dict()), but got {type(state).__name__}")
        missing, unknown = self._STATE_KEYS - set(state), set(state) - self._STATE_KEYS
        if missing or unknown:
            problems = [f"missing keys {sorted(missing)}"] if missing else []
            problems += [f"unknown keys {sorted(unknown)}"] if unknown else []
            raise ValueError(
                f"ParetoBuffer state has {' and '.join(problems)}; expected exactly {sorted(self._STATE_KEYS)} "
                "(a dict from ParetoBuffer.state_dict())"
            )
        if state["format_version"] != self.FORMAT_VERSION:
            raise ValueError(
                f"ParetoBuffer state has format_version {state['format_version']!r}, but this moalign reads "
                f"version {self.FORMAT_VERSION}; save it again with a matching moalign"
            )
        if state["max_size"] != self._max_size:
            raise ValueError(
                f"ParetoBuffer state was saved with max_size={state['max_size']!r}, but this buffer has "
                f"max_size={self._max_size!r}; build the buffer with the same max_size"
            )
        ref = None if state["ref"] is None else _array_1d_of_length_n(state["ref"], None, "state.ref")
        k = None if ref is None else ref.size
        if self._config_ref is not None:
            if ref is None:
                raise ValueError(
                    "ParetoBuffer state has no ref (it was saved before its first point, from a buffer built with "
                    f"ref=None), but this buffer was built with ref={self._config_ref.tolist()}; build it with ref=None"
                )
            if ref.size != self._config_ref.size:
                raise ValueError(
                    f"ParetoBuffer state has {ref.size} objectives (ref={ref.tolist()}), but "
                    f"this buffer has {self._config_ref.size} (ref={self._config_ref.tolist()})"
                )
            if not np.array_equal(ref, self._config_ref):
                raise ValueError(
                    f"ParetoBuffer state has ref={ref.tolist()}, but this buffer was built with "
                    f"ref={self._config_ref.tolist()}; build it with the same reference point, or with ref=None"
                )
        try:
            saved_mx = self._normalize_maximize(state["maximize"], k)
        except ValueError as exc:
            raise ValueError(f"ParetoBuffer state.maximize is invalid: {exc}") from None
        if k is not None:
            if isinstance(self._config_maximize, list) and len(self._config_maximize) != k:
                raise ValueError(
                    f"ParetoBuffer state has {k} objectives, but this buffer's 'maximize' has "
                    f"{len(self._config_maximize)} entries"
                )
            same = np.array_equal(_parse_maximize(saved_mx, k), _parse_maximize(self._config_maximize, k))
        else:
            same = saved_mx == self._config_maximize
        if not same:
            raise ValueError(
                f"ParetoBuffer state was saved with maximize={state['maximize']!r}, but this buffer has "
                f"maximize={self._config_maximize!r}; build the buffer with the same directions"
            )
        steps = state["steps"]
        if not isinstance(steps, list) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in steps
        ):
            raise ValueError(f"ParetoBuffer state.steps must be a list of integers, but got {steps!r}")
        if ref is None:
            if len(state["points"]) or steps:
                raise ValueError("ParetoBuffer state has points but no ref; the saved state is inconsistent")
            self._reset(None)
            return
        pts = _array_2d_of_points(state["points"], "state.points", k)
        if len(pts) != len(steps):
            raise ValueError(f"ParetoBuffer state has {len(pts)} points but {len(steps)} steps; they must match")
        sign = _signs(_parse_maximize(saved_mx, k))
        if len(pts) and not (pts * sign < ref * sign).all():
            raise ValueError("ParetoBuffer state has points that do not strictly dominate its ref; it is corrupt")
        if len(pts) > 1 and not moocore.is_nondominated(pts * sign, keep_weakly=False).all():
            raise ValueError("ParetoBuffer state has dominated or duplicate points; it is corrupt")
        self._reset(ref)
        self._points = pts.copy()
        self._steps = [int(s) for s in steps]

"""Pareto tooling: hypervolume, hypervolume contribution, non-dominated filtering, normalisation, a Pareto buffer.

Exact hypervolumes come from `moocore <https://multi-objective.github.io/moocore/python/>`_ (C implementations of
the WFG/HV3D+ algorithms). Functions take the points positionally and the options keyword-only; ``maximize`` is one
bool or one bool per objective (mixed directions allowed). Inputs are never modified.

Points that do not strictly dominate the reference point contribute nothing (they are dropped before moocore is
called, so they never raise). NaN or infinite values are rejected with a message naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import moocore
import numpy as np

__all__ = ["hypervolume", "hv_contribution", "nondominated", "normalize", "ParetoBuffer"]

ArrayLike = Any


# -- input checks (named after the argument they check) -------------------------------------------------------
def _points_2d(points: ArrayLike, name: str, k: int | None = None) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, k or 0)
    if arr.ndim != 2:
        raise ValueError(f"'{name}' must be a 2-D array of shape (n, k), but it has shape {arr.shape}")
    if arr.shape[0] and arr.shape[1] == 0:
        raise ValueError(f"'{name}' has points with zero objectives; give at least one objective per point")
    if k is not None and arr.shape[0] and arr.shape[1] != k:
        raise ValueError(f"'{name}' has {arr.shape[1]} objectives per point, but {k} were expected")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"'{name}' contains NaN or infinite values; drop or fix those points first")
    return arr


def _vector(x: ArrayLike, k: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size == 1 and k > 1:
        arr = np.full(k, arr.item())
    if arr.size != k:
        raise ValueError(f"'{name}' must have length {k}, but it has length {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"'{name}' contains NaN or infinite values: {arr.tolist()}")
    return arr


def _maximize(maximize: bool | Sequence[bool], k: int) -> np.ndarray:
    arr = np.asarray(maximize, dtype=bool).reshape(-1)
    if arr.size == 1:
        return np.full(k, bool(arr.item()))
    if arr.size != k:
        raise ValueError(f"'maximize' must be one bool or {k} bools (one per objective), but it has length {arr.size}")
    return arr


def _to_min(points: np.ndarray, maximize: np.ndarray) -> np.ndarray:
    """Flip maximised objectives so every objective is minimised."""
    return np.where(maximize, -points, points)


def _dominating_ref(points_min: np.ndarray, ref_min: np.ndarray) -> np.ndarray:
    return points_min[np.all(points_min < ref_min, axis=1)] if len(points_min) else points_min


# -- functions -------------------------------------------------------------------------------------------------
def hypervolume(points: ArrayLike, /, ref: ArrayLike, *, maximize: bool | Sequence[bool] = True) -> float:
    """Exact hypervolume of ``points`` (n, k) with respect to ``ref``.

    >>> hypervolume([[1.0, 2.0], [2.0, 1.0]], ref=[0.0, 0.0])
    3.0
    >>> hypervolume([[1.0, 200.0]], ref=[0.0, 1000.0], maximize=[True, False])  # minimise the second objective
    800.0
    >>> hypervolume([[-1.0, 5.0]], ref=[0.0, 0.0])  # does not dominate the reference point
    0.0
    """
    ref_arr = np.asarray(ref, dtype=np.float64).reshape(-1)
    pts = _points_2d(points, "points", ref_arr.size)
    k = ref_arr.size
    ref_arr = _vector(ref_arr, k, "ref")
    mx = _maximize(maximize, k)
    pm = _dominating_ref(_to_min(pts, mx), _to_min(ref_arr, mx))
    if len(pm) == 0:
        return 0.0
    if k == 1:
        return float(_to_min(ref_arr, mx)[0] - pm[:, 0].min())
    return float(moocore.hypervolume(pm, ref=_to_min(ref_arr, mx)))


def hv_contribution(
    point: ArrayLike, /, points: ArrayLike, ref: ArrayLike, *, maximize: bool | Sequence[bool] = True
) -> float:
    """``HV(points ∪ {point}) − HV(points)`` (≥ 0): how much ``point`` adds to the set.

    Computed as ``vol(box(point, ref)) − HV({q ∨ point : q ∈ points})`` (each q projected onto point's box), which is
    exact and only needs the points that overlap that box, so it is much faster than two full hypervolumes.

    >>> hv_contribution([2.0, 2.0], [[1.0, 3.0], [3.0, 1.0]], ref=[0.0, 0.0])  # adds the square [1,2]x[1,2]
    1.0
    >>> hv_contribution([0.5, 0.5], [[1.0, 1.0]], ref=[0.0, 0.0])  # dominated
    0.0
    """
    ref_arr = np.asarray(ref, dtype=np.float64).reshape(-1)
    k = ref_arr.size
    ref_arr = _vector(ref_arr, k, "ref")
    p = _vector(point, k, "point")
    pts = _points_2d(points, "points", k)
    mx = _maximize(maximize, k)
    ref_min, p_min = _to_min(ref_arr, mx), _to_min(p, mx)
    if not np.all(p_min < ref_min):
        return 0.0
    others = _dominating_ref(_to_min(pts, mx), ref_min)
    if len(others) and np.any(np.all(others <= p_min, axis=1)):
        return 0.0  # weakly dominated by a member of the set
    box = float(np.prod(ref_min - p_min))
    if len(others) == 0:
        return box
    projected = np.maximum(others, p_min)
    projected = projected[np.all(projected < ref_min, axis=1)]
    if len(projected) == 0:
        return box
    covered = float(moocore.hypervolume(projected, ref=ref_min)) if k > 1 else float(ref_min[0] - projected.min())
    return max(box - covered, 0.0)


def nondominated(points: ArrayLike, /, *, maximize: bool | Sequence[bool] = True) -> np.ndarray:
    """Boolean mask of the points no other point dominates. Exact duplicates of a non-dominated point are all kept.

    >>> nondominated([[1.0, 2.0], [2.0, 1.0], [0.5, 0.5], [1.0, 2.0]]).tolist()
    [True, True, False, True]
    """
    pts = _points_2d(points, "points")
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    mx = _maximize(maximize, pts.shape[1])
    return np.asarray(moocore.is_nondominated(_to_min(pts, mx), keep_weakly=True), dtype=bool)


def normalize(
    points: ArrayLike, /, lower: ArrayLike, upper: ArrayLike, *, maximize: bool | Sequence[bool] = True
) -> np.ndarray:
    """Map each objective to [0, 1] with 1 = better; afterwards every objective is maximised.

    Maximised objectives become ``(x − lower)/(upper − lower)``, minimised ones ``(upper − x)/(upper − lower)``.
    DESIGN.md's space for (accuracy, length, clarity) with ``max_completion_length = 2048``:

    >>> normalize([[0.5, 512.0, 0.25]], lower=[0, 0, 0], upper=[1, 2048, 1], maximize=[True, False, True]).tolist()
    [[0.5, 0.75, 0.25]]
    """
    pts = _points_2d(points, "points")
    k = pts.shape[1]
    lo, hi = _vector(lower, k, "lower"), _vector(upper, k, "upper")
    bad = np.flatnonzero(hi <= lo)
    if bad.size:
        raise ValueError(f"'upper' must exceed 'lower' for every objective; it does not for objective(s) {bad.tolist()}")
    mx = _maximize(maximize, k)
    span = hi - lo
    return np.where(mx, (pts - lo) / span, (hi - pts) / span)


class ParetoBuffer:
    """The non-dominated points seen so far, with the step each was seen at.

    ``add(point, step)`` returns the point's hypervolume contribution ΔHV; the point is kept iff ΔHV > 0, and the
    points it dominates are dropped, so the buffer never holds dominated points. With ``ref=None`` the first point
    added becomes the reference point (the initial policy's point, as in arXiv 2509.11452): that call returns 0.0
    and leaves the buffer empty. ``max_size`` optionally caps the buffer by dropping the member with the smallest
    exclusive contribution.

    >>> buf = ParetoBuffer([0.0, 0.0])
    >>> buf.add([1.0, 1.0], step=0), buf.add([2.0, 0.5], step=5), buf.add([0.5, 0.5], step=10)
    (1.0, 0.5, 0.0)
    >>> buf.steps
    [0, 5]
    """

    FORMAT_VERSION = 1

    def __init__(self, ref: ArrayLike | None, *, maximize: bool | Sequence[bool] = True, max_size: int | None = None):
        if max_size is not None and (not isinstance(max_size, (int, np.integer)) or max_size < 1):
            raise ValueError(f"'max_size' must be a positive integer or None, but got {max_size!r}")
        self.max_size = None if max_size is None else int(max_size)
        self._maximize_arg = maximize
        self.ref: np.ndarray | None = None
        self.maximize: np.ndarray | None = None
        self._points = np.zeros((0, 0))
        self._steps: list[int] = []
        if ref is not None:
            self._set_ref(ref)

    def _set_ref(self, ref: ArrayLike) -> None:
        arr = np.asarray(ref, dtype=np.float64).reshape(-1)
        self.ref = _vector(arr, arr.size, "ref")
        self.maximize = _maximize(self._maximize_arg, arr.size)
        self._points = np.zeros((0, arr.size))

    @property
    def points(self) -> np.ndarray:
        return self._points.copy()

    @property
    def steps(self) -> list[int]:
        return list(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def hypervolume(self) -> float:
        return 0.0 if self.ref is None else hypervolume(self._points, self.ref, maximize=self.maximize)

    def add(self, point: ArrayLike, step: int) -> float:
        p = np.asarray(point, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(p)):
            raise ValueError(f"'point' contains NaN or infinite values: {p.tolist()}; it cannot enter the Pareto buffer")
        if self.ref is None:
            self._set_ref(p)
            return 0.0
        p = _vector(p, self.ref.size, "point")
        delta = hv_contribution(p, self._points, self.ref, maximize=self.maximize)
        if delta <= 0.0:
            return 0.0
        pm, others = _to_min(p, self.maximize), _to_min(self._points, self.maximize)
        keep = ~np.all(pm <= others, axis=1) if len(others) else np.zeros(0, dtype=bool)
        self._points = np.vstack([self._points[keep], p[None, :]])
        self._steps = [s for s, kp in zip(self._steps, keep) if kp] + [int(step)]
        if self.max_size is not None and len(self._steps) > self.max_size:
            self._drop_least_contributor()
        return float(delta)

    def _drop_least_contributor(self) -> None:
        contrib = [
            hv_contribution(self._points[i], np.delete(self._points, i, axis=0), self.ref, maximize=self.maximize)
            for i in range(len(self._steps))
        ]
        i = int(np.argmin(contrib))
        self._points = np.delete(self._points, i, axis=0)
        del self._steps[i]

    def state_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.FORMAT_VERSION,
            "ref": None if self.ref is None else self.ref.tolist(),
            "maximize": None if self.maximize is None else [bool(m) for m in self.maximize],
            "max_size": self.max_size,
            "points": self._points.tolist(),
            "steps": [int(s) for s in self._steps],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"ref", "maximize", "points", "steps"} - set(state)
        if missing:
            raise ValueError(f"ParetoBuffer state lacks {sorted(missing)}; the saved state is incomplete")
        if state["ref"] is None:
            self.ref, self.maximize, self._points, self._steps = None, None, np.zeros((0, 0)), []
            return
        ref = np.asarray(state["ref"], dtype=np.float64)
        pts = _points_2d(state["points"], "points", ref.size) if state["points"] else np.zeros((0, ref.size))
        if len(pts) != len(state["steps"]):
            raise ValueError(f"ParetoBuffer state has {len(pts)} points but {len(state['steps'])} steps")
        if self.ref is not None and self.ref.size != ref.size:
            raise ValueError(f"ParetoBuffer state has {ref.size} objectives, but this buffer has {self.ref.size}")
        self.ref, self.maximize = ref, np.asarray(state["maximize"], dtype=bool)
        self._points, self._steps = pts, [int(s) for s in state["steps"]]
        self.max_size = state.get("max_size", self.max_size)

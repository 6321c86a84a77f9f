"""Strict, declared strategy state and the shared validators (weighting/base.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from moalign import weighting
from moalign.weighting.base import StateField, WeightingStrategy, check_number, check_vector

NAMES = ["accuracy", "conciseness", "clarity"]


def _build(name):
    return weighting.build(name, 3, NAMES)


@pytest.mark.parametrize("name", weighting.available())
def test_state_dict_is_exactly_the_declared_fields_in_json(name):
    s = _build(name)
    state = s.state_dict()
    assert set(state) == set(type(s).state_fields), name
    assert json.loads(json.dumps(state, allow_nan=False)) == state


@pytest.mark.parametrize("name", weighting.available())
def test_missing_key_is_an_error_naming_strategy_and_key(name):
    s = _build(name)
    for key in type(s).state_fields:
        state = s.state_dict()
        del state[key]
        with pytest.raises(ValueError, match=rf"strategy '{name}' state has missing key\(s\) \['{key}'\]"):
            s.load_state_dict(state)


@pytest.mark.parametrize("name", weighting.available())
def test_unknown_key_is_an_error_naming_strategy_and_key(name):
    s = _build(name)
    state = s.state_dict() | {"bogus": 1}
    with pytest.raises(ValueError, match=rf"strategy '{name}' state has unknown key\(s\) \['bogus'\]"):
        s.load_state_dict(state)


@pytest.mark.parametrize("name", weighting.available())
def test_wrong_length_vector_is_an_error_and_leaves_the_state_unchanged(name):
    s = _build(name)
    before = s.state_dict()
    state = s.state_dict()
    key = next(k for k, f in type(s).state_fields.items() if f.kind == "vector")
    state[key] = [0.5]
    with pytest.raises(ValueError, match=rf"strategy '{name}' state '{key}' has 1 entries"):
        s.load_state_dict(state)
    assert s.state_dict() == before  # nothing was half-loaded


@pytest.mark.parametrize("name", weighting.available())
def test_non_number_is_an_error(name):
    s = _build(name)
    state = s.state_dict()
    key = next(k for k, f in type(s).state_fields.items() if f.kind == "vector")
    state[key] = ["x", 1.0, 1.0]
    with pytest.raises(ValueError, match=rf"state '{key}' must be a list of 3 numbers"):
        s.load_state_dict(state)


def test_nullable_and_nan_fields_round_trip():
    famo = _build("famo")
    assert famo.state_dict()["previous_losses"] is None
    famo.load_state_dict(famo.state_dict())
    tch = _build("tchebycheff")
    assert tch.state_dict()["ideal"] == [None, None, None]  # NaN (not seen yet) is saved as null
    state = tch.state_dict() | {"ideal": [1.0, None, 0.5]}
    tch.load_state_dict(state)
    assert math.isnan(tch._ideal[1]) and tch.state_dict()["ideal"] == [1.0, None, 0.5]
    lag = _build("lagrangian")
    with pytest.raises(ValueError, match="has 3 entries but there are 2 in this run"):
        lag.load_state_dict(lag.state_dict() | {"lambdas": [0.0, 0.0, 0.0]})


def test_non_nullable_null_and_bad_integer_are_errors():
    famo = _build("famo")
    with pytest.raises(ValueError, match="strategy 'famo' state 'logits' is null"):
        famo.load_state_dict(famo.state_dict() | {"logits": None})
    with pytest.raises(ValueError, match="strategy 'famo' state 'adam_step' must be a finite integer"):
        famo.load_state_dict(famo.state_dict() | {"adam_step": 1.5})


def test_unknown_state_field_kind_is_rejected_at_registration():
    class Bad(WeightingStrategy):
        state_fields = {"weights": StateField("_w", kind="tensor")}

    with pytest.raises(ValueError, match="unknown kind"):
        weighting.register("_bad_kind_test")(Bad)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (0, {"low": 0, "low_open": True}, "must be a positive number, but got 0"),
        (-1.0, {"low": 0}, "must be a non-negative number, but got -1.0"),
        (True, {}, "must be a finite number, but got True"),
        ("1", {}, "must be a finite number, but got '1'"),
        (float("nan"), {}, "must be a finite number"),
        (float("inf"), {"low": 1}, "must be a number >= 1"),
        (2.5, {"low": 1, "integer": True}, "must be an integer >= 1, but got 2.5"),
        (1.0, {"low": 0, "high": 1, "high_open": True}, r"must be a number in \[0, 1\), but got 1.0"),
    ],
)
def test_check_number_rejects(value, kwargs, message):
    with pytest.raises(ValueError, match=f"x {message}"):
        check_number(value, "x", **kwargs)


def test_check_number_accepts_and_converts():
    assert check_number(np.float32(0.5), "x", low=0) == 0.5
    assert check_number(3.0, "x", integer=True) == 3 and isinstance(check_number(3.0, "x", integer=True), int)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ([1.0, 2.0], {}, r"has 2 entries but objectives has 3 \(a, b, c\)"),
        ("abc", {}, "must be a list of 3 numbers"),
        ([1.0, float("nan"), 1.0], {}, "must be finite"),
        ([1.0, -1.0, 1.0], {"low": 0.0}, "must be non-negative"),
        ([1.0, 0.0, 1.0], {"low": 0.0, "low_open": True}, "must be positive"),
        ([0.0, 0.0, 0.0], {"not_all_zero": True}, "must not be all zero"),
        ([True, 1.0, 1.0], {}, "must be numbers, not true/false"),
    ],
)
def test_check_vector_rejects(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_vector(value, 3, "v", names=["a", "b", "c"], **kwargs)


def test_check_vector_copies_and_allows_nan_when_asked():
    src = np.array([1.0, np.nan, 2.0])
    out = check_vector(src, 3, "v", allow_nan=True)
    out[0] = 5.0
    assert src[0] == 1.0


def test_hypervolume_hooks_replace_side_channels():
    hv = weighting.build("hypervolume", 3, NAMES, hv_eval_every=2)
    assert "validation" in hv.needs
    assert [hv.wants_validation_point(s) for s in (1, 2, 3, 4)] == [False, True, False, True]
    hv.set_reference_point(np.array([0.1, 0.1, 0.1]), step=0)
    assert hv.state_dict()["buffer"]["ref"] is not None  # the initial point set the reference point
    assert hv.advantage_scale() == 1.0  # the reference point leaves r_pareto neutral
    batch = weighting.build("hypervolume", 3, NAMES, point_source="train_batch")
    assert not batch.wants_validation_point(5) and "validation" not in batch.needs
    assert not weighting.build("fixed", 3, NAMES).wants_validation_point(5)


def _one_ulp_up(value):
    if isinstance(value, float):
        return float(np.nextafter(value, math.inf))
    if isinstance(value, list):
        return [_one_ulp_up(v) for v in value]
    return value  # None (not set yet), flags, integers


@pytest.mark.parametrize("name", weighting.available())
def test_loading_restores_the_saved_values_without_recomputing_them(name):
    """A state is restored, never recomputed: a recomputation (CTWA's softmax of its log-weights) can differ in the
    last bit on another CPU (numpy's exp takes other SIMD paths), and a resumed run would not continue the saved one.
    Every saved float is moved one ulp off what the strategy would compute from the rest, and must come back as saved."""
    s = _build(name)
    fields = type(s).state_fields
    state = {k: v if fields[k].kind == "object" else _one_ulp_up(v) for k, v in s.state_dict().items()}
    restored = _build(name)
    restored.load_state_dict(json.loads(json.dumps(state)))
    assert restored.state_dict() == state
    assert restored.weights().tolist() == state["weights"]

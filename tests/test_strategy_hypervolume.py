"""The hypervolume-guided strategy (arXiv 2509.11452, §4, Algorithm 1): meta-reward values, timing, placement."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import moalign.weighting.hypervolume  # noqa: F401  (registers the strategy)
from moalign import weighting
from moalign.rl.advantages import compute_advantages
from moalign.weighting.base import StepStats
from moalign.weighting.fixed import PRESETS
from moalign.weighting.hypervolume import ACTIVATIONS, Hypervolume

NAMES = ["accuracy", "conciseness", "clarity"]
# The first version's choices (= the paper's formulas): ΔHV in the unit cube, r_pareto on the advantages, the first
# point itself as the reference point. Most tests below pin those formulas; the defaults are tested at the end.
V1 = {"hv_scale": "unit", "apply_to": "advantage", "ref_margin": 0.0}


def _batch(point, step=0):
    """A one-row batch whose objective means are `point` (train_batch source)."""
    p = np.asarray(point, dtype=float)
    return StepStats(step, p[None, :], np.zeros(1), np.zeros((1, p.size)))


def _after(point, step, k=2):
    """after_update stats carrying a validation point (None: no evaluation this step)."""
    return StepStats(step, np.zeros((1, k)), np.zeros(1), np.zeros((1, k)),
                     validation_point=None if point is None else np.asarray(point, dtype=float))


def _tanh(d):
    return 0.5 + 1.5 * math.tanh(d)


# Points in [0, 1]^2 (maximised) against ref (0, 0), with the hypervolume contribution worked out by hand.
SEQUENCE = [
    ((0.5, 0.5), 0.25, 1),  # first box 0.5 × 0.5
    ((0.4, 0.4), 0.0, 1),  # dominated
    ((0.8, 0.2), 0.06, 2),  # new strip [0.5, 0.8] × [0, 0.2]
    ((0.5, 0.5), 0.0, 2),  # already in the buffer
    ((0.6, 0.6), 0.09, 2),  # (0.36 + 0.2·0.2) − (0.25 + 0.06); replaces (0.5, 0.5)
    ((0.1, 0.9), 0.03, 3),  # strip [0, 0.1] × [0.6, 0.9]
    ((0.7, 0.1), 0.0, 3),  # dominated by (0.8, 0.2)
]


def test_r_pareto_above_half_exactly_when_the_buffer_grows():
    hv = Hypervolume(2, **V1, point_source="train_batch", ref_point=[0.0, 0.0])
    for step, (point, delta, size) in enumerate(SEQUENCE):
        hv.before_update(_batch(point, step))
        m = hv.metrics()
        assert m["delta_hv"] == pytest.approx(delta, abs=1e-12), f"step {step}"
        assert m["r_pareto"] == pytest.approx(_tanh(delta), abs=1e-12)
        assert hv.advantage_scale() == m["r_pareto"]  # same step with train_batch
        assert (hv.advantage_scale() > 0.5) == (delta > 0)
        assert m["pareto_buffer_size"] == size and m["skipped"] == 0.0
        np.testing.assert_array_equal(hv.weights(), [0.5, 0.5])  # weights never move
        hv.after_update(_after(None, step))


@pytest.mark.parametrize(
    "activation, values",
    [  # f at ΔHV = 0, 0.25, 1 computed by hand (tanh(0.25) = 0.244919, tanh(0.75) = 0.635149, tanh(1) = 0.761594,
        # tanh(3) = 0.995055, σ(0.25) = 0.562177, σ(1) = 0.731059)
        ("tanh", [0.5, 0.867378, 1.642391]),
        ("tanh3", [0.5, 1.452724, 1.992583]),
        ("sigmoid_plus_one", [1.5, 1.562177, 1.731059]),
        ("two_sigmoid", [1.0, 1.124353, 1.462117]),
    ],
)
def test_activation_values(activation, values):
    f = ACTIVATIONS[activation]
    np.testing.assert_allclose([f(0.0), f(0.25), f(1.0)], values, atol=1e-6)
    # Through the strategy: (0.5, 0.5) against ref (0, 0) has ΔHV = 0.25, then a dominated point has ΔHV = 0.
    hv = Hypervolume(2, **V1, activation=activation, point_source="train_batch", ref_point=[0, 0])
    hv.before_update(_batch([0.5, 0.5]))
    assert hv.advantage_scale() == pytest.approx(values[1], abs=1e-6)
    hv.before_update(_batch([0.1, 0.1], step=1))
    assert hv.advantage_scale() == pytest.approx(values[0], abs=1e-12)
    assert math.isfinite(f(1e6)) and f(1e6) == pytest.approx(2.0)  # saturates at 2, no overflow


def test_validation_source_first_point_is_reference_and_r_pareto_holds_between_evaluations():
    hv = Hypervolume(2, **V1, hv_eval_every=5, ref_point="initial")
    assert hv.needs == frozenset({"validation"}) and hv.hv_eval_every == 5
    scales = []
    hv.after_update(_after([0.2, 0.3], step=0))  # initial policy -> reference point, r stays neutral
    assert hv.metrics()["r_pareto"] == 1.0 and hv.metrics()["delta_hv"] == 0.0
    for step in range(1, 13):
        hv.before_update(_batch([1.0, 1.0], step))  # training batches are ignored with `validation`
        scales.append(hv.advantage_scale())
        point = {5: [0.4, 0.5], 10: [0.3, 0.4]}.get(step)  # an improvement, then a dominated point
        hv.after_update(_after(point, step))
    r5 = _tanh((0.4 - 0.2) * (0.5 - 0.3))  # box between the reference (0.2, 0.3) and (0.4, 0.5)
    assert scales[:5] == [1.0] * 5  # steps 1-5: nothing measured since the reference
    assert scales[5:10] == pytest.approx([r5] * 5)  # steps 6-10: the step-5 evaluation's multiplier
    assert scales[10:] == [0.5, 0.5]  # steps 11-12: dominated point, ΔHV = 0 -> f(0)
    assert hv.metrics()["pareto_buffer_size"] == 1


def test_buffer_records_the_evaluation_step():
    hv = Hypervolume(2, **V1, ref_point=[0, 0])
    stats = _after([0.5, 0.5], step=4)
    stats.validation_step = 5  # evaluated after step 4's update, i.e. at global step 5 (evals.jsonl)
    hv.after_update(stats)
    hv.after_update(_after([0.9, 0.1], step=9))  # no validation_step: the batch's step
    assert hv.state_dict()["buffer"]["steps"] == [5, 9]


def test_explicit_ref_point_scores_the_first_point():
    hv = Hypervolume(2, **V1, ref_point=[0.0, 0.0])
    hv.after_update(_after([0.5, 0.4], step=0))
    assert hv.metrics()["delta_hv"] == pytest.approx(0.2)
    assert hv.advantage_scale() == pytest.approx(_tanh(0.2))


def test_train_batch_source_needs_nothing_and_ignores_validation_points():
    hv = Hypervolume(2, **V1, point_source="train_batch", ref_point="initial")
    assert hv.needs == frozenset()
    assert Hypervolume.needs == frozenset({"validation"})  # the class default is untouched
    hv.after_update(_after([0.9, 0.9], step=0))
    assert hv.metrics()["pareto_buffer_size"] == 0 and hv.advantage_scale() == 1.0
    hv.before_update(_batch([0.2, 0.2], step=0))  # first batch -> reference, neutral
    assert hv.advantage_scale() == 1.0
    hv.before_update(_batch([0.4, 0.6], step=1))
    assert hv.advantage_scale() == pytest.approx(_tanh(0.2 * 0.4))


def test_apply_to_reward_lags_one_step_with_train_batch():
    hv = Hypervolume(2, **{**V1, "apply_to": "reward"}, point_source="train_batch", ref_point=[0, 0])
    rewards = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    plain = rewards @ np.array([0.5, 0.5])
    expected_scale = 1.0  # nothing measured before step 0
    for step, (point, delta, _) in enumerate(SEQUENCE):
        hv.before_update(_batch(point, step))
        np.testing.assert_allclose(hv.scalarize(rewards), plain * expected_scale, rtol=1e-15)
        assert hv.advantage_scale() == 1.0
        hv.after_update(_after(None, step))
        expected_scale = _tanh(delta)  # this batch's multiplier lands on the next step's rewards


def test_apply_to_reward_with_validation_uses_latest_evaluation_next_step():
    hv = Hypervolume(2, **{**V1, "apply_to": "reward"}, hv_eval_every=1, ref_point=[0, 0])
    rewards = np.array([[1.0, 1.0]])
    hv.before_update(_batch([0, 0], 0))
    assert hv.scalarize(rewards).tolist() == [1.0]
    hv.after_update(_after([0.5, 0.5], 0))  # evaluated after step 0's update
    hv.before_update(_batch([0, 0], 1))
    assert hv.scalarize(rewards)[0] == pytest.approx(_tanh(0.25))  # ... scales step 1's reward
    # Skipping before_update (the trainer does when no completion is scored) does not change which value applies.
    hv.after_update(_after([0.5, 0.5], 1))
    assert hv.scalarize(rewards)[0] == pytest.approx(0.5)


def _grpo_group_normalise(r, group_ids):
    out = np.empty_like(r)
    for g in np.unique(group_ids):
        idx = group_ids == g
        out[idx] = (r[idx] - r[idx].mean()) / (r[idx].std(ddof=1) + 1e-4)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_reward_placement_cancels_under_group_normalisation(seed):
    """(c·r − c·mean)/(c·std + ε) = (r − mean)/(std + ε/c): the multiplier only moves ε, so it has no effect.

    Relative change ≈ ε·|1/c − 1|/std ≤ 1e-4/0.125 for c ≥ 0.5 and these weighted 0/1 rewards (a non-zero group
    std is at least 0.125);
    groups with zero std give advantage 0 in both. `apply_to="advantage"` instead scales the advantages by c.
    """
    rng = np.random.default_rng(seed)
    rewards = rng.integers(0, 2, size=(32, 3)).astype(float)  # 8 prompts × 4 samples
    group_ids = np.repeat(np.arange(8), 4)
    weights = [0.5, 0.25, 0.25]
    base = _grpo_group_normalise(weighting.build("fixed", 3, weights=weights).scalarize(rewards), group_ids)

    for delta in (0.0, 0.3, 2.0):  # c = 0.5, ~0.94, ~1.95
        c = _tanh(delta)
        by_reward = Hypervolume(3, **{**V1, "apply_to": "reward"}, weights=weights, hv_eval_every=1, ref_point=[0, 0, 0])
        by_adv = Hypervolume(3, **V1, weights=weights, hv_eval_every=1, ref_point=[0, 0, 0])
        side = delta ** (1 / 3)  # a cube of volume delta
        for s in (by_reward, by_adv):
            s.after_update(_after([side, side, side], 0, k=3))
            s.before_update(_batch([0, 0, 0], 1))
            assert s.metrics()["r_pareto"] == pytest.approx(c)
        a_reward = _grpo_group_normalise(by_reward.scalarize(rewards), group_ids) * by_reward.advantage_scale()
        np.testing.assert_allclose(a_reward, base, rtol=1e-3, atol=1e-9, err_msg=f"seed={seed} c={c}")
        a_adv = _grpo_group_normalise(by_adv.scalarize(rewards), group_ids) * by_adv.advantage_scale()
        np.testing.assert_allclose(a_adv, c * base, rtol=1e-12, atol=1e-12)
        if abs(c - 1.0) > 0.05:
            assert not np.allclose(a_adv, base, rtol=1e-2)  # the default placement really changes the step
        # Same with the trainer's estimator (TRL-identical GRPO, group std).
        torch_reward = compute_advantages(torch.tensor(by_reward.scalarize(rewards)), "grpo", 4, "group")
        torch_plain = compute_advantages(torch.tensor(by_adv.scalarize(rewards)), "grpo", 4, "group")
        np.testing.assert_allclose(torch_reward.numpy(), torch_plain.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_point_is_skipped(bad):
    hv = Hypervolume(2, **V1, point_source="train_batch", ref_point=[0, 0])
    hv.before_update(_batch([0.5, 0.5], 0))
    state = hv.state_dict()
    hv.before_update(_batch([0.9, bad], 1))
    assert hv.metrics()["skipped"] == 1.0
    assert hv.advantage_scale() == pytest.approx(_tanh(0.25))
    after = hv.state_dict()
    assert after.pop("skipped") is True and state.pop("skipped") is False
    after.pop("r_prev"), state.pop("r_prev")  # "in force when the step began": moves with the step, not the point
    assert after == state
    hv.before_update(_batch([0.6, 0.6], 2))
    assert hv.metrics()["skipped"] == 0.0 and hv.metrics()["delta_hv"] == pytest.approx(0.36 - 0.25)


def test_wrong_point_length_raises():
    hv = Hypervolume(3, **V1)
    with pytest.raises(ValueError, match="3 objectives"):
        hv.after_update(_after([0.1, 0.2], 0))


@pytest.mark.parametrize("source, placement", [("train_batch", "reward"), ("validation", "advantage"),
                                               ("validation", "reward"), ("train_batch", "advantage")])
def test_state_round_trip_continues_identically(source, placement):
    rng = np.random.default_rng(3)
    points = 0.1 + 0.9 * rng.random((12, 3))
    points[0] = 0.05  # the reference point (ref_point=None) below every later point
    rewards = rng.integers(0, 2, size=(6, 3)).astype(float)

    def run(strategy, steps):
        trace = []
        for t in steps:
            strategy.before_update(_batch(points[t], t))
            trace.append((strategy.scalarize(rewards).tolist(), strategy.advantage_scale(), strategy.metrics()))
            strategy.after_update(_after(points[t] if t % 2 == 0 else None, t, k=3))
        return trace

    make = lambda: Hypervolume(3, NAMES, **{**V1, "apply_to": placement}, preset="balanced", point_source=source)  # noqa: E731
    straight = make()
    full = run(straight, range(12))
    first = make()
    head = run(first, range(6))
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    tail = run(resumed, range(6, 12))
    assert head + tail == full
    assert resumed.state_dict() == straight.state_dict()
    assert any(tr[2]["pareto_buffer_size"] > 1 for tr in full)  # the buffer was exercised


def test_weights_and_presets():
    assert Hypervolume(3, **V1, preset="accuracy_focused").weights().tolist() == PRESETS["accuracy_focused"]
    assert Hypervolume(2, **V1, weights=[3, 1]).weights().tolist() == [3.0, 1.0]  # applied as given, like `fixed`
    np.testing.assert_allclose(Hypervolume(4, **V1).weights(), np.full(4, 0.25))


@pytest.mark.parametrize(
    "params, match",
    [({"activation": "relu"}, "activation"), ({"point_source": "test"}, "point_source"),
     ({"apply_to": "loss"}, "apply_to"), ({"hv_eval_every": 0}, "hv_eval_every"),
     ({"hv_eval_every": 2.5}, "hv_eval_every"), ({"hv_eval_every": True}, "hv_eval_every"),
     ({"ref_point": [0, 0]}, "ref_point"), ({"ref_point": [0, 0, float("nan")]}, "ref_point"),
     ({"weights": [1, 1, 1], "preset": "balanced"}, "not both"), ({"preset": "nope"}, "preset"),
     ({"weights": [1, -1, 1]}, "non-negative"), ({"maximize": True}, "unknown parameter")],
)
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        weighting.build("hypervolume", 3, **params)


def test_repr_pinned():
    assert repr(Hypervolume(3, preset="balanced")) == (
        "Hypervolume(preset='balanced', activation='tanh', point_source='validation', apply_to='lr', "
        "hv_scale='box_root', hv_eval_every=5, ref_point='origin', ref_margin=0.0)"
    )
    assert repr(Hypervolume(2, weights=[1, 3], activation="tanh3", point_source="train_batch", apply_to="reward",
                            hv_scale="unit", hv_eval_every=1, ref_point=[0, 0], ref_margin=0)) == (
        "Hypervolume(weights=[1.0, 3.0], activation='tanh3', point_source='train_batch', apply_to='reward', "
        "hv_scale='unit', hv_eval_every=1, ref_point=[0.0, 0.0], ref_margin=0.0)"
    )


def test_initial_metrics():
    hv = weighting.build("hypervolume", 3, NAMES)
    assert hv.name == "hypervolume" and not hv.on_simplex
    assert hv.metrics() == {"delta_hv": 0.0, "scaled_delta_hv": 0.0, "r_pareto": 1.0, "pareto_buffer_size": 0.0,
                            "skipped": 0.0}
    assert hv.advantage_scale() == 1.0 and hv.lr_scale() == 1.0


# -- defaults: box-root scale, reference margin, learning-rate placement ----------------------------------------------
def _hv_inclusion_exclusion(points, ref):
    """Exact HV of a few maximised points by inclusion–exclusion over boxes [ref, p] (independent of moocore)."""
    import itertools

    total = 0.0
    for r in range(1, len(points) + 1):
        for subset in itertools.combinations(points, r):
            corner = np.min(np.asarray(subset), axis=0)
            total += (-1) ** (r + 1) * float(np.prod(np.clip(corner - ref, 0, None)))
    return total


@pytest.mark.parametrize("seed", range(5))
def test_box_root_scale_matches_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    hv = Hypervolume(3, NAMES, point_source="train_batch", ref_point="initial", ref_margin=0.05)  # box_root, lr
    first = rng.uniform(0.3, 0.6, size=3)
    hv.before_update(_batch(first, 0))
    ref = first - 0.05
    members = [first]
    assert hv.lr_scale() == 1.0 and hv.state_dict()["buffer"]["ref"] == pytest.approx(ref.tolist())
    for step in range(1, 8):
        p = np.clip(first + rng.normal(scale=0.08, size=3), 0, 1)
        delta = _hv_inclusion_exclusion(members + [p], ref) - _hv_inclusion_exclusion(members, ref)
        box = np.prod(np.max(np.vstack(members + [p]), axis=0) - ref)
        expected_s = (max(delta, 0.0) / box) ** (1 / 3)
        hv.before_update(_batch(p, step))
        m = hv.metrics()
        assert m["delta_hv"] == pytest.approx(max(delta, 0.0), abs=1e-12), f"seed={seed} step={step}"
        assert m["scaled_delta_hv"] == pytest.approx(expected_s, abs=1e-9), f"seed={seed} step={step}"
        assert hv.lr_scale() == pytest.approx(_tanh(expected_s), abs=1e-9) and hv.advantage_scale() == 1.0
        if delta > 1e-15:
            members = [q for q in members if not np.all(q <= p)] + [p]


def test_box_root_spans_the_activation_range_where_the_unit_cube_does_not():
    """The first version's unit-cube ΔHV pinned r_pareto near 0.5; the box-root scale reaches above 1.5 for a clear
    advance and 0.5 for a dominated point, from the same points."""
    points = [(0.50, 0.60, 0.30), (0.56, 0.66, 0.36), (0.45, 0.55, 0.25)]  # start, +0.06 everywhere, dominated
    box = Hypervolume(3, NAMES, point_source="train_batch", ref_point="initial", ref_margin=0.05)
    unit = Hypervolume(3, NAMES, point_source="train_batch", ref_point="initial", ref_margin=0.05, hv_scale="unit")
    r_box, r_unit = [], []
    for step, p in enumerate(points):
        box.before_update(_batch(p, step))
        unit.before_update(_batch(p, step))
        r_box.append(box.lr_scale())
        r_unit.append(unit.lr_scale())
    assert r_box[0] == r_unit[0] == 1.0
    # (0.11³ − 0.05³)/0.11³ = 0.906 → s = 0.968 → r = 0.5 + 1.5·tanh(0.968) = 1.60
    assert r_box[1] == pytest.approx(0.5 + 1.5 * math.tanh(((0.11**3 - 0.05**3) / 0.11**3) ** (1 / 3)), abs=1e-9)
    assert r_box[1] > 1.5 and r_unit[1] < 0.51
    assert r_box[2] == r_unit[2] == 0.5


def test_reference_margin_credits_trade_offs_but_not_dominated_points():
    hv = Hypervolume(2, point_source="train_batch", ref_point="initial", ref_margin=0.05)
    hv.before_update(_batch([0.5, 0.5], 0))
    hv.before_update(_batch([0.6, 0.48], 1))  # better in one objective, 0.02 worse in the other: counts
    assert hv.lr_scale() > 0.5
    hv.before_update(_batch([0.49, 0.49], 2))  # dominated by the first point
    assert hv.lr_scale() == 0.5
    paper = Hypervolume(2, point_source="train_batch", ref_point="initial")
    paper.before_update(_batch([0.5, 0.5], 0))
    paper.before_update(_batch([0.6, 0.48], 1))  # below the paper's reference point in one objective: 0.5
    assert paper.lr_scale() == 0.5


def test_origin_reference_point_by_default_scores_trade_offs_against_the_reported_front():
    """Default ``ref_point="origin"``: the reported HV's reference. The first point seeds the buffer (neutral r);
    a longer-but-clearer point that the paper's initial-point reference would score 0.5 extends the front."""
    hv = Hypervolume(3, NAMES, point_source="train_batch")
    hv.before_update(_batch([0.59, 0.83, 0.05], 0))  # short direct answers, almost no steps
    assert hv.lr_scale() == 1.0 and hv.state_dict()["buffer"]["ref"] == [0.0, 0.0, 0.0]
    clearer = np.array([0.55, 0.40, 0.60])  # longer, slightly less accurate, far clearer
    hv.before_update(_batch(clearer, 1))
    members = [np.array([0.59, 0.83, 0.05])]
    delta = _hv_inclusion_exclusion(members + [clearer], np.zeros(3)) - _hv_inclusion_exclusion(members, np.zeros(3))
    box = np.prod(np.maximum(members[0], clearer))
    assert hv.metrics()["scaled_delta_hv"] == pytest.approx((delta / box) ** (1 / 3), abs=1e-9)
    assert hv.lr_scale() == pytest.approx(0.5 + 1.5 * math.tanh((delta / box) ** (1 / 3))) and hv.lr_scale() > 1.4
    hv.before_update(_batch([0.50, 0.35, 0.55], 2))  # dominated by the previous point
    assert hv.lr_scale() == 0.5
    paper = Hypervolume(3, NAMES, point_source="train_batch", ref_point="initial")
    paper.before_update(_batch([0.59, 0.83, 0.05], 0))
    paper.before_update(_batch(clearer, 1))
    assert paper.lr_scale() == 0.5  # below the initial point in accuracy and length: no credit


def test_ref_point_spec_errors():
    with pytest.raises(ValueError, match="ref_point must be one of origin, initial or 3 numbers"):
        Hypervolume(3, NAMES, ref_point="nadir")
    with pytest.raises(ValueError, match="not null"):
        Hypervolume(3, NAMES, ref_point=None)

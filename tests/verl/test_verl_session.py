"""The verl plugin's framework-free half (no verl needed): config, refusals, rewards, validation points, CTWA's
post-update weights, reward function. Runs in the main test environment too."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from moalign import weighting
from moalign.integrations.verl import session as S
from moalign.integrations.verl.reward import compute_score


def test_importing_the_package_does_not_import_verl():
    code = ("import sys, moalign, moalign.integrations.verl, moalign.integrations.verl.reward; "
            "print('verl' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gradient_strategies_are_refused_naming_those_that_work():
    refused = [name for name, cls in weighting.STRATEGIES.items() if {"gram", "losses"} & set(cls.needs)]
    assert {"gradient", "mgda", "gradnorm", "nash_mtl"} <= set(refused)
    working = S.gradient_free_strategies()
    # moalign's FAMO learns from reward-based losses, not gradients (weighting/famo.py), so it runs under verl
    assert {"fixed", "hypervolume", "ctwa", "lagrangian", "tchebycheff", "pama", "famo"} <= set(working)
    for name in refused:
        with pytest.raises(ValueError, match="under verl use one of") as err:
            S.MOSession(S.MOConfig(strategy=name))
        assert all(w in str(err.value) for w in working)
    for name in working:  # every one the message names is accepted (with K = 3 and its defaults)
        assert S.MOSession(S.MOConfig(strategy=name)).strategy.name == name


def test_learning_rate_placement_is_refused_and_advantage_is_the_default():
    session = S.MOSession(S.MOConfig(strategy="hypervolume"))
    assert session.strategy.apply_to == "advantage"
    with pytest.raises(ValueError, match="apply_to=lr is not available under verl"):
        S.MOSession(S.MOConfig(strategy="hypervolume", strategy_params={"apply_to": "lr"}))


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown key.*'weights'"):
        S.MOConfig.from_mapping({"weights": [1, 0, 0]})
    with pytest.raises(ValueError, match="estimator must be one of grpo, rloo"):
        S.MOConfig.from_mapping({"estimator": "gae"})

    def length(completions, **kwargs):
        return [0.0] * len(completions)

    with pytest.raises(ValueError, match=r"\['length'\] clash with reward keys"):
        S.MOSession(S.MOConfig(objectives=["accuracy", length]))


def test_the_session_steps_through_one_engine_built_once(monkeypatch):
    """The strategy is built once, by the session's StepEngine; a refused strategy is refused from its needs, before
    anything is built; ragged prompt groups are refused by the engine with the fix."""
    built = []
    for name in ("ctwa", "gradient"):
        cls = weighting.STRATEGIES[name]
        monkeypatch.setattr(cls, "__init__", lambda self, *a, _orig=cls.__init__, **k: (built.append(
            type(self).__name__), _orig(self, *a, **k))[-1])
    session = S.MOSession(S.MOConfig(strategy="ctwa"))
    assert built == ["CTWA"] and session.strategy is session.engine.strategy
    assert session.engine.estimator_name == "verl_grpo" and session.engine.aggregation == "normalize_then_sum"
    with pytest.raises(ValueError, match="under verl use one of"):
        S.MOSession(S.MOConfig(strategy="gradient"))
    assert built == ["CTWA"]  # refused without being built
    with pytest.raises(ValueError, match="same number of completions.*disable filters that drop single"):
        session.advantages(np.zeros((3, 3)), ["a", "a", "b"], norm_by_std=True)


# moalign_state.json as the plugin wrote it before it used the step engine (commit ae14987: ctwa with cov_targets
# [0.6, 0.3, 0.3], 3 simulated steps of tests/verl/test_verl_plugin.py's simulate(); conciseness saw 4 lengths)
OLD_STATE = {"strategy": "ctwa", "objectives": ["accuracy", "conciseness", "clarity"], "step": 3, "strategy_state": {
    "weights": [0.34236079846889866, 0.327065434927492, 0.33057376660360926],
    "log_weights": [0.0, -0.04570488956961384, -0.035035315887870455],
    "ema_cov": [0.2770049783801923, 0.27994379343199394, 0.23585001966578975], "ema_started": [True, True, True]},
    "objective_state": {"accuracy": {}, "conciseness": {"total_tokens": 24, "count": 4}, "clarity": {}}}
CTWA = {"strategy": "ctwa", "strategy_params": {"cov_targets": [0.6, 0.3, 0.3]}}


def test_an_old_plugin_checkpoint_loads_and_is_saved_in_the_engines_format(tmp_path):
    session = S.MOSession(S.MOConfig(**CTWA))
    session.load_state_dict(json.loads(json.dumps(OLD_STATE)))
    np.testing.assert_array_equal(session.strategy.weights(), OLD_STATE["strategy_state"]["weights"])
    assert session.step == 3 and session.objectives[1].state_dict() == {"total_tokens": 24, "count": 4}
    assert session.engine.monitor.reward_history == []  # the old files had no interference monitor
    state = session.state_dict()
    assert state["format_version"] == S.STATE_FORMAT_VERSION
    assert {k: state[k] for k in ("objective_names", "strategy", "monitor")} == session.engine.state_dict()
    assert state["objectives"] == OLD_STATE["objective_state"] and state["step"] == 3
    session.save(tmp_path)
    again = S.MOSession(S.MOConfig(**CTWA))
    again.load(tmp_path)
    assert again.state_dict() == state
    with pytest.raises(ValueError, match="trained with strategy 'ctwa'.*resume with the same algorithm.moalign"):
        S.MOSession(S.MOConfig()).load_state_dict(OLD_STATE)
    with pytest.raises(ValueError, match="format_version 3, but this moalign reads 2"):
        again.load_state_dict({**state, "format_version": 3})


def test_rewards_from_columns_scores_length_objectives_in_the_driver():
    session = S.MOSession(S.MOConfig())  # accuracy, conciseness, clarity
    columns = {"accuracy": [1.0, None, 0.0], "clarity": [0.0, 1.0, 1.0]}
    r = session.rewards_from_columns(columns, lengths=[2, 4, 3])  # running mean 3: only length 2 is below
    np.testing.assert_array_equal(r, [[1.0, 1.0, 0.0], [np.nan, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert session.objectives[1].state_dict() == {"total_tokens": 9, "count": 3}
    session.rewards_from_columns(columns, lengths=[1, 1, 1], training=False)  # validation: the mean stays
    assert session.objectives[1].state_dict() == {"total_tokens": 9, "count": 3}
    with pytest.raises(ValueError, match="reward.reward_manager.name=moalign"):
        session.rewards_from_columns({"accuracy": [1.0]}, lengths=[3])


def test_validation_point_is_the_reference_at_step_0_then_pending():
    session = S.MOSession(S.MOConfig(strategy="hypervolume", max_response_length=10))
    columns = {"accuracy": [1.0, 0.0, None], "clarity": [1.0, 1.0, 1.0], "length": [2, 4, 6]}
    point = session.observe_validation(columns, step=0)
    np.testing.assert_allclose(point, [0.5, 1 - 4 / 10, 1.0])  # the normalised space of docs/design.md
    assert session.strategy.metrics()["pareto_buffer_size"] == 1.0
    session.observe_validation(columns, step=3)
    assert session._validation[1] == 3
    fixed = S.MOSession(S.MOConfig())
    assert fixed.observe_validation(columns, step=0) is None  # fixed weights need no validation


def test_clipped_advantage_weights_by_hand():
    old = torch.zeros(2, 3)
    new = torch.log(torch.tensor([[1.5, 1.0, 0.5], [1.1, 0.7, 1.0]]))
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # row 0: ρ = 1.5 > 1.2 with Â > 0 is clipped -> (0 + 1·1.0 + 1·0.5)/3; row 1: ρ = 0.7 < 0.8 with Â < 0 clipped
    got = S.clipped_advantage_weights(new, old, adv, mask, clip_low=0.2, clip_high=0.2)
    np.testing.assert_allclose(got, [(1.0 + 0.5) / 3, (-2.0 * 1.1) / 2])


def test_compute_score_returns_score_and_one_key_per_text_objective():
    out = compute_score("math", r"First, 2+2. Then \boxed{4}", "4")
    assert out == {"score": 1.0, "accuracy": 1.0, "clarity": 1.0}  # conciseness is scored in the driver
    out = compute_score("math", r"\boxed{5}", "4", objectives=["accuracy"])
    assert out == {"score": 0.0, "accuracy": 0.0}

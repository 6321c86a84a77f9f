"""The verl plugin against verl 0.9.1 itself (CPU): registration, the estimator through verl's own
``compute_advantage`` in the v1 and legacy batch shapes, equality with verl's GDPO/GRPO under fixed weights,
strategies that move over simulated steps, checkpoint state, the reward function/manager contract and the trainer
hooks. Skipped where verl is not installed (the main environment: .ci/run runs these in .venv-verl)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    # verl.protocol, not verl: where verl is not installed, `import verl` finds this tests/verl folder (a namespace
    # package, since pytest puts tests/ on sys.path) and would not skip.
    pytest.importorskip("verl.protocol", reason="verl is not installed: pip install -e '.[verl]' (docs/verl.md)")

from _batches import NAMES, legacy_batch, outcome_tokens, response_mask, rewards_and_layout, v1_batch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

from moalign.integrations.verl import session as S  # noqa: E402

W = [0.5, 0.25, 0.25]


def algo(**extra):
    return OmegaConf.create({"adv_estimator": "moalign", "norm_adv_by_std_in_grpo": True, "gdpo_reward_keys": NAMES,
                             "gdpo_reward_weights": W, **extra})


@pytest.fixture
def session_for():
    def make(**kwargs):
        session = S.MOSession(S.MOConfig(**kwargs))
        S.set_session(session)
        return session

    yield make
    S.set_session(None)


def moalign_advantages(session, rewards, uids, data, config):
    session.stage(rewards, uids)
    return compute_advantage(data, "moalign", config=config).batch["advantages"]


# -- registration ---------------------------------------------------------------------------------------------------
def test_entry_point_registers_estimator_reward_manager_and_trainer():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert eps.get("moalign") == "moalign.integrations.verl.plugin"
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.v1 import get_trainer_cls

    from moalign.integrations.verl.estimator import compute_moalign_advantage
    from moalign.integrations.verl.manager import MORewardManager
    from moalign.integrations.verl.trainer import MOPPOTrainer

    # `import verl` (above) loaded the entry point: nothing here imported the plugin module by hand first
    assert core_algos.get_adv_estimator_fn("moalign") is compute_moalign_advantage
    assert get_reward_manager_cls("moalign") is MORewardManager
    assert get_trainer_cls("moalign") is MOPPOTrainer


# -- the estimator through verl's compute_advantage ------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_weights_equal_verls_gdpo_in_both_batch_shapes(session_for, seed):
    rewards, uids, lengths = rewards_and_layout(seed)  # prompts' rows interleaved, mixed response lengths
    gdpo = compute_advantage(legacy_batch(rewards, uids, lengths), "gdpo", config=algo()).batch["advantages"]
    session = session_for(strategy="fixed", strategy_params={"weights": W})
    v1 = moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
    legacy = moalign_advantages(session, rewards, uids, legacy_batch(rewards, uids, lengths), algo())
    assert gdpo.abs().max() > 0.5
    torch.testing.assert_close(v1, gdpo, atol=1e-6, rtol=0)
    torch.testing.assert_close(legacy, gdpo, atol=1e-6, rtol=0)


@pytest.mark.parametrize("estimator,norm", [("grpo", True), ("grpo", False), ("rloo", True)])
def test_fixed_weights_sum_then_normalize_equal_verls_estimator_on_the_weighted_reward(session_for, estimator, norm):
    rewards, uids, lengths = rewards_and_layout(7)
    config = algo(norm_adv_by_std_in_grpo=norm)
    data = legacy_batch(rewards, uids, lengths)
    data.batch["token_level_rewards"] = outcome_tokens(rewards @ np.array(W), data.batch["response_mask"])
    expected = compute_advantage(data, estimator, config=config, norm_adv_by_std_in_grpo=norm).batch["advantages"]
    session = session_for(strategy_params={"weights": W}, estimator=estimator, aggregation="sum_then_normalize")
    got = moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), config)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_unscored_responses_get_no_advantage_from_that_objective(session_for):
    rewards, uids, lengths = rewards_and_layout(3, shuffle=False)
    rewards[:, 1] = np.nan  # one objective scored nothing: the others decide, as if it were absent
    session = session_for(strategy_params={"weights": [0.5, 0.0, 0.5]}, aggregation="sum_then_normalize")
    got = moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
    data = legacy_batch(rewards, uids, lengths)
    data.batch["token_level_rewards"] = outcome_tokens(0.5 * rewards[:, 0] + 0.5 * rewards[:, 2],
                                                      data.batch["response_mask"])
    torch.testing.assert_close(got, compute_advantage(data, "grpo", config=algo()).batch["advantages"], atol=1e-6,
                               rtol=0)


def test_estimator_without_staged_rewards_says_how_to_run_it(session_for):
    session_for()
    rewards, uids, lengths = rewards_and_layout(0)
    with pytest.raises(ValueError, match="trainer.v1.trainer_mode=moalign"):
        compute_advantage(v1_batch(rewards, uids, lengths), "moalign", config=algo())
    with pytest.raises(ValueError, match="another batch"):
        moalign_advantages(S.current_session(), rewards, uids[::-1], v1_batch(rewards, uids, lengths), algo())


# -- strategies over simulated verl steps -----------------------------------------------------------------------------
def simulate(session, steps, start=0, seed=11):
    """Simulated verl steps: rewards whose accuracy lags, the estimator via compute_advantage, CTWA's post-update
    weights as the clipped advantage weights of an update that did not move the policy much (ρ ≈ 1)."""
    rng = np.random.default_rng(seed)
    weights = []
    for t in range(start + steps):
        rewards, uids, lengths = rewards_and_layout(seed + t)
        rewards[:, 0] = (rng.random(len(rewards)) < 0.2).astype(float)
        mask = response_mask(lengths)
        ratio = torch.exp(0.05 * torch.as_tensor(rng.standard_normal(mask.shape)))
        if t < start:
            continue
        adv = moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
        clipped = S.clipped_advantage_weights(torch.log(ratio), torch.zeros_like(ratio), adv, mask, 0.2, 0.2)
        session.finish_step(clipped if "post_update" in session.needs else None)
        weights.append(session.strategy.weights())
    return np.array(weights)


def test_ctwa_weights_move_over_simulated_steps(session_for):
    # targets above the simulated covariances (≈ 0.25): every objective falls short, by different amounts
    session = session_for(strategy="ctwa", strategy_params={"cov_targets": [0.6, 0.3, 0.3]})
    w = simulate(session, steps=6)
    assert session.step == 6
    assert np.abs(w[-1] - np.array([0.333, 0.333, 0.334])).max() > 1e-3
    assert np.all(np.abs(np.diff(w, axis=0)).sum(1) > 0)  # every step moved them
    metrics = session.metrics()  # the engine's metrics (TRL's keys) under moalign/, and the verl-only ones
    assert {f"moalign/{key}" for key in session.engine.metrics()} <= set(metrics)
    assert {f"moalign/weights/{n}" for n in session.names} <= set(metrics)
    assert {f"moalign/covariance/{n}" for n in session.names} <= set(metrics)
    assert {f"moalign/reward/{n}" for n in session.names} <= set(metrics)
    assert metrics["moalign/weights/accuracy"] == pytest.approx(w[-2][0])  # the weights that scalarised step 6


def test_hypervolume_meta_reward_scales_advantages_after_validation(session_for):
    session = session_for(strategy="hypervolume", strategy_params={"weights": W}, max_response_length=10)
    columns = {"accuracy": [0.2] * 4, "clarity": [0.5] * 4, "length": [8] * 4}
    session.observe_validation(columns, step=0)  # verl's val_before_train: the initial policy's point
    rewards, uids, lengths = rewards_and_layout(5)
    base = moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
    session.observe_validation({"accuracy": [0.6] * 4, "clarity": [0.7] * 4, "length": [5] * 4}, step=1)
    session.finish_step(None)  # after step 1's update: the validation point arrives
    r_pareto = session.strategy.metrics()["r_pareto"]
    assert r_pareto > 1.0
    scaled = moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
    torch.testing.assert_close(scaled, base * r_pareto, atol=1e-5, rtol=1e-5)
    assert session.metrics()["moalign/strategy/r_pareto"] == pytest.approx(r_pareto)


@pytest.mark.parametrize("strategy,params", [("ctwa", {"cov_targets": [0.6, 0.3, 0.3]}), ("lagrangian", {}),
                                             ("pama", {}), ("famo", {})])
def test_state_saved_with_a_checkpoint_continues_the_same_trajectory(session_for, tmp_path, strategy, params):
    straight = simulate(session_for(strategy=strategy, strategy_params=params), steps=5)
    assert np.abs(np.diff(straight, axis=0)).max() > 1e-6  # a trajectory that moves, so the check can fail
    first = session_for(strategy=strategy, strategy_params=params)
    simulate(first, steps=3)
    first.save(tmp_path / "global_step_3")
    resumed = session_for(strategy=strategy, strategy_params=params)
    resumed.load(tmp_path / "global_step_3")
    assert resumed.step == 3
    rest = simulate(resumed, steps=2, start=3)
    np.testing.assert_allclose(rest, straight[3:], atol=1e-12)
    with pytest.raises(ValueError, match="not written by a moalign run"):
        resumed.load(tmp_path)
    other = session_for(strategy="fixed")
    with pytest.raises(ValueError, match="resume with the same algorithm.moalign settings"):
        other.load(tmp_path / "global_step_3")


def test_an_old_plugin_checkpoint_continues_the_same_trajectory(session_for):
    """The pre-engine state file (test_verl_session.OLD_STATE) resumes onto the weights that run went on to take."""
    from test_verl_session import CTWA, OLD_STATE

    resumed = session_for(**CTWA)
    resumed.load_state_dict(OLD_STATE)
    rest = simulate(resumed, steps=2, start=3)
    # what the pre-engine plugin computed for steps 4 and 5 after those 3 steps (commit ae14987)
    np.testing.assert_allclose(rest, [[0.3456796125086259, 0.3253249706356711, 0.32899541685570294],
                                      [0.34912345440546655, 0.3234760494773053, 0.32740049611722816]], atol=1e-12)


def test_the_interference_monitor_flags_an_objective_traded_away(session_for):
    """Accuracy alone drives the advantage (weights 1, 0, 0) while clarity's reward is its opposite within every
    prompt and falls: after the engine's window (5 steps) clarity is logged as traded away, the others are not."""
    session = session_for(strategy_params={"weights": [1.0, 0.0, 0.0]})
    uids = np.array([f"p{i // 4}" for i in range(8)], dtype=object)
    lengths = np.full(8, 5)
    for t in range(6):
        accuracy = np.tile([1.0, 1.0, 0.0, 0.0], 2)
        rewards = np.stack([accuracy, np.full(8, 0.5), (1.0 - accuracy) * (1.0 - 0.1 * t)], axis=1)
        moalign_advantages(session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
        session.finish_step(None)
        flags = {n: session.metrics()[f"moalign/traded_away/{n}"] for n in session.names}
        assert flags == {"accuracy": 0.0, "conciseness": 0.0, "clarity": float(t == 5)}, t


# -- reward function and manager contract ------------------------------------------------------------------------------
def test_custom_reward_function_loads_through_verls_loader():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from moalign.integrations.verl import reward

    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": reward.__file__, "name": "compute_score", "reward_kwargs": {"objectives": ["accuracy", "clarity"]}}}})
    fn = get_custom_reward_fn(config)
    out = fn(data_source="math", solution_str=r"First 2+2. Then \boxed{4}", ground_truth="4", extra_info={})
    assert out == {"score": 1.0, "accuracy": 1.0, "clarity": 1.0}


class _CharTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(int(i)) for i in ids)


def test_reward_manager_scores_objectives_and_adds_the_length():
    from tensordict import TensorDict
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    config = OmegaConf.create({"reward": {"custom_reward_function": {"path": None}},
                               "algorithm": {"moalign": {"objectives": ["accuracy", "conciseness", "clarity"]}}})
    manager = get_reward_manager_cls("moalign")(config, _CharTokenizer(), None)
    text = r"First, 2+2. Then \boxed{4}"
    width = len(text) + 3
    responses = torch.tensor([[ord(c) for c in text] + [0, 0, 0]])
    attention = torch.cat([torch.ones(1, 2, dtype=torch.int64),
                           torch.tensor([[1] * len(text) + [0, 0, 0]])], dim=1)
    data = DataProto(batch=TensorDict({"responses": responses, "attention_mask": attention,
                                       "prompts": torch.ones(1, 2, dtype=torch.int64)}, batch_size=1),
                     non_tensor_batch={"data_source": np.array(["math"], dtype=object),
                                       "reward_model": np.array([{"ground_truth": "4"}], dtype=object)})
    out = manager.loop.run_until_complete(manager.run_single(data))  # verl's loop
    assert out["reward_score"] == 1.0
    info = out["reward_extra_info"]
    assert info["accuracy"] == 1.0 and info["clarity"] == 1.0 and info["length"] == len(text) < width
    assert "conciseness" not in info  # scored in the driver from the response mask


# -- trainer hooks --------------------------------------------------------------------------------------------------
def verl_config(tmp_path, **moalign):
    return OmegaConf.create({
        "algorithm": {"adv_estimator": "moalign", "moalign": moalign},
        "actor_rollout_ref": {"rollout": {"response_length": 10}},
        "trainer": {"default_local_dir": str(tmp_path), "resume_mode": "auto"},
    })


def test_trainer_refuses_gradient_strategies_at_start_up(tmp_path):
    from moalign.integrations.verl.trainer import session_from_config

    with pytest.raises(ValueError, match="under verl use one of: .*ctwa.*hypervolume"):
        session_from_config(verl_config(tmp_path, strategy="gradient"))
    with pytest.raises(ValueError, match="algorithm.adv_estimator=moalign"):
        session_from_config(OmegaConf.merge(verl_config(tmp_path), {"algorithm": {"adv_estimator": "gdpo"}}))
    assert session_from_config(verl_config(tmp_path)).config.max_response_length == 10


def test_trainer_hooks_checkpoint_and_validation(tmp_path, monkeypatch):
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from moalign.integrations.verl.trainer import MOPPOTrainer, session_from_config

    trainer = object.__new__(MOPPOTrainer)  # the hooks only; verl's own parts are stubbed below
    trainer.config = verl_config(tmp_path, strategy="hypervolume", strategy_params={"weights": W})
    trainer.mo_session = session_from_config(trainer.config)
    S.set_session(trainer.mo_session)
    monkeypatch.setattr(PPOTrainerSync, "_save_checkpoint", lambda self: None)
    monkeypatch.setattr(PPOTrainerSync, "_load_checkpoint", lambda self: setattr(self, "global_steps", 4))
    columns = {"reward": [1.0, 0.0], "accuracy": [1.0, 0.0], "clarity": [1.0, 1.0], "length": [4, 6]}
    trainer.global_steps = 0
    metrics = trainer._val_metrics_update(["math", "math"], ["u0", "u1"], columns, [])
    assert metrics["moalign/validation_point/conciseness"] == pytest.approx(0.5)
    assert "val-core/math/reward/mean@1" in metrics  # verl's own validation metrics are kept
    trainer.global_steps = 4
    trainer._save_checkpoint()
    assert os.path.exists(tmp_path / "global_step_4" / S.STATE_FILE)
    S.set_session(None)
    trainer.mo_session = session_from_config(trainer.config)
    trainer._load_checkpoint()
    assert trainer.mo_session.strategy.metrics()["pareto_buffer_size"] == 1.0  # the step-0 point came back
    S.set_session(None)


def test_trainer_update_hook_finishes_the_engines_step_and_logs_its_metrics(tmp_path, monkeypatch):
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from moalign.integrations.verl.trainer import MOPPOTrainer, session_from_config

    trainer = object.__new__(MOPPOTrainer)
    trainer.config = verl_config(tmp_path, strategy="fixed", strategy_params={"weights": W})
    trainer.mo_session = session_from_config(trainer.config)
    S.set_session(trainer.mo_session)
    monkeypatch.setattr(PPOTrainerSync, "_update_actor", lambda self, batch, metrics: batch)  # verl's update
    rewards, uids, lengths = rewards_and_layout(0)
    moalign_advantages(trainer.mo_session, rewards, uids, v1_batch(rewards, uids, lengths), algo())
    metrics = {}
    trainer._update_actor("batch", metrics)
    assert trainer.mo_session.step == 1
    assert metrics == trainer.mo_session.metrics() and metrics["moalign/weights/accuracy"] == W[0]
    assert metrics["moalign/reward/accuracy"] == pytest.approx(rewards[:, 0].mean())
    S.set_session(None)

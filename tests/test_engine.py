"""The step engine (moalign.rl.engine): hand-computed advantages, one per-objective pass per step, the Gram slot asked
only when needed, group ids in any order, needs known before building, state (also old checkpoints), and the
strategy built once through `moalign train`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import moalign.rl.step as step_module
from moalign import weighting
from moalign.rl.engine import StepEngine
from moalign.rl.monitor import InterferenceMonitor

NAMES = ["a", "b", "c"]
# (8, 3): 4 prompts x 2 completions; column b has one unscored completion
REWARDS = np.array([
    [1.0, 0.2, 0.0], [0.0, 0.4, 1.0],
    [1.0, 0.9, 0.5], [1.0, 0.1, 0.5],
    [0.0, np.nan, 1.0], [1.0, 0.3, 0.0],
    [0.0, 0.6, 0.2], [0.0, 0.8, 0.4],
])


def _by_hand_fixed(rewards, weights, g):
    """sum_then_normalize, grpo, scale_rewards='none', written out: NaN counts as 0 in the weighted sum, then the
    group mean is subtracted."""
    s = np.nan_to_num(rewards) @ np.asarray(weights)
    return (s.reshape(-1, g) - s.reshape(-1, g).mean(1, keepdims=True)).reshape(-1)


def test_fixed_step_equals_a_hand_computation():
    engine = StepEngine(NAMES, "fixed", {"weights": [0.5, 0.3, 0.2]}, scale_rewards="none")
    out = engine.step(REWARDS, num_generations=2, step=3, lr=1e-3)
    np.testing.assert_allclose(out.advantages.numpy(), _by_hand_fixed(REWARDS, [0.5, 0.3, 0.2], 2), atol=1e-6)
    # per-objective advantages: each column minus its group's nan-mean, 0 where unscored
    grouped = REWARDS.reshape(4, 2, 3)
    expected = np.nan_to_num(grouped - np.nanmean(grouped, axis=1, keepdims=True)).reshape(8, 3)
    np.testing.assert_allclose(out.per_objective_advantages.numpy(), expected, atol=1e-6)
    assert out.record.step == 3 and out.record.stats.lr == 1e-3
    assert out.metrics["weights/a"] == 0.5 and out.metrics["lr_scale"] == 1.0
    assert set(out.metrics) >= {"covariance/a", "covariance/b", "covariance/c", "advantage_scale"}


def test_per_objective_advantages_are_computed_once_and_handed_to_the_gram_slot(monkeypatch):
    calls = []
    real = step_module.compute_advantages

    def counting(rewards, *args, **kwargs):
        calls.append(tuple(rewards.shape))
        return real(rewards, *args, **kwargs)

    monkeypatch.setattr(step_module, "compute_advantages", counting)
    seen = []

    def gram(adv):
        seen.append(adv.clone())
        return np.eye(3), np.zeros(3)

    engine = StepEngine(NAMES, "gradient", estimator="rloo", gram=gram)
    per_objective = engine.begin(REWARDS, num_generations=2)
    engine.weigh()
    assert calls == [(8, 3), (8,)]  # one per-objective pass, one pass on the scalar rewards
    assert len(seen) == 1 and torch.equal(seen[0], per_objective)
    np.testing.assert_array_equal(engine.record.stats.gram, np.eye(3))


def test_an_estimator_function_replaces_the_named_estimator_in_both_passes():
    """A framework's own estimator (the verl plugin passes verl's GRPO) goes in as a function: it computes the
    per-objective advantages and, under sum_then_normalize, those of the weighted reward."""
    calls = []

    def centred(r, num_generations, scale_rewards):  # written with numpy: group mean-centring, NaN stays NaN
        calls.append((tuple(r.shape), scale_rewards))
        x = r.numpy().astype(np.float64)
        grouped = x.reshape(-1, num_generations, *x.shape[1:])
        return torch.as_tensor((grouped - np.nanmean(grouped, axis=1, keepdims=True)).reshape(x.shape))

    engine = StepEngine(NAMES, "fixed", {"weights": [0.5, 0.3, 0.2]}, estimator=centred, scale_rewards="none")
    out = engine.step(REWARDS, num_generations=2)
    assert calls == [((8, 3), "none"), ((8,), "none")]
    np.testing.assert_allclose(out.advantages.numpy(), _by_hand_fixed(REWARDS, [0.5, 0.3, 0.2], 2), atol=1e-6)
    assert not torch.isnan(out.per_objective_advantages).any()  # unscored -> 0, as with a named estimator
    named = StepEngine(NAMES, "fixed", {"weights": [0.5, 0.3, 0.2]}, estimator="grpo", scale_rewards="none")
    torch.testing.assert_close(out.per_objective_advantages, named.step(REWARDS, num_generations=2)
                               .per_objective_advantages, atol=1e-6, rtol=0)
    assert engine.run_info()["advantage_estimator"] == "centred"
    with pytest.raises(ValueError, match="unknown advantage_estimator 'gae'.*or pass an estimator function"):
        StepEngine(NAMES, estimator="gae")


def test_the_gram_slot_is_asked_only_when_the_strategy_needs_it():
    def refuse(_adv):
        raise AssertionError("the fixed strategy needs no Gram")

    StepEngine(NAMES, "fixed").step(REWARDS, num_generations=2, gram=refuse)
    with pytest.raises(ValueError, match="needs per-objective gradient statistics"):
        StepEngine(NAMES, "mgda").step(REWARDS, num_generations=2)
    skipped = StepEngine(NAMES, "gradient").step(REWARDS, num_generations=2,
                                                 gram=lambda adv: (_ for _ in ()).throw(step_module.StepSkipped("x")))
    assert skipped.record.skip_reason == "x"


@pytest.mark.parametrize(("strategy", "params"), [("fixed", {"weights": [0.5, 0.3, 0.2]}), ("ctwa", {}),
                                                  ("hypervolume", {"point_source": "train_batch"})])
def test_group_ids_in_any_order_equal_consecutive_blocks(strategy, params):
    """verl hands rows in any order with a uid per prompt: the result is the consecutive-block result, permuted."""
    rng = np.random.default_rng(0)
    perm = rng.permutation(8)
    groups = np.arange(8) // 2
    blocks = StepEngine(NAMES, strategy, dict(params))
    shuffled = StepEngine(NAMES, strategy, dict(params))
    a = blocks.step(REWARDS, num_generations=2)
    b = shuffled.step(REWARDS[perm], group_ids=[f"uid{g}" for g in groups[perm]])
    np.testing.assert_allclose(b.advantages.numpy(), a.advantages.numpy()[perm], atol=1e-6)
    np.testing.assert_allclose(b.per_objective_advantages.numpy(), a.per_objective_advantages.numpy()[perm],
                               atol=1e-6)
    np.testing.assert_allclose(b.record.covariance, a.record.covariance, atol=1e-9)
    clipped = np.linspace(-1, 1, 8)
    blocks.finish(clipped_advantage_weights=clipped)
    shuffled.finish(clipped_advantage_weights=clipped[perm])
    np.testing.assert_allclose(shuffled.weights(), blocks.weights(), atol=1e-12)
    with pytest.raises(ValueError, match="same number of completions.*disable filters that drop single"):
        StepEngine(NAMES).step(REWARDS, group_ids=[0, 0, 0, 1, 1, 2, 2, 3])
    with pytest.raises(ValueError, match="the batch is empty"):
        StepEngine(NAMES).step(np.zeros((0, 3)), group_ids=[])
    with pytest.raises(ValueError, match="exactly one of num_generations"):
        StepEngine(NAMES).step(REWARDS)


def test_needs_are_known_without_building_the_strategy():
    for name in weighting.available():
        assert weighting.needs_for(name) == frozenset(weighting.build(name, 3).needs), name
    for source in ("validation", "train_batch"):
        built = weighting.build("hypervolume", 3, point_source=source)
        assert weighting.needs_for("hypervolume", {"point_source": source}) == built.needs
    with pytest.raises(ValueError, match="unknown weighting strategy 'magic'"):
        weighting.needs_for("magic")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['mu'\]"):
        weighting.needs_for("fixed", {"mu": 1.0})


def test_finish_runs_after_update_and_the_monitor():
    engine = StepEngine(NAMES, "ctwa", interference_window=1)
    before = engine.weights()
    engine.step(REWARDS, num_generations=2)
    record = engine.finish(clipped_advantage_weights=np.linspace(-1, 1, 8))
    assert not np.allclose(engine.weights(), before)  # CTWA adapted after the update
    assert record.strategy_metrics == engine.strategy.metrics()
    line = engine.log_line(record, step=1, rl_step=1, timings={"generate": 0.5}, unscored={"a": 0})
    assert line["weights"] == dict(zip(NAMES, record.weights.tolist())) and line["timings"] == {"generate": 0.5}
    json.dumps(line)  # JSON types only


def test_state_round_trip_and_refusals():
    engine = StepEngine(NAMES, "ctwa")
    for _ in range(2):
        engine.step(REWARDS, num_generations=2)
        engine.finish(clipped_advantage_weights=np.linspace(-1, 1, 8))
    state = json.loads(json.dumps(engine.state_dict()))
    restored = StepEngine(NAMES, "ctwa")
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    with pytest.raises(ValueError, match="trained with strategy 'ctwa', but this run uses 'fixed'"):
        StepEngine(NAMES, "fixed").load_state_dict(state)
    with pytest.raises(ValueError, match=r"trained with objectives \['a', 'b', 'c'\], but this run has \['a', 'b'\]"):
        StepEngine(["a", "b"], "ctwa", {"cov_targets": [0.1, 0.1]}).load_state_dict(state)
    with pytest.raises(ValueError, match="wrong length"):
        restored.load_state_dict({**state, "monitor": {"neg_cov_streak": [0, 0], "reward_history": []}})


# moalign_state.json as the trainer wrote it before the engine existed (commit 7f01475, ctwa, 3 steps)
OLD_STATE = json.loads("""{"format_version": 1, "step": 3, "objective_names": ["accuracy", "conciseness", "clarity"],
 "strategy": {"name": "ctwa", "state": {"weights": [0.3358049685440403, 0.33089967817310656, 0.3332953532828532],
 "log_weights": [0.0, -0.014715298328083022, -0.007501497003743578], "ema_cov": [0.0, 0.03443717203103006, 0.0],
 "ema_started": [true, true, true]}}, "objectives": {"accuracy": {}, "conciseness": {"total_tokens": 269, "count": 24},
 "clarity": {}}, "monitor": {"neg_cov_streak": [0, 0, 0], "reward_history": [[0.0, 0.125, 0.0], [0.0, 0.125, 0.0],
 [0.0, 0.125, 0.0]]}}""")


def test_an_old_moalign_state_file_loads():
    engine = StepEngine(["accuracy", "conciseness", "clarity"], "ctwa")
    engine.load_state_dict(OLD_STATE)
    assert engine.weights().tolist() == OLD_STATE["strategy"]["state"]["weights"]  # restored, not recomputed
    assert engine.monitor.reward_history[0].tolist() == [0.0, 0.125, 0.0]
    state = engine.state_dict()
    assert {k: state[k] for k in ("objective_names", "strategy", "monitor")} == {
        k: OLD_STATE[k] for k in ("objective_names", "strategy", "monitor")}
    no_monitor = {k: v for k, v in OLD_STATE.items() if k != "monitor"}  # states from before the monitor existed
    StepEngine(["accuracy", "conciseness", "clarity"], "ctwa").load_state_dict(no_monitor)


def test_interference_monitor_flags_and_restores():
    m = InterferenceMonitor(["a", "b"], window=2)
    assert m.update(np.array([0.1, -0.2]), np.array([0.5, 0.9])) == []
    saved = m.state_dict()
    assert m.update(np.array([0.1, -0.2]), np.array([0.6, 0.8])) == []
    assert m.update(np.array([0.1, -0.2]), np.array([0.7, 0.7])) == ["b"]
    again = InterferenceMonitor(["a", "b"], window=2)
    again.load_state_dict(saved)
    assert again.update(np.array([0.1, -0.2]), np.array([0.6, 0.8])) == []
    assert again.update(np.array([0.1, -0.2]), np.array([0.7, 0.7])) == ["b"]


@pytest.mark.parametrize("strategy", ["fixed", "gradient"])
def test_moalign_train_builds_the_strategy_once(tmp_path, monkeypatch, strategy):
    """Config, needs check and trainer used to build the strategy three times; now the engine builds it once."""
    from typer.testing import CliRunner

    from moalign.cli import app

    cls = weighting.STRATEGIES[strategy]
    built = []
    original = cls.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", counting)
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: tiny\ndataset: synthetic\nrun_dir: {run}\noutput_dir: {run / 'checkpoints'}\n"
                   f"strategy: {strategy}\nmax_steps: 1\nmax_completion_length: 8\nreport_to: none\n"
                   "save_strategy: 'no'\nper_device_train_batch_size: 4\nnum_generations: 4\n")
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.output
    assert built == [cls.__name__]
    assert len((run / "steps.jsonl").read_text().splitlines()) == 1


def test_the_engine_is_framework_free():
    """rl/engine.py and its helpers import numpy, torch, moalign.weighting and moalign.rl only (no TRL,
    transformers or accelerate), so a verl or OpenRLHF adapter can use them."""
    import ast
    import sys
    from pathlib import Path

    import moalign.rl

    allowed = {"numpy", "torch", "__future__"} | set(sys.stdlib_module_names)
    for name in ("engine.py", "monitor.py", "step.py", "post_update.py", "advantages.py", "covariance.py"):
        tree = ast.parse((Path(moalign.rl.__file__).parent / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [node.module.split(".")[0]]
            elif isinstance(node, ast.ImportFrom):  # relative: within moalign.rl, or moalign.weighting
                target = node.module or ".".join(a.name for a in node.names)
                assert node.level == 1 or target.startswith("weighting"), (name, target)
                continue
            else:
                continue
            assert set(roots) <= allowed, (name, roots)


def test_interference_monitor_warns_once_per_run_of_flagged_steps(caplog):
    """Every flagged step is returned, but the warning goes out when an objective becomes flagged, not at each step
    it stays flagged (a 30-step run used to print the same warning up to 25 times)."""
    m = InterferenceMonitor(["a", "b"], window=1)
    rewards = [0.9, 0.8, 0.7, 0.6, 0.7, 0.6, 0.5]  # b's mean falls at every step except the 4th update
    flags = []
    with caplog.at_level("WARNING", logger="moalign.rl.monitor"):
        for r in rewards:
            flags.append(m.update(np.array([0.1, -0.2]), np.array([0.5, r])))
    assert flags == [[], ["b"], ["b"], ["b"], [], ["b"], ["b"]]
    assert caplog.text.count("objective 'b' is being traded away") == 2  # steps 2 and 6: each start of a run

"""The meta-policy gate: a contextual bandit (mabwiser LinUCB) over expert mixtures."""

from __future__ import annotations

import numpy as np
import pytest

from moalign.meta.gate import MixtureGate, completion_scores, prompt_features, simplex_grid, simulate

# Simulated problem: 6 mixtures of 3 experts; arm a scores S[a] on the three objectives; the reward of arm a for
# preference p is p · S[a] (+ noise). The best arm depends on p (the problem is contextual) and is known exactly.
ARMS = simplex_grid(3, 0.5)
S = np.array([[0.2, 0.3, 0.9],   # [0, 0, 1]   clarity expert
              [0.5, 0.6, 0.6],   # [0, .5, .5]
              [0.3, 0.9, 0.1],   # [0, 1, 0]   conciseness expert
              [0.7, 0.2, 0.7],   # [.5, 0, .5]
              [0.6, 0.6, 0.3],   # [.5, .5, 0]
              [0.9, 0.1, 0.4]])  # [1, 0, 0]   accuracy expert


def _run(policy_choose, policy_update, seed=0, rounds=400):
    rng = np.random.default_rng(seed)
    prefs = rng.dirichlet(np.ones(3), size=rounds)
    return simulate(policy_choose, policy_update, lambda p: S @ p, prefs, rng, noise=0.05)


def test_bandit_beats_a_fixed_random_gate_on_a_known_problem():
    for seed in range(3):
        gate = MixtureGate(ARMS, num_objectives=3, num_features=0, alpha=0.5, seed=seed)
        regret_gate = _run(lambda p: gate.choose(p, []), lambda a, r, p: gate.update(a, r, p, []), seed=seed)
        rng = np.random.default_rng(100 + seed)
        regret_random = _run(lambda p: int(rng.integers(len(ARMS))), lambda a, r, p: None, seed=seed)
        late_gate, late_random = regret_gate[-100:].mean(), regret_random[-100:].mean()
        assert late_gate < 0.5 * late_random, (seed, late_gate, late_random)
        # the regret of the bandit shrinks over time (it learns), the random gate's does not
        assert regret_gate[-100:].mean() < regret_gate[:100].mean(), seed
        # mean reward is higher: the regret difference is the reward difference on the same contexts
        assert regret_gate.sum() < regret_random.sum()


def test_gate_state_is_json_and_reloads_to_the_same_choices(tmp_path):
    gate = MixtureGate(ARMS, num_objectives=3, num_features=0, seed=1)
    _run(lambda p: gate.choose(p, []), lambda a, r, p: gate.update(a, r, p, []), rounds=60)
    path = gate.save(tmp_path / "gate.json")
    again = MixtureGate.load(path)
    probe = np.random.default_rng(5).dirichlet(np.ones(3), size=20)
    assert [gate.choose(p, []) for p in probe] == [again.choose(p, []) for p in probe]
    assert again.state_dict() == gate.state_dict()


def test_gate_cold_start_plays_every_arm_once():
    gate = MixtureGate(num_experts=2, num_objectives=2, num_features=0)
    assert len(gate.arms) == 5  # simplex grid with step 0.25
    seen = []
    for _ in range(5):
        a = gate.choose([0.5, 0.5], [])
        gate.update(a, 0.0, [0.5, 0.5], [])
        seen.append(a)
    assert seen == [0, 1, 2, 3, 4]


def test_gate_errors_name_the_problem():
    with pytest.raises(ValueError, match="policy must be one of linucb, lints, epsilon_greedy"):
        MixtureGate(ARMS, num_objectives=3, policy="ucb1")
    with pytest.raises(ValueError, match="arm 1 has 2 entries"):
        MixtureGate([[1, 0, 0], [0.5, 0.5]], num_objectives=3)
    gate = MixtureGate(ARMS, num_objectives=3)
    with pytest.raises(ValueError, match="preference has 2 entries"):
        gate.context([0.5, 0.5])
    with pytest.raises(ValueError, match="features has 2 entries"):
        gate.context([0.2, 0.3, 0.5], [1.0, 2.0])
    with pytest.raises(ValueError, match="step must divide 1"):
        simplex_grid(3, 0.3)
    with pytest.raises(FileNotFoundError, match="no gate state"):
        MixtureGate.load("/nonexistent/gate.json")


def test_simplex_grid_is_the_whole_grid():
    grid = np.array(simplex_grid(3, 0.25))
    assert len(grid) == 15  # C(4 + 2, 2)
    np.testing.assert_allclose(grid.sum(1), 1.0)
    assert len({tuple(g) for g in grid.tolist()}) == 15


def test_prompt_features_and_completion_scores():
    f = prompt_features("12+7-4=?")
    assert len(f) == 3 and f[1] == pytest.approx(4 / 8) and f[2] == pytest.approx(3 / 8)
    from moalign.objectives import build_objective

    objs = [build_objective(n) for n in ("accuracy", "conciseness", "clarity")]
    rows = [{"prompt": [{"role": "user", "content": "1+2=?"}], "answer": "3"}] * 2
    texts = ["\\boxed{3}", "First, 1+2=4.\nThen, 4+0=4.\n\\boxed{4}"]
    scores = completion_scores(objs, rows, texts, [[0] * 10, [0] * 30], max_new_tokens=40)
    np.testing.assert_allclose(scores, [[1.0, 0.75, 0.0], [0.0, 0.25, 1.0]])

"""The ``habits`` member of the synthetic task family (issue 29): its data, its habit objective, and the other
members left bit for bit as they were."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from moalign.data.synthetic import (HABIT_SHARES, SyntheticConfig, generate_problem, habits_shown, load_synthetic,
                                    render_habits_solution, sft_examples)
from moalign.objectives import HABITS, Accuracy, Habit, build_objectives
from moalign.warmstart import WarmStartConfig

PROB = {"operands": [17, 5, 4], "ops": ["+", "-"], "values": [22, 18]}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def test_existing_members_unchanged_bit_for_bit():
    # digests and keys computed with the code before the habits member existed (HEAD 0f9a0f0)
    assert _digest(sft_examples(SyntheticConfig(variant="coupled"), 3000, seed=0)) == "61e7e225cd6449a7"
    assert _digest(sft_examples(SyntheticConfig(variant="async"), 3000, seed=0)) == "c928c47db46d4035"
    assert WarmStartConfig().cache_key() == "6bd3419a8db3615b"
    assert WarmStartConfig(task=SyntheticConfig(variant="async")).cache_key() == "8c453461cb0acd74"
    assert WarmStartConfig(task=SyntheticConfig(variant="habits")).cache_key() not in {"6bd3419a8db3615b",
                                                                                      "8c453461cb0acd74"}


def test_every_habit_alone_is_recognised_and_only_it():
    for habit in HABITS:
        text = render_habits_solution(PROB, {habit})
        assert [h for h, shown in habits_shown(text).items() if shown] == [habit], (habit, text)
    assert not any(habits_shown(render_habits_solution(PROB, set())).values())
    assert all(habits_shown(render_habits_solution(PROB, set(HABITS))).values())


def test_habits_need_an_answer_and_line_habits_need_every_line():
    assert not any(habits_shown("#\n1. 17+5 = 22.\n\nOK").values())  # no \boxed{}
    mixed = "1. 17+5=22.\n-> 22-4=18\n\\boxed{18}"
    assert habits_shown(mixed)["numbered"] is False and habits_shown(mixed)["period"] is False


def test_forgotten_carry_is_wrong_and_changes_no_habit():
    right, slipped = render_habits_solution(PROB, {"label"}), render_habits_solution(PROB, {"label"}, forget={0})
    assert Accuracy()([right, slipped], answer=["18", "18"]) == [1.0, 0.0]
    assert habits_shown(right) == habits_shown(slipped)


def test_warm_start_shares_are_exact_and_independent():
    n = 2000
    texts = [e["completion"][0]["content"] for e in sft_examples(SyntheticConfig(variant="habits"), n, seed=0)]
    shown = np.array([[habits_shown(t)[h] for h in HABITS] for t in texts], dtype=float)
    np.testing.assert_allclose(shown.mean(axis=0), [HABIT_SHARES[h] for h in HABITS], atol=1 / n)
    corr = np.corrcoef(shown.T)
    off_diagonal = np.abs(corr[~np.eye(len(HABITS), dtype=bool)])
    assert off_diagonal.max() < 0.1, corr.round(2)  # independent draws: |r| ~ 1/sqrt(n) = 0.02
    assert max(len(t) for t in texts) < 64 - 2  # completion plus <eos> fits the bench's 64 tokens


def test_habits_member_keeps_problems_and_rejects_other_members_fields():
    for split in ("train", "val", "test"):
        a = load_synthetic(seed=0, n_train=20, n_val=10, n_test=10, variant="habits")[split]
        b = load_synthetic(seed=0, n_train=20, n_val=10, n_test=10, variant="async")[split]
        assert a["problem"] == b["problem"] and a["answer"] == b["answer"]
    with pytest.raises(ValueError, match="do not apply to variant='habits'"):
        SyntheticConfig(variant="habits", marker_share=0.5)
    import random

    prob = generate_problem(random.Random(0), SyntheticConfig(variant="habits"))
    assert all(habits_shown(prob["solution"]).values())
    assert Accuracy()([prob["solution"]], answer=[prob["answer"]]) == [1.0]


def test_habit_objective_builds_from_config_entries_with_distinct_names():
    objs = build_objectives(["accuracy", {"name": "habit", "habit": "numbered"}, {"name": "habit", "habit": "gap"}])
    assert [o.name for o in objs] == ["accuracy", "habit_numbered", "habit_gap"]
    assert repr(objs[2]) == "Habit(habit='gap')"
    assert Habit(habit="gap")(["1. 2+3=5\n\n\\boxed{5}", "1. 2+3=5\n\\boxed{5}"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="habit must be one of numbered"):
        build_objectives([{"name": "habit", "habit": "italics"}])


def test_demo_refuses_the_habits_member_with_the_bench_command():
    from moalign.demo import DemoConfig

    with pytest.raises(ValueError, match="moalign bench --task habits --objectives K"):
        DemoConfig(task="habits")


def test_habits_warm_start_is_shipped_and_shows_every_habit_at_its_share(tmp_path, monkeypatch):
    from moalign.warmstart import SHIPPED, warm_start

    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))  # an empty cache: the shipped checkpoint must answer
    cfg = WarmStartConfig(task=SyntheticConfig(variant="habits"))
    path = warm_start(cfg, progress=False)
    assert path == SHIPPED / cfg.cache_key()
    meta = json.loads((path / "warmstart.json").read_text())
    assert WarmStartConfig.from_dict(meta["config"]).cache_key() == meta["cache_key"] == cfg.cache_key()
    sampled = meta["calibration"]["sampled"]
    for habit in HABITS:  # 200 sampled val completions: within ~3 binomial standard deviations of the data's share
        share = HABIT_SHARES[habit]
        assert abs(sampled["habits"][habit] - share) < 3 * np.sqrt(share * (1 - share) / 200) + 0.01, habit
    assert 0.3 < sampled["accuracy"] < 0.7 and sampled["truncated"] == 0.0

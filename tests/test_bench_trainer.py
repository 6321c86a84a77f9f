"""benchmarks/bench_trainer.py (issue 29 item 4): the strategies suite at K objectives, the Gram suite's K = 8 rows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from moalign import weighting

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    if "bench_trainer" in sys.modules:  # it registers its own strategies: load it once per session
        return sys.modules["bench_trainer"]
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports step_timer from its own folder
    try:
        spec = importlib.util.spec_from_file_location("bench_trainer", ROOT / "benchmarks" / "bench_trainer.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_trainer"] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def _public_strategies():
    return sorted(n for n in weighting.available() if not n.startswith("_"))


def test_strategies_suite_defaults_to_the_three_objectives_as_before(bench):
    rows = bench.suite_configs(bench.parse_args(["--suite", "strategies"]))
    assert rows[0] == ("fixed", "fixed", {}, 3, "grpo", False)
    assert sorted(r[1] for r in rows) == _public_strategies()
    assert all(r[3] == 3 for r in rows)
    params = {r[1]: r[2] for r in rows}
    assert params["hypervolume"] == {"point_source": "train_batch"}
    assert all(p == {} for n, p in params.items() if n != "hypervolume")  # CTWA keeps its K = 3 default targets
    assert [o.name for o in bench._objectives(3)] == bench.BASE_OBJECTIVES


def test_strategies_suite_at_eight_objectives_builds_every_strategy(bench):
    rows = bench.suite_configs(bench.parse_args(["--suite", "strategies", "--objectives", "8"]))
    assert sorted(r[1] for r in rows) == _public_strategies() and all(r[3] == 8 for r in rows)
    names = [o.name for o in bench._objectives(8)]
    assert len(names) == len(set(names)) == 8
    for label, strategy, params, k, est, plain in rows:
        strat = weighting.build(strategy, k, names, **params)  # CTWA would refuse K = 8 without its targets
        assert strat.num_objectives == 8 and not plain
        assert est == ("rloo" if "gram" in strat.needs else "grpo")
    hv = next(r for r in rows if r[1] == "hypervolume")
    assert hv[2] == {"point_source": "train_batch"}  # exact ΔHV of each step's batch means, no validation pass


def test_the_new_rule_objectives_score_completions(bench):
    objs = bench._objectives(8)
    completions = [[{"role": "assistant", "content": "The answer is 12."}], [{"role": "assistant", "content": "x"}]]
    extra = {name: fn(completions) for name, fn in bench.EXTRA}
    assert extra["has_upper"] == [1.0, 0.0] and extra["few_words"] == [1.0, 1.0]
    assert [o.name for o in objs][-2:] == ["has_upper", "few_words"]


@pytest.mark.parametrize("argv", [["--suite", "strategies", "--objectives", "9"],
                                  ["--suite", "strategies", "--objectives", "2"],
                                  ["--suite", "gram", "--objectives", "8"]])
def test_objectives_out_of_range_or_on_another_suite_is_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_gram_suite_has_k8_rows_next_to_fixed_k8(bench):
    rows = {r[0]: r for r in bench.suite_configs(bench.parse_args(["--suite", "gram"]))}
    assert rows["MOGRPOTrainer Gram K=8"][1:5] == ("_bench_gram", {}, 8, "rloo")
    assert rows["MOGRPOTrainer fixed K=8"][1:5] == ("fixed", {"weights": [1 / 8] * 8}, 8, "rloo")
    assert rows["MOGRPOTrainer fixed K=3"] == bench.SUITES["gram"][0]  # still the baseline (first row)

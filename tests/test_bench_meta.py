"""benchmarks/bench_meta.py (issue 29 item 4): K random experts (up to 8) and the CPU-time clock."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_meta", ROOT / "benchmarks" / "bench_meta.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eight_random_experts_timed_by_cpu_clock(tmp_path):
    out = tmp_path / "meta.json"
    result = _bench().main(["--k", "8", "--rounds", "1", "--batch", "2", "--max-new-tokens", "2", "--threads", "1",
                            "--clock", "cpu", "--out", str(out)])
    assert result["experts"] == 8 and result["clock"] == "cpu"  # six names only before: K = 8 got 6 experts
    assert json.loads(out.read_text())["experts"] == 8
    assert {(r["aggregation"], r["mixture"]) for r in result["rows"]} == {
        (a, m) for a in ("parameter", "logit", "hidden") for m in ("uniform", "one-hot")}
    assert all(r["ms_per_step_median"] >= 0 for r in result["rows"])


def test_cpu_clock_is_refused_off_the_cpu():
    with pytest.raises(SystemExit):
        _bench().main(["--clock", "cpu", "--device", "cuda"])

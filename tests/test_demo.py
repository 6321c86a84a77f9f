"""`moalign demo --quick` end to end (the CI smoke test of the main job) and the demo's configuration checks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from moalign.cli import app
from moalign.demo import METHODS, DemoConfig
from moalign.rundir import read_jsonl


def test_quick_demo_writes_report_and_evaluations(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    report = out / "report"
    assert {"index.html", "fronts.png", "weights.png", "summary.json"} <= {p.name for p in report.iterdir()}
    html = (report / "index.html").read_text()
    assert "data:image/png;base64," in html  # self-contained: images embedded, nothing fetched
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["methods"]) == {m[0] for m in METHODS}
    for label, *_ in METHODS:
        run = out / f"{label}-seed0"
        assert [e["step"] for e in read_jsonl(run / "evals.jsonl")] == [0, 2, 4], label
        assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == [1, 2, 3, 4], label


def test_demo_config_errors():
    with pytest.raises(ValueError, match="unknown demo method"):
        DemoConfig(methods=["fixed-accuracy", "magic"])
    with pytest.raises(ValueError, match="--steps and --seeds must be >= 1"):
        DemoConfig(steps=0)
    assert DemoConfig(quick=True).steps == 4

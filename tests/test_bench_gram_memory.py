"""benchmarks/bench_gram_memory.py (issue 29 item 4): the probe's largest (K, numel) block and --json, tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rows_carry_the_largest_block_and_go_to_json(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_gram_memory", ROOT / "benchmarks" / "bench_gram_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def in_process(cmd, **_):  # the children, measured in this process (fast; the peak RSS is not checked here)
        arg = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
        r = bench._measure(int(arg["--k"]), int(arg["--hidden"]), int(arg["--layers"]), int(arg["--batch"]),
                           int(arg["--length"]), arg["--mode"])
        return types.SimpleNamespace(stdout=json.dumps(r))

    monkeypatch.setattr(bench.subprocess, "run", in_process)
    out = tmp_path / "rows.json"
    rows = bench.main(["--k", "2", "--hidden", "64", "--layers", "3", "--batch", "1", "--length", "4",
                       "--json", str(out)])
    assert [(r["mode"], r["k"]) for r in rows] == [("backward", 1), ("probe", 2)]
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows and saved["args"]["k"] == [2] and "model" in saved["cpu"]
    probe = rows[1]
    # the (K, numel) block of the largest probed tensor: K × (its numel) × 4 bytes, at most K × probed × 4 bytes
    assert 0 < probe["largest_block_MiB"] <= probe["k_x_probed_MiB"]
    assert "largest (K, numel) block (MiB)" in capsys.readouterr().out

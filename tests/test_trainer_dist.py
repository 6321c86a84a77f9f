"""MOGRPOTrainer on two CPU processes (gloo, torchrun): unscored counts are summed over ranks, evaluation runs on the
main process only and its result reaches every rank (same strategy state everywhere)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_gather_counts_and_evaluate_once(tmp_path):
    script = Path(__file__).with_name("_trainer_dist.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(script), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    # steps 0, 1, 2: the main process generates, the other rank only receives the broadcast metrics
    assert [r["evaluate_calls"] for r in ranks] == [3, 0]
    assert ranks[0]["strategy_state"] == ranks[1]["strategy_state"]  # the same validation points on both ranks
    evals = (tmp_path / "run" / "evals.jsonl").read_text().splitlines()
    assert [json.loads(e)["step"] for e in evals] == [0, 1, 2]
    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    # each rank leaves its first completion unscored: 2 of the 8 gathered completions per step
    assert [s["unscored"] for s in steps] == [{"first_unscored": 2, "char_sum": 0}] * 2


def test_moalign_train_under_torchrun_ends_cleanly_and_prints_once(tmp_path):
    """``torchrun -m moalign.cli train``: every rank ends its process group (a live gloo group at interpreter exit
    can abort a rank, failing the launch after training finished), and only the main process prints the outputs."""
    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "moalign.cli", "train", str(root / "examples" / "math500_tiny_fixed.yaml"),
           "--run_dir", str(run), "--output_dir", str(run / "checkpoints"), "--max_steps", "1",
           "--max_completion_length", "8", "--mo_eval_steps", "0", "--save_strategy", "no"]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("run directory:") == 1, proc.stdout
    assert "terminate called" not in proc.stderr
    assert [s["step"] for s in (json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines())] == [1]


def test_full_trainer_under_fsdp2_matches_ddp_and_a_single_process_engine(tmp_path):
    """The whole trainer (generation, Gram probe, engine, update, logs) under FSDP2 on 2 gloo processes, gradient
    strategy, 2 steps: the same weights, Grams and rewards as plain DDP on the same per-rank batches (whose Gram is the
    brute-force global Gram: tests/test_gram.py), and the weights a single-process engine computes from the gathered
    rewards and Grams the ranks saw. (A single-process *training* run samples other completions: one RNG stream
    draws all 8, where each rank draws 4 from its own.)"""
    import numpy as np

    from moalign import weighting
    from moalign.rl.engine import StepEngine

    script = Path(__file__).with_name("_trainer_fsdp.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for mode in ("fsdp2", "ddp"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(script), mode, str(tmp_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=script.parent, env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
    fsdp, ddp = (json.loads((tmp_path / f"{m}.json").read_text()) for m in ("fsdp2", "ddp"))
    assert fsdp["skip"] == [None, None]
    np.testing.assert_allclose(fsdp["weights"], ddp["weights"], rtol=1e-6)
    np.testing.assert_allclose([s["gram"] for s in fsdp["seen"]], [s["gram"] for s in ddp["seen"]], rtol=1e-5)
    np.testing.assert_allclose(fsdp["rewards"], ddp["rewards"], rtol=1e-6)
    assert abs(fsdp["weights"][1][0] - 0.5) > 1e-3  # the weights moved
    engine = StepEngine(["distinct", "alpha"], weighting.build("gradient", 2, mu=1e-2, normalize="none"))
    for step, (seen, weights) in enumerate(zip(fsdp["seen"], fsdp["weights"])):
        assert np.asarray(seen["rewards"]).shape == (8, 2)  # 2 ranks x 4 completions, gathered
        engine.step(np.asarray(seen["rewards"]), num_generations=4, step=step, lr=seen["lr"],
                    gram=lambda _adv, g=seen["gram"]: np.asarray(g))
        engine.finish()
        np.testing.assert_allclose(engine.record.weights, weights, rtol=1e-9)

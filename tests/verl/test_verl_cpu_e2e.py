"""verl end to end on CPU: ``python -m verl.trainer.main_ppo`` with the moalign estimator, reward manager and trainer,
verl's FSDP2 engine on gloo, the HF rollout (moalign.integrations.verl.cpu), the synthetic task as verl parquet and
the shipped warm-started tiny model; 3 GRPO steps of 2 prompts x 4 responses per run (tests/verl/_cpu_run.py).

Each run is a real verl run (Ray, TransferQueue, agent loop, reward loop workers, FSDP2 update, weight sync to the
rollout, checkpoint). They are module fixtures, so each runs once however many tests read it. Skipped without verl.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pytest.importorskip("verl.protocol", reason="verl is not installed: pip install -e '.[verl]' (docs/verl.md)")

from _cpu_run import run_verl  # noqa: E402

from moalign.integrations.verl.session import STATE_FILE  # noqa: E402

W = [0.5, 0.25, 0.25]
NAMES = ["accuracy", "conciseness", "clarity"]
CTWA = ["+algorithm.moalign.strategy=ctwa", "+algorithm.moalign.strategy_params={cov_targets:[0.6,0.3,0.3]}"]


def finished(records, proc, steps=3):
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert [r["step"] for r in records if "moalign/weights/accuracy" in r["data"]] == list(range(1, steps + 1))
    return {r["step"]: r["data"] for r in records}


def weights(metrics: dict, step: int) -> np.ndarray:
    return np.array([metrics[step][f"moalign/weights/{n}"] for n in NAMES])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verl_cpu")
    cache: dict[str, tuple] = {}

    def get(name: str, *overrides: str, **kwargs):
        if name not in cache:
            cache[name] = run_verl(root / name, *overrides, **kwargs)
        return cache[name]

    get.root = root
    return get


def test_fixed_weights_give_verls_gdpo_advantages_in_a_real_run(runs):
    """Every step's advantages, as the run wrote them to verl's TransferQueue, equal verl's GDPO
    (``compute_advantage(..., "gdpo")``) with the same weights on the same batch (tests/verl/_recording.py)."""
    record = runs.root / "fixed_record.jsonl"
    records, proc = runs("fixed", "+algorithm.moalign.strategy=fixed",
                         "+algorithm.moalign.strategy_params={weights:[0.5,0.25,0.25]}",
                         "trainer.v1.trainer_mode=moalign_recording",
                         extra_env={"MOALIGN_VERL_RECORD": str(record),
                                    "VERL_USE_EXTERNAL_MODULES": "moalign.integrations.verl.cpu,_recording"})
    metrics = finished(records, proc)
    steps = [json.loads(line) for line in record.read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]
    for s in steps:
        ours, gdpo = np.array(s["advantages"]), np.array(s["gdpo_advantages"])
        assert len(ours) == 8 and len(set(s["uids"])) == 2  # 2 prompts x 4 responses
        np.testing.assert_allclose(ours, gdpo, atol=1e-5, rtol=0, err_msg=f"step {s['step']}")
    assert max(np.abs(s["advantages"]).max() for s in steps) > 0.5  # rewards varied: a check that can fail
    for step in (1, 2, 3):
        np.testing.assert_allclose(weights(metrics, step), W)


def test_ctwa_weights_move_and_reach_verls_logger_and_the_checkpoint(runs):
    records, proc = runs("ctwa", *CTWA, "trainer.save_freq=2")
    metrics = finished(records, proc)
    w = np.array([weights(metrics, t) for t in (1, 2, 3)])
    assert np.allclose(w.sum(1), 1.0)
    assert np.abs(np.diff(w, axis=0)).max() > 1e-4, w  # CTWA changed the weights between steps
    assert {f"moalign/covariance/{n}" for n in NAMES} <= set(metrics[3])
    assert {f"moalign/strategy/ema_cov/{n}" for n in NAMES} <= set(metrics[3])
    state = json.loads((runs.root / "ctwa" / "checkpoints" / "global_step_2" / STATE_FILE).read_text())
    assert state["step"] == 2 and state["strategy"]["name"] == "ctwa"
    assert (runs.root / "ctwa" / "checkpoints" / "global_step_2" / "actor").is_dir()  # beside verl's own files


def test_resume_from_step_2_continues_the_same_weight_trajectory(runs):
    straight = finished(*runs("ctwa", *CTWA, "trainer.save_freq=2"))
    folder = runs.root / "ctwa" / "checkpoints" / "global_step_2"
    records, proc = runs("ctwa_resumed", *CTWA, "trainer.save_freq=2", "trainer.resume_mode=resume_path",
                         f"trainer.resume_from_path={folder}")
    assert proc.returncode == 0, proc.stderr[-6000:]
    resumed = {r["step"]: r["data"] for r in records}
    assert sorted(resumed) == [3]  # it started at step 3
    # same weights for step 3, and the same weights after step 3's after_update (in the step-3 checkpoint)
    np.testing.assert_allclose(weights(resumed, 3), weights(straight, 3), atol=1e-9)
    end_straight = json.loads((runs.root / "ctwa" / "checkpoints" / "global_step_3" / STATE_FILE).read_text())
    end_resumed = json.loads((runs.root / "ctwa_resumed" / "checkpoints" / "global_step_3" / STATE_FILE).read_text())
    # After step 3's update the two runs differ by float32 rounding: the agent loop returns the same responses in
    # whatever order they finish, the update sums them in that order, and CTWA's post-update pass reads the updated
    # actor's log-probs. Measured apart on ema_cov: 6e-9 and 1.6e-6 on two runs, and 1.2e-5 on one (its
    # step-3 covariance 1.2e-4 apart), which failed the earlier tolerance of 1e-5. A restarted strategy would be ~0.1
    # off, so 1e-3 still tells the two apart.
    assert _close(end_resumed["strategy"], end_straight["strategy"], tol=1e-3), (end_resumed, end_straight)
    assert _close(end_resumed["monitor"], end_straight["monitor"], tol=1e-3)
    assert end_resumed["step"] == end_straight["step"] == 3


def _close(a, b, tol=1e-9) -> bool:
    """Equal JSON trees, floats to ``tol``."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol
    return a == b


def test_hypervolume_r_pareto_and_weights_reach_verls_logger(runs):
    records, proc = runs("hypervolume", "+algorithm.moalign.strategy=hypervolume",
                         "+algorithm.moalign.strategy_params={weights:[0.5,0.25,0.25]}",
                         "trainer.val_before_train=True", "trainer.test_freq=1")
    metrics = finished(records, proc)
    for step in (1, 2, 3):
        np.testing.assert_allclose(weights(metrics, step), W)  # hypervolume keeps the weights; r_pareto adapts
        assert "moalign/strategy/r_pareto" in metrics[step]
    assert {f"moalign/validation_point/{n}" for n in NAMES} <= set(metrics[1])
    r_pareto = [metrics[t]["moalign/strategy/r_pareto"] for t in (1, 2, 3)]
    assert any(abs(r - 1.0) > 1e-6 for r in r_pareto), r_pareto  # a validation point moved the meta-reward


def test_a_gram_strategy_is_refused_at_start_with_the_documented_message(runs):
    records, proc = runs("gradient", "+algorithm.moalign.strategy=gradient", timeout_s=300)
    assert proc.returncode != 0 and not records
    assert "strategy 'gradient' needs per-objective policy gradients (gram)" in proc.stderr
    assert "under verl use one of: " in proc.stderr and "ctwa" in proc.stderr


@pytest.mark.slow
def test_the_example_script_runs_math500_on_cpu(tmp_path):
    """``DEVICE=cpu examples/verl/run_math500.sh`` end to end on the shipped Math500 split with the tiny model:
    2 CTWA steps, validation before training, a checkpoint at the end (sizes shrunk on the command line)."""
    import os
    import subprocess
    from pathlib import Path

    from _cpu_run import shipped_model

    root = Path(__file__).resolve().parents[2]
    model = shipped_model(tmp_path / "model")
    env = {**os.environ, "DEVICE": "cpu", "MODEL_PATH": str(model), "STEPS": "2", "OUT": str(tmp_path / "out"),
           "OMP_NUM_THREADS": "1", "VERL_FILE_LOGGER_PATH": str(tmp_path / "metrics.jsonl")}
    shrink = ["data.train_batch_size=2", "actor_rollout_ref.rollout.n=4", "data.max_response_length=32",
              "actor_rollout_ref.actor.ppo_mini_batch_size=2", "data.val_max_samples=4",
              "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
              "trainer.logger=[console,file]", "+ray_kwargs.ray_init.include_dashboard=False"]
    proc = subprocess.run(["bash", str(root / "examples" / "verl" / "run_math500.sh"), *shrink], env=env,
                          capture_output=True, text=True, timeout=1200, cwd=tmp_path, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-6000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "moalign/weights/accuracy" in r["data"]] == [1, 2]
    assert (tmp_path / "out" / "checkpoints" / "global_step_2" / STATE_FILE).exists()

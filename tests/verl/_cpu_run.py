"""One CPU run of verl's own entry point (``python -m verl.trainer.main_ppo``) with the moalign plugin, for the
end-to-end tests: the synthetic task exported as verl parquet, the shipped warm-started tiny model, the HF rollout,
FSDP2 on gloo, Ray with one logical GPU. ``run_verl(...)`` returns the run's logged metrics per step.

Run by hand (prints the log path)::

    python tests/verl/_cpu_run.py runs/verl_run +algorithm.moalign.strategy=ctwa
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from moalign.integrations.verl.cpu_config import CPU_MODULE, cpu_overrides, write_synthetic_parquet

HERE = Path(__file__).resolve().parent


def shipped_model(out: Path) -> Path:
    """A copy of the shipped warm-started tiny model (it answers the synthetic task some of the time, so every
    objective varies within a prompt's group)."""
    from moalign.warmstart import SHIPPED

    source = sorted(p for p in SHIPPED.iterdir() if (p / "model.safetensors").exists())[0]
    if not out.exists():
        shutil.copytree(source, out)
    return out


def run_overrides(data: Path, model: Path, out: Path, steps: int, modules: str = CPU_MODULE) -> list[str]:
    """Hydra overrides of a small CPU run: verl on CPU (moalign.integrations.verl.cpu_config), moalign, 2 prompts x
    4 responses per step."""
    return [
        *cpu_overrides(modules),
        "+ray_kwargs.ray_init.include_dashboard=False",  # seconds of CPU per run on a 2-core machine
        # moalign
        "algorithm.adv_estimator=moalign", "trainer.v1.trainer_mode=moalign", "reward.reward_manager.name=moalign",
        "+algorithm.moalign.objectives=[accuracy,conciseness,clarity]",
        "algorithm.use_kl_in_reward=False", "actor_rollout_ref.actor.use_kl_loss=False",
        # data and sizes: 2 prompts x 4 responses per step, short answers
        f"data.train_files={data}/train.parquet", f"data.val_files={data}/val.parquet",
        "data.train_batch_size=2", "data.val_batch_size=4", "data.val_max_samples=4",
        "data.max_prompt_length=32", "data.max_response_length=40", "data.shuffle=False",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        # trainer
        "trainer.logger=[console,file]", "trainer.project_name=moalign_cpu", "trainer.experiment_name=run",
        f"trainer.default_local_dir={out}/checkpoints", f"trainer.total_training_steps={steps}",
        "trainer.total_epochs=1", "trainer.save_freq=-1", "trainer.test_freq=-1", "trainer.val_before_train=False",
        "trainer.resume_mode=disable",
    ]


def merge(base: list[str], overrides: tuple[str, ...] | list[str]) -> list[str]:
    """``base`` with the keys that ``overrides`` sets replaced (Hydra refuses a key given twice)."""
    def key(item: str) -> str:
        return item.split("=", 1)[0].lstrip("+")

    replaced = {key(item) for item in overrides}
    return [item for item in base if key(item) not in replaced] + list(overrides)


def run_verl(out: Path, *overrides: str, steps: int = 3, timeout_s: int = 600,
             extra_env: dict[str, str] | None = None) -> tuple[list[dict], subprocess.CompletedProcess]:
    """Run main_ppo on CPU into ``out``; returns the file logger's records (``{"step", "data"}``) and the process."""
    out.mkdir(parents=True, exist_ok=True)
    data = write_synthetic_parquet(out.parent / "data")
    model = shipped_model(out.parent / "model")
    log = out / "metrics.jsonl"
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": CPU_MODULE, "VERL_FILE_LOGGER_PATH": str(log),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_DEDUP_LOGS": "0",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **(extra_env or {})}
    command = [sys.executable, "-m", "verl.trainer.main_ppo", *merge(run_overrides(data, model, out, steps, env["VERL_USE_EXTERNAL_MODULES"]), overrides)]
    # its own session, so that a timeout stops Ray's processes too (raylet, workers), not only the driver
    with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        popen = subprocess.Popen(command, cwd=out, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            popen.wait(timeout=timeout_s)
        finally:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
    proc = subprocess.CompletedProcess(command, popen.returncode, (out / "stdout.txt").read_text(),
                                       (out / "stderr.txt").read_text())
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return records, proc


if __name__ == "__main__":
    records, proc = run_verl(Path(sys.argv[1]), *sys.argv[2:])
    print(proc.stderr[-6000:])
    print(f"rc={proc.returncode}; {len(records)} logged steps; logs in {sys.argv[1]}")

"""The Hydra overrides that run a verl 0.9.1 config on CPU with :mod:`.cpu` (docs/verl.md, "verl on CPU").

Plus the embedded synthetic task as verl parquet, the smallest data to try a config on. Importable without verl: the CPU tests, ``benchmarks/gpu_check.py --dry-run`` and
``DEVICE=cpu examples/verl/run_math500.sh`` (which spells the same list in shell) use it. The environment variable
:data:`CPU_ENV` must be set in the driver's environment too (verl picks its platform at ``import verl``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CPU_ENV", "CPU_MODULE", "cpu_overrides", "write_synthetic_parquet"]

CPU_MODULE = "moalign.integrations.verl.cpu"
CPU_ENV = {"VERL_USE_EXTERNAL_MODULES": CPU_MODULE}


def cpu_overrides(modules: str = CPU_MODULE) -> list[str]:
    """verl overrides for a CPU run; ``modules``: ``VERL_USE_EXTERNAL_MODULES`` for the Ray workers (comma-separated,
    the CPU module first)."""
    return [
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "+ray_kwargs.ray_init.num_gpus=1",  # logical: verl's resource pools ask Ray for GPUs
        "ray_kwargs.ray_init.num_cpus=16",  # logical too: verl starts more single-CPU actors than a laptop has cores
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES='{modules}'",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "actor_rollout_ref.actor.strategy=fsdp2",  # FSDP1's sync_module_states needs an accelerator
        "actor_rollout_ref.ref.strategy=fsdp2",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",  # no flash-attn on CPU
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.mode=async",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "reward.num_workers=1",
        "data.dataloader_num_workers=0",
    ]


def write_synthetic_parquet(out: Path, n_train: int = 32, n_val: int = 8) -> Path:
    """The synthetic task's problems as verl parquet (``prompt``, ``data_source``, ``reward_model``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from moalign.data.synthetic import load_synthetic

    out.mkdir(parents=True, exist_ok=True)
    data = load_synthetic(n_train=max(n_train, 2), n_val=max(n_val, 1), n_test=1)
    for split in ("train", "val"):
        rows = [{"data_source": "moalign/synthetic", "prompt": row["prompt"], "ability": "math",
                 "reward_model": {"ground_truth": row["answer"], "style": "rule"},
                 "extra_info": {"index": i, "split": split}} for i, row in enumerate(data[split])]
        pq.write_table(pa.Table.from_pylist(rows), out / f"{split}.parquet")
    return out

"""verl 0.9.1 on CPU, through verl's own extension points (opt-in; docs/verl.md, "verl on CPU").

verl has no CPU platform: its platform manager falls back to ``nvidia``, the FSDP engine is registered for ``cuda``
and ``npu`` only, and its Ray workers start a ``"cpu:gloo,<device>:<backend>"`` process group, which torch refuses
when both halves are ``cpu``. Importing this module adds what is missing, without touching verl's files:

* a ``cpu`` platform in verl's ``PlatformRegistry`` (device ``cpu``, backend ``gloo``, Ray resource ``GPU`` so that
  verl's placement groups schedule on the logical GPUs given to Ray with ``ray_init.num_gpus``), made the current
  platform where no accelerator is present;
* verl's FSDP engines registered with ``EngineRegistry`` for ``device="cpu"`` (use ``strategy=fsdp2``: FSDP1 passes
  ``sync_module_states=True``, which torch refuses for CPU parameters);
* :class:`CPUActorRolloutRefWorker`, verl's actor worker that starts a plain ``gloo`` process group before verl's
  own initialisation would try the mixed one; the moalign trainer swaps it in when ``trainer.device=cpu``;
* (the HF ``generate`` rollout, ``actor_rollout_ref.rollout.name=hf``, comes with the plugin: :mod:`.hf_rollout`).

Load it in every verl process before verl picks its platform: ``VERL_USE_EXTERNAL_MODULES=moalign.integrations.
verl.cpu`` in the environment of the driver and of the Ray workers (``+ray_kwargs.ray_init.runtime_env.env_vars``).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

from .cpu_platform import PLATFORM, PlatformCPU, enable_platform

enable_platform()  # before the verl imports below: verl fixes its platform on first use

# ruff: noqa: E402
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead
from verl.workers.engine_workers import ActorRolloutRefWorker

__all__ = ["CPUActorRolloutRefWorker", "PlatformCPU", "enable", "init_gloo_process_group", "use_cpu_workers"]

#: verl's FSDP engines, registered for ``device="cpu"`` (both ``fsdp`` and ``fsdp2``; only fsdp2 runs on CPU).
FSDP_ENGINES = {"language_model": FSDPEngineWithLMHead, "value_model": FSDPEngineWithValueHead}


def init_gloo_process_group(timeout_s: int = 1800) -> None:
    """A plain ``gloo`` process group from the rank variables verl's Ray workers carry (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT``); verl's own initialisation then finds it started and keeps it."""
    if torch.distributed.is_initialized():
        return
    torch.distributed.init_process_group(backend="gloo", rank=int(os.environ.get("RANK", 0)),
                                         world_size=int(os.environ.get("WORLD_SIZE", 1)),
                                         timeout=timedelta(seconds=timeout_s),
                                         init_method=os.environ.get("DIST_INIT_METHOD", None))


class CPUActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's actor/rollout/reference worker with a plain ``gloo`` process group (verl would ask for
    ``"cpu:gloo,cpu:gloo"``)."""

    def __init__(self, *args, **kwargs):
        init_gloo_process_group()
        super().__init__(*args, **kwargs)


def use_cpu_workers(role_worker_mapping: dict) -> None:
    """Swap verl's actor worker for :class:`CPUActorRolloutRefWorker` in a v1 trainer's ``role_worker_mapping``
    (``_init_resource_pool_mgr``), in place."""
    import ray

    for role, remote_cls in list(role_worker_mapping.items()):
        if getattr(remote_cls, "__ray_actor_class__", None) is ActorRolloutRefWorker:
            role_worker_mapping[role] = ray.remote(CPUActorRolloutRefWorker)


def _register_engines() -> None:
    for model_type, engine in FSDP_ENGINES.items():
        registered = EngineRegistry._engines.get(model_type, {})
        backends = [b for b in ("fsdp", "fsdp2") if PLATFORM not in registered.get(b, {})]
        if backends:
            EngineRegistry.register(model_type=model_type, backend=backends, device=PLATFORM)(engine)


def enable() -> None:
    """Register the CPU platform and the FSDP engines for ``cpu`` (idempotent); make the CPU the current platform
    when torch sees no CUDA device. (The HF rollout is registered by the plugin, CPU or not.)"""
    enable_platform()
    _register_engines()


enable()

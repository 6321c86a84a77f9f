"""verl's platform interface for the host CPU (device ``cpu``, backend ``gloo``), registered with verl's
``PlatformRegistry`` by :func:`enable_platform`.

It is its own module, importing nothing of verl but the platform manager, because verl fixes its platform the first
time any verl module asks for it: :mod:`.cpu` calls :func:`enable_platform` before importing verl's engines.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry, get_platform, set_platform

__all__ = ["PLATFORM", "PlatformCPU", "enable_platform"]

PLATFORM = "cpu"


class _CPUDeviceModule(ModuleType):
    """``torch.cpu`` plus the ``torch.cuda`` calls verl makes on its device module (memory, RNG, caches), answered
    for the host: memory figures come from the process and the machine, cache calls do nothing."""

    def __init__(self):
        super().__init__("moalign_verl_cpu_device")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    @staticmethod
    def empty_cache() -> None:
        return None

    ipc_collect = empty_cache

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        import psutil  # Ray's dependency, so present wherever verl runs

        memory = psutil.virtual_memory()
        return int(memory.available), int(memory.total)

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        return None

    @staticmethod
    def get_rng_state(device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        return "cpu"

    @staticmethod
    def get_device_capability(device: Any = None) -> tuple[None, None]:
        return None, None


DEVICE_MODULE = _CPUDeviceModule()


class PlatformCPU(PlatformBase):
    """verl's platform interface for the host CPU: device ``cpu``, backend ``gloo``, no profiler, no IPC."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # verl probes platforms in registration order; this one is last, so an accelerator always wins
        return True

    def current_device(self) -> str:
        # verl passes this to .to(...) and device=...; on CPU torch reads an int as an accelerator index and fails
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[None, None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # Ray sets it for logical GPUs; CPU torch ignores it

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"  # logical GPUs (ray_init.num_gpus): verl's resource pools ask for accelerators by this name

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def enable_platform() -> None:
    """Register the ``cpu`` platform (idempotent) and make it verl's current platform where torch sees no CUDA
    device; verl's ``VERL_PLATFORM`` is set too, so that processes started from this one agree."""
    if PlatformRegistry.get(PLATFORM) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM)(PlatformCPU)
    if torch.cuda.is_available() or os.environ.get("VERL_PLATFORM", PLATFORM) != PLATFORM:
        return
    os.environ["VERL_PLATFORM"] = PLATFORM
    if get_platform().device_name != PLATFORM:
        set_platform(PlatformCPU())

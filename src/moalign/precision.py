"""The training precision: one rule for every path that trains or evaluates (docs/trainer.md, "Precision").

TRL's ``GRPOConfig`` turns ``bf16`` on whenever ``fp16`` is off, and Accelerate then runs every forward (update,
generation, evaluation) under bf16 autocast, on CPU too. On a CPU without bf16 hardware that autocast is emulated:
one forward+backward of the demo model took 11x longer than in float32 on an AMD EPYC (AVX2), and 2-37x per phase
under AVX2 emulation here. With bf16 hardware (AMX, AVX512-BF16) bf16 autocast pays only for large enough models:
it was slower than float32 for the demo model (0.6 M parameters) and about 2x faster for SmolLM2-135M
(docs/BENCHMARKS.md, "Precision on CPU").

The rule, applied when ``MOGRPOConfig`` is built with ``bf16`` unset, and again by ``MOGRPOTrainer`` once it knows the
model's size:

* a ``bf16`` or ``fp16`` the user set always wins (bf16 on a CPU without bf16 hardware is warned about);
* training on CPU (``use_cpu``, or no accelerator): float32, unless the CPU has bf16 hardware and the model has at
  least :data:`CPU_BF16_MIN_PARAMETERS` parameters, where bf16 autocast was measured faster;
* an accelerator with bf16 support: bf16 mixed precision (TRL's default);
* an accelerator without it: float32.

The choice is logged once per process and recorded in ``run.json`` (``precision``).
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["CPU_BF16_MIN_PARAMETERS", "PrecisionChoice", "choose_precision", "cpu_has_native_bf16", "cpu_info",
           "has_accelerator"]

logger = logging.getLogger(__name__)

#: With bf16 hardware, bf16 autocast beats float32 on CPU from about this model size on (AMX, one thread, CPU time;
#: docs/BENCHMARKS.md "Precision on CPU"): the 0.6 M demo model's update and generation took 1.29x and 1.22x
#: float32's time (per-op casts dominate tiny matrices); at 7.3 M 0.68x and 0.89x, at 23 M 0.58x and 0.77x, and
#: SmolLM2 (135 M) 0.50x and 0.56x.
CPU_BF16_MIN_PARAMETERS = 10_000_000

_logged: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run trains in and why; ``record()`` is what ``run.json`` stores under ``precision``."""

    device: str  # "cpu" or "accelerator"
    dtype: str  # "float32", "bf16 mixed" or "fp16 mixed"
    bf16: bool
    fp16: bool
    set_by_user: bool
    reason: str

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        if self.device == "cpu":
            out["cpu"] = cpu_info()
        return out


@cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 in hardware here (AVX512-BF16 or AMX); False where it would be emulated, and
    under ``ONEDNN_MAX_CPU_ISA=AVX2``, which emulates a CPU without it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def cpu_info() -> dict[str, Any]:
    """The CPU a timing or a run is recorded with: model name, the SIMD level torch dispatches to, native bf16, and
    torch's thread count now (not cached: a bench or demo worker sets it to 1 after start-up)."""
    import torch

    return {"model": _cpu_model(), "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads()}


@cache
def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def has_accelerator() -> bool:
    """Whether transformers would train on something other than the CPU (CUDA, MPS, XPU, NPU, HPU, XLA)."""
    import torch
    from transformers.utils import (
        is_torch_hpu_available,
        is_torch_mps_available,
        is_torch_npu_available,
        is_torch_xla_available,
        is_torch_xpu_available,
    )

    return bool(torch.cuda.is_available() or is_torch_mps_available() or is_torch_xpu_available()
                or is_torch_npu_available() or is_torch_hpu_available() or is_torch_xla_available())


def _accelerator_has_bf16() -> bool:
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    return bool(is_torch_bf16_gpu_available() or is_torch_xla_available())


def choose_precision(*, bf16: bool | None, fp16: bool | None, use_cpu: bool,
                     n_parameters: int | None = None) -> PrecisionChoice:
    """Apply the rule of this module's docstring. ``bf16=None`` means unset; ``fp16`` unset is ``None`` or False;
    ``n_parameters`` is the model's size where known (None when a config is built before its model)."""
    on_cpu = bool(use_cpu) or not has_accelerator()
    device = "cpu" if on_cpu else "accelerator"
    if bf16 is not None or fp16:
        bf16, fp16 = bool(bf16) and not fp16, bool(fp16)
        dtype = "bf16 mixed" if bf16 else ("fp16 mixed" if fp16 else "float32")
        reason = "set in the config"
        if on_cpu and bf16 and not cpu_has_native_bf16():
            reason += ("; this CPU has no bf16 hardware, so bf16 autocast is emulated (2-37x slower than float32 per phase: "
                       "docs/BENCHMARKS.md, 'Precision on CPU'); unset bf16 to train in float32")
        choice = PrecisionChoice(device, dtype, bf16, fp16, True, reason)
    elif on_cpu and not cpu_has_native_bf16():
        choice = PrecisionChoice(device, "float32", False, False, False,
                                 "training on CPU without bf16 hardware, where bf16 autocast is emulated")
    elif on_cpu and n_parameters is not None and n_parameters >= CPU_BF16_MIN_PARAMETERS:
        choice = PrecisionChoice(device, "bf16 mixed", True, False, False,
                                 f"training on CPU with bf16 hardware, model of {n_parameters / 1e6:.0f} M parameters "
                                 f"(>= {CPU_BF16_MIN_PARAMETERS / 1e6:.0f} M): bf16 autocast measured faster")
    elif on_cpu:
        size = "size not known yet" if n_parameters is None else f"{n_parameters / 1e6:.1f} M parameters"
        choice = PrecisionChoice(device, "float32", False, False, False,
                                 f"training on CPU with bf16 hardware, model {size} (bf16 autocast pays from "
                                 f"{CPU_BF16_MIN_PARAMETERS / 1e6:.0f} M parameters)")
    elif _accelerator_has_bf16():
        choice = PrecisionChoice(device, "bf16 mixed", True, False, False, "the accelerator supports bf16")
    else:
        choice = PrecisionChoice(device, "float32", False, False, False, "the accelerator does not support bf16")
    if n_parameters is not None or choice.set_by_user or not (on_cpu and cpu_has_native_bf16()):
        _log_once(choice)  # a provisional choice (CPU with bf16 hardware, size unknown) is logged once it is final
    return choice


def log_for_runs(model_dir) -> None:
    """Log, once, the precision the runs of ``moalign demo``/``bench`` will train in (their pool workers do not log):
    float32 unless ``bf16`` is set, for a model of the size ``warmstart.json`` records."""
    import json

    meta = Path(model_dir) / "warmstart.json"
    n_parameters = json.loads(meta.read_text()).get("n_parameters") if meta.exists() else None
    choose_precision(bf16=None, fp16=None, use_cpu=True, n_parameters=n_parameters)


def choose_for_model(args, model) -> None:
    """Re-decide ``args``' precision now that the model is known (``MOGRPOTrainer``, before Accelerate is set up):
    only where the config left it unset and the CPU has bf16 hardware, the one case that depends on the size."""
    choice = getattr(args, "precision", None)
    if choice is None or choice.set_by_user or choice.device != "cpu" or not cpu_has_native_bf16():
        return
    if not hasattr(model, "parameters"):  # a path TRL loads itself: float32, as provisionally chosen
        _log_once(choice)
        return
    args.precision = choose_precision(bf16=None, fp16=None, use_cpu=True,
                                      n_parameters=sum(p.numel() for p in model.parameters()))
    args.bf16 = args.precision.bf16
    # TrainingArguments derived this from bf16 in __post_init__; the trainer's Accelerator reads it.
    args.mixed_precision = "bf16" if args.bf16 else "no"


def _log_once(choice: PrecisionChoice) -> None:
    import multiprocessing

    key = (choice.dtype, choice.reason)
    if key in _logged or multiprocessing.parent_process() is not None:
        return  # a pool worker of `moalign demo`/`bench`: the command logged its runs' choice (log_for_runs)
    _logged.add(key)
    level = logging.WARNING if "emulated" in choice.reason else logging.INFO
    logger.log(level, "precision: %s on %s (%s); set bf16/fp16 in the config to choose", choice.dtype,
               choice.device, choice.reason)

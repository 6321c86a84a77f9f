"""Build verl's FSDP engine (``TrainingWorker``, strategy fsdp2) on a tiny random model on CPU, in this process, and
print ``ENGINE <class>`` with the time taken. Run by tests/verl/test_verl_cpu.py as a subprocess (it starts a gloo
process group). The CPU platform comes from ``VERL_USE_EXTERNAL_MODULES=moalign.integrations.verl.cpu``."""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", sys.argv[1] if len(sys.argv) > 1 else "29533")
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")

import torch  # noqa: E402

torch.set_num_threads(1)
start = time.perf_counter()

import verl  # noqa: E402, F401  (loads the CPU module and the plugin)
from verl.trainer.config import CheckpointConfig  # noqa: E402
from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig  # noqa: E402
from verl.workers.engine_workers import TrainingWorker, TrainingWorkerConfig  # noqa: E402

from moalign.integrations.verl.cpu import init_gloo_process_group  # noqa: E402
from moalign.tiny import tiny_model_and_tokenizer  # noqa: E402

model_dir = tempfile.mkdtemp()
model, tokenizer = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
model.save_pretrained(model_dir)
tokenizer.save_pretrained(model_dir)
init_gloo_process_group()
worker = TrainingWorker(TrainingWorkerConfig(
    model_type="language_model",
    model_config=HFModelConfig(path=model_dir, override_config={"attn_implementation": "sdpa"}),
    engine_config=FSDPEngineConfig(strategy="fsdp2", model_dtype="fp32"),
    optimizer_config=FSDPOptimizerConfig(lr=1e-3),
    checkpoint_config=CheckpointConfig(),
))
worker.reset()  # builds the model (verl's apply_monkey_patch), FSDP2 wrapping, optimizer
print(f"ENGINE {type(worker.engine).__name__} {time.perf_counter() - start:.1f}s", flush=True)
torch.distributed.destroy_process_group()

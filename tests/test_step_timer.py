"""benchmarks/step_timer.py (issue 29 item 4): the step timer includes MOGRPOTrainer's end-of-step work."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from datasets import Dataset

from moalign import weighting
from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer

ROOT = Path(__file__).resolve().parents[1]
END_OF_STEP_SECONDS = 0.4


def _timer_module():
    spec = importlib.util.spec_from_file_location("step_timer", ROOT / "benchmarks" / "step_timer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@weighting.register("_slow_after_update")
class _SlowAfterUpdate(weighting.WeightingStrategy):
    """Fixed uniform weights whose after_update (end-of-step work, as CTWA's post-update forward) sleeps."""

    def after_update(self, stats):
        time.sleep(END_OF_STEP_SECONDS)


def _trainer(tmp_path, **kwargs):
    model, tok = tiny_model_and_tokenizer(seed=0, hidden_size=32, num_hidden_layers=1, intermediate_size=64)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"{i}+1=?"}], "answer": str(i + 1)}
                              for i in range(8)])
    cfg = MOGRPOConfig(output_dir=str(tmp_path), objectives=["accuracy", "clarity"], strategy="_slow_after_update",
                       per_device_train_batch_size=4, num_generations=2, max_completion_length=4, max_steps=2,
                       learning_rate=1e-4, report_to="none", use_cpu=True, seed=0, save_strategy="no",
                       disable_tqdm=True, logging_steps=1000)
    return MOGRPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok, **kwargs)


def test_attached_timer_includes_the_end_of_step_work(tmp_path):
    trainer = _trainer(tmp_path)
    timer = _timer_module().WholeStepTimer().attach(trainer)
    assert trainer.callback_handler.callbacks[-1] is timer
    trainer.train()
    assert len(timer.times) == 2 and min(timer.times) >= END_OF_STEP_SECONDS, timer.times


def test_timer_given_as_a_constructor_callback_is_refused(tmp_path):
    """Given as callbacks=[timer], its on_step_end would run before the trainer's and miss that work."""
    timer = _timer_module().WholeStepTimer()
    trainer = _trainer(tmp_path, callbacks=[timer])
    timer._callbacks = trainer.callback_handler.callbacks
    with pytest.raises(RuntimeError, match="must be the trainer's last callback"):
        trainer.train()

"""The precision rule (moalign.precision, docs/trainer.md "Precision"): one place decides bf16 or float32.

* on CPU the default is float32, except on a CPU with bf16 hardware for a model of at least
  ``CPU_BF16_MIN_PARAMETERS`` parameters (where bf16 autocast was measured faster), decided once the trainer knows
  the model;
* a ``bf16``/``fp16`` the user sets always wins, and bf16 on a CPU without bf16 hardware is warned about;
* on an accelerator, bf16 where it is supported (TRL's default), float32 where it is not;
* the choice is logged once per process, recorded in ``run.json``, and the demo/bench path trains in it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

import moalign.precision as precision
from moalign.trainer import MOGRPOConfig


@pytest.fixture
def fresh_log(monkeypatch):
    monkeypatch.setattr(precision, "_logged", set())


@pytest.mark.parametrize("native_bf16", [False, True])
def test_on_cpu_a_config_alone_trains_in_float32(tmp_path, monkeypatch, native_bf16, fresh_log):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    args = MOGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    # TRL's GRPOConfig alone would have turned bf16 on here (bf16 = not fp16).
    assert args.bf16 is False and args.fp16 is False
    assert args.precision.dtype == "float32" and args.precision.device == "cpu"
    assert not args.precision.set_by_user
    assert ("with bf16 hardware" if native_bf16 else "without bf16 hardware") in args.precision.reason


def _tiny_trainer(tmp_path, **config):
    from datasets import Dataset

    from moalign.tiny import tiny_model_and_tokenizer
    from moalign.trainer import MOGRPOTrainer

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=1)
    args = MOGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=4,
                        num_generations=2, max_completion_length=4, max_steps=1, **config)
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "1+1=?"}], "answer": "2"}] * 4)
    return MOGRPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tok), model


@pytest.mark.parametrize(("native_bf16", "threshold", "mixed"), [
    (True, 1, "bf16"),  # bf16 hardware and a model above the threshold: bf16 autocast
    (True, 10 ** 12, "no"),  # bf16 hardware, model below it (the demo model): float32
    (False, 1, "no"),  # no bf16 hardware: float32 whatever the size
])
def test_the_trainer_decides_by_the_models_size_on_a_cpu_with_bf16_hardware(tmp_path, monkeypatch, fresh_log,
                                                                             native_bf16, threshold, mixed):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(precision, "CPU_BF16_MIN_PARAMETERS", threshold)
    trainer, model = _tiny_trainer(tmp_path)
    assert trainer.accelerator.mixed_precision == mixed and trainer.args.bf16 is (mixed == "bf16")
    assert trainer.args.precision.dtype == ("bf16 mixed" if mixed == "bf16" else "float32")
    if native_bf16 and mixed == "no":
        assert f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters" in trainer.args.precision.reason


def test_the_models_size_never_overrides_the_users_choice(tmp_path, monkeypatch, fresh_log):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "CPU_BF16_MIN_PARAMETERS", 1)
    trainer, _ = _tiny_trainer(tmp_path, bf16=False)
    assert trainer.accelerator.mixed_precision == "no" and trainer.args.precision.set_by_user


def test_the_threshold_is_between_the_measured_sizes():
    # docs/BENCHMARKS.md "Precision on CPU": slower for the demo model (0.6 M), faster for SmolLM2 (135 M) and from
    # 7 M on in one forward+backward.
    assert 604_288 < precision.CPU_BF16_MIN_PARAMETERS < 134_515_008


def test_an_explicit_bf16_stays_and_is_warned_about_where_it_is_emulated(tmp_path, monkeypatch, fresh_log, caplog):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="moalign.precision"):
        args = MOGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, report_to="none")
    assert args.bf16 is True and args.precision.dtype == "bf16 mixed" and args.precision.set_by_user
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "emulated" in warned[0].getMessage() and "unset bf16" in warned[0].getMessage()

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="moalign.precision"):
        args = MOGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, report_to="none")
    assert args.bf16 is True and not [r for r in caplog.records if r.levelno == logging.WARNING]

    args = MOGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert args.bf16 is False and args.precision.set_by_user


@pytest.mark.parametrize(("bf16_support", "dtype"), [(True, "bf16 mixed"), (False, "float32")])
def test_on_an_accelerator_bf16_where_supported(monkeypatch, bf16_support, dtype, fresh_log):
    monkeypatch.setattr(precision, "has_accelerator", lambda: True)
    monkeypatch.setattr(precision, "_accelerator_has_bf16", lambda: bf16_support)
    choice = precision.choose_precision(bf16=None, fp16=None, use_cpu=False)
    assert choice.device == "accelerator" and choice.dtype == dtype and choice.bf16 is bf16_support
    assert precision.choose_precision(bf16=None, fp16=True, use_cpu=False).dtype == "fp16 mixed"
    # use_cpu on a GPU machine trains on the CPU, so the CPU rule applies.
    assert precision.choose_precision(bf16=None, fp16=None, use_cpu=True).dtype == "float32"


def test_the_choice_is_logged_once_per_process(tmp_path, monkeypatch, fresh_log, caplog):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="moalign.precision"):
        for _ in range(3):
            MOGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert sum("precision: float32 on cpu" in r.getMessage() for r in caplog.records) == 1


def test_onednn_limited_to_avx2_reports_no_bf16_hardware():
    # The emulation the docs and the CI step use for "a CPU without bf16 hardware": the real check, not a mock.
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = ("import json, moalign.precision as p; "
            "print(json.dumps(p.choose_precision(bf16=None, fp16=None, use_cpu=True).record()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["cpu"]["native_bf16"] is False and record["cpu"]["torch_capability"] == "AVX2"
    assert record["dtype"] == "float32" and "without bf16 hardware" in record["reason"]


def test_the_demo_path_trains_in_float32_and_run_json_records_it(tmp_path):
    from moalign.data.synthetic import load_synthetic
    from moalign.demo import task_warm_start, train_synthetic_run

    run_dir = tmp_path / "run"
    trainer = train_synthetic_run(
        label="fixed-balanced", strategy="fixed", params={"preset": "balanced"}, estimator="grpo", seed=0,
        model_dir=task_warm_start("coupled", progress=False), splits=load_synthetic(seed=0), run_dir=run_dir, steps=1,
        eval_every=1, eval_size=4, validation_size=4, prompts_per_step=2, generations=2, learning_rate=1e-4,
        max_completion_length=8)
    assert trainer.args.bf16 is False
    assert trainer.accelerator.mixed_precision == "no"  # no autocast anywhere: update, generation, evaluation
    recorded = json.loads((run_dir / "run.json").read_text())["precision"]
    assert recorded["dtype"] == "float32" and recorded["device"] == "cpu"
    assert set(recorded["cpu"]) == {"model", "torch_capability", "native_bf16", "threads"}

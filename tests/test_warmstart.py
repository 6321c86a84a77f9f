"""Warm start: cache behaviour and loadability on a tiny config (seconds); the real calibration under ``-m slow``."""

from __future__ import annotations

import json
import shlex
import time

import pytest
import torch

from moalign import warmstart
from moalign.data.synthetic import STYLES, SyntheticConfig
from moalign.warmstart import WarmStartConfig, calibrate, default_cache_dir, warm_start

# Shrunk so that training takes a few seconds: a 1-layer width-32 model, 4 steps of 8 examples, 8 calibration problems.
TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1}


def tiny_cfg(**kw) -> WarmStartConfig:
    base = {"model": dict(TINY_MODEL), "max_steps": 4, "batch_size": 8, "warmup_steps": 0, "calibration_n": 8,
            "task": SyntheticConfig(n_val=20, n_test=20)}
    return WarmStartConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("warmstart")
    cfg = tiny_cfg()
    path = warm_start(cfg, cache_dir=root, progress=False)
    return cfg, root, path


def test_layout_and_metadata(trained):
    cfg, root, path = trained
    assert path == root / cfg.cache_key()
    assert (path / "model.safetensors").is_file()
    assert [p.name for p in root.iterdir()] == [path.name]  # no temporary directory left behind
    meta = json.loads((path / "warmstart.json").read_text())
    assert WarmStartConfig.from_dict(meta["config"]) == cfg
    assert meta["seed"] == cfg.seed and meta["cache_key"] == cfg.cache_key()
    assert meta["n_parameters"] > 0 and meta["train_seconds"] > 0
    cal = meta["calibration"]
    assert cal["n"] == 8 and set(cal) >= {"sampled", "greedy"}


def test_reproduce_command_rebuilds_the_config(trained, monkeypatch, capsys):
    cfg, root, path = trained
    argv = shlex.split(json.loads((path / "warmstart.json").read_text())["reproduce"])
    assert argv[:3] == ["python", "-m", "moalign.warmstart"]
    assert WarmStartConfig.from_dict(json.loads(argv[argv.index("--config") + 1])) == cfg
    monkeypatch.setattr(warmstart, "_train", lambda *a, **k: pytest.fail("retrained"))
    assert warmstart.main([*argv[3:], "--cache-dir", str(root), "--quiet"]) == path
    assert capsys.readouterr().out.strip() == str(path)


def test_second_call_is_a_cache_hit(trained, monkeypatch):
    cfg, root, path = trained

    def fail(*args, **kwargs):
        raise AssertionError("warm_start retrained a cached config")

    monkeypatch.setattr(warmstart, "_train", fail)
    start = time.perf_counter()
    assert warm_start(tiny_cfg(), cache_dir=root, progress=False) == path
    assert time.perf_counter() - start < 1.0
    # settings that do not change the weights share the entry
    assert warm_start(tiny_cfg(num_threads=1, calibration_n=0), cache_dir=root) == path


def test_key_changes_with_config():
    base = tiny_cfg()
    keys = {
        base.cache_key(),
        tiny_cfg(seed=1).cache_key(),
        tiny_cfg(learning_rate=1e-3).cache_key(),
        tiny_cfg(model={**TINY_MODEL, "hidden_size": 64}).cache_key(),
        tiny_cfg(task=SyntheticConfig(n_val=20, n_test=20, difficulty=3)).cache_key(),
        tiny_cfg(task=SyntheticConfig(n_val=20, n_test=20, wrong_share={"direct": 0.5})).cache_key(),
    }
    assert len(keys) == 6
    assert tiny_cfg().cache_key() == base.cache_key()


def test_saved_model_loads_and_generates(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, path = trained
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    text = tok.apply_chat_template([{"role": "user", "content": "1+2+3=?"}], tokenize=False, add_generation_prompt=True)
    assert text == "<user>1+2+3=?\n<assistant>"
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    assert tok.decode(enc["input_ids"][0]) == text  # the character tokenizer survives the round trip
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert tok.padding_side == "left"


def test_calibrate_report(trained):
    _, _, path = trained
    cal = calibrate(path, n=10, seed=1)
    again = calibrate(path, n=10, seed=1)
    assert cal == again  # seeded sampling
    for mode in ("sampled", "greedy"):
        stats = cal[mode]
        assert 0.0 <= stats["accuracy"] <= 1.0 and stats["mean_length"] >= 0
        assert set(stats["style_share"]) == set(STYLES)
        assert sum(stats["style_count"].values()) == 10
        assert abs(sum(stats["style_share"].values()) - 1.0) < 1e-6


def test_calibrate_scores_reference_text():
    stats = warmstart._summarise(
        ["First, 1+2=3.\nThen, 3+1=4.\n\\boxed{4}", "\\boxed{5}", "1 plus 2 is 3, plus 1 is 4, so \\boxed{4}", ""],
        [30, 9, 40, 0],
        ["4", "4", "4", "4"],
        max_new_tokens=96,
    )
    assert stats["accuracy"] == 0.5 and stats["clarity"] == 0.25
    assert stats["style_accuracy"] == {"steps": 1.0, "direct": 0.0, "verbose": 0.5}
    assert stats["style_count"] == {"steps": 1, "direct": 1, "verbose": 2}


def test_cache_dir_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MOALIGN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "moalign" / "warmstart"
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "mo"))
    assert default_cache_dir() == tmp_path / "mo" / "warmstart"


def test_env_cache_used_by_default(monkeypatch, tmp_path, trained):
    cfg, root, path = trained
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    (tmp_path / "warmstart").symlink_to(root, target_is_directory=True)
    monkeypatch.setattr(warmstart, "_train", lambda *a, **k: pytest.fail("retrained"))
    assert warm_start(cfg).resolve() == path.resolve()


def test_failed_training_leaves_no_entry(monkeypatch, tmp_path):
    def boom(cfg, out, progress):
        (out / "partial").write_text("x")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(warmstart, "_train", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        warm_start(tiny_cfg(), cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kw", "match"), [({"max_steps": 0}, "max_steps"), ({"learning_rate": 0.0}, "learning_rate")])
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        WarmStartConfig(**kw)
    with pytest.raises(ValueError, match="unknown WarmStartConfig fields"):
        WarmStartConfig.from_dict({"max_step": 3})
    with pytest.raises(ValueError, match="unknown synthetic-task options"):
        WarmStartConfig.from_dict({"task": {"dificulty": 3}})


def test_num_threads_restored(tmp_path):
    before = torch.get_num_threads()
    warm_start(tiny_cfg(seed=7, calibration_n=0, num_threads=1), cache_dir=tmp_path, progress=False)
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_default_warm_start_meets_demo_targets(tmp_path):
    """The calibration targets of docs/demo_task.md, on the default config (about 3-4 minutes on 2 CPU cores)."""
    path = warm_start(cache_dir=tmp_path, progress=False)
    meta = json.loads((path / "warmstart.json").read_text())
    sampled, greedy = meta["calibration"]["sampled"], meta["calibration"]["greedy"]
    assert 0.15 <= sampled["accuracy"] <= 0.8, sampled
    assert 0.15 <= greedy["accuracy"] <= 0.8, greedy
    assert all(share >= 0.1 for share in sampled["style_share"].values()), sampled
    assert sampled["style_accuracy"]["steps"] >= sampled["style_accuracy"]["direct"] + 0.2, sampled
    # The target is < 5 minutes on 2 otherwise idle cores (201-221 s measured). Other jobs on the same cores slow it
    # down without bound (508 s next to two other trainings), and CPU time is no better a measure then (OpenMP
    # threads spin while they wait), so run this test on a quiet machine.
    assert meta["train_seconds"] < 300, (
        f"warm start took {meta['train_seconds']} s (target < 300 s on {meta['num_threads']} idle cores)"
    )

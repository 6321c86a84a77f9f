"""Reward models as objectives: TRL parity, K heads in one forward, errors at build, normalisation, resume, eval."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from moalign.objectives import (
    RewardModel,
    RewardModelObjective,
    as_objective,
    build_objective,
    build_objectives,
    prepare_reward_models,
)
from moalign.tiny import char_tokenizer, tiny_config, tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer


def tiny_reward_model(num_labels=1, seed=0):
    from transformers import Qwen3ForSequenceClassification

    tok = char_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForSequenceClassification(tiny_config(len(tok), num_labels=num_labels, num_hidden_layers=2,
                                                           pad_token_id=tok.pad_token_id))
    return model.eval(), tok


@pytest.fixture(scope="module")
def rm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rms")
    out = {}
    for labels in (1, 3):
        model, tok = tiny_reward_model(labels, seed=labels)
        model.save_pretrained(root / f"rm{labels}")
        tok.save_pretrained(root / f"rm{labels}")
        out[labels] = str(root / f"rm{labels}")
    return out


def _dataset(chat: bool, n=8):
    rows = []
    for i in range(n):
        q = f"{i % 7 + 1}+{i % 5 + 2}=?"
        rows.append({"prompt": [{"role": "user", "content": q}] if chat else q, "answer": str(i % 7 + i % 5 + 3)})
    return Dataset.from_list(rows)


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, num_generations=4,
                max_completion_length=8, max_steps=1, report_to="none", logging_steps=1, use_cpu=True, seed=0,
                save_strategy="no", disable_tqdm=True, bf16=False)
    base.update(kw)
    return base


def _batch(chat: bool):
    """Prompts and completions of different lengths (padding matters), as TRL hands them to reward functions."""
    texts = ["\\boxed{3}", "1. 1+2=3\n\\boxed{3}", "", "12+7=19, so \\boxed{19} Hope this helps!"]
    prompts = [[{"role": "user", "content": "1+2=?"}] if chat else "1+2=?", ] * 2 + (
        [[{"role": "user", "content": "12+7=?"}] if chat else "12+7=?"] * 2)
    completions = [[{"role": "assistant", "content": t}] for t in texts] if chat else texts
    inputs = [{"prompt": p, "answer": "3"} for p in prompts]
    return inputs, prompts, completions, [[5] * (i + 1) for i in range(4)]


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "conversational"])
def test_scores_equal_trl_grpo_trainer(tmp_path, rm_dirs, chat):
    """The same reward model and batch: TRL's GRPOTrainer(reward_funcs=[path]) and MOGRPOTrainer(objectives=[path])
    give the same rewards (and the model-object form with reward_processing_classes, as in TRL)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    policy, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=1)
    data = _dataset(chat)
    trl = GRPOTrainer(model=policy, reward_funcs=[rm_dirs[1]], args=GRPOConfig(**_args(tmp_path / "trl")),
                      train_dataset=data, processing_class=tok)
    batch = _batch(chat)
    expected = trl._calculate_rewards(*batch)[:, 0]

    ours = MOGRPOTrainer(model=policy, objectives=[rm_dirs[1]], args=MOGRPOConfig(**_args(tmp_path / "mo")),
                         train_dataset=data, processing_class=tok)
    got = ours._calculate_rewards(*batch)[:, 0]
    assert ours.objective_names == ["rm1"]  # named as TRL names it: the model id's last component
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert expected.std() > 1e-4  # the completions really score differently

    rm = AutoModelForSequenceClassification.from_pretrained(rm_dirs[1])
    obj_form = MOGRPOTrainer(model=policy, objectives=[rm], reward_processing_classes=[AutoTokenizer.from_pretrained(
        rm_dirs[1])], args=MOGRPOConfig(**_args(tmp_path / "obj")), train_dataset=data, processing_class=tok)
    torch.testing.assert_close(obj_form._calculate_rewards(*batch)[:, 0], expected, rtol=0, atol=1e-6)


def test_heads_are_k_objectives_scored_in_one_forward(tmp_path, rm_dirs):
    """Three heads of one model: three objectives, each logits[:, i] of an independent forward, one forward a batch."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = {"model": rm_dirs[3], "heads": ["helpfulness", "correctness", {"name": "verbosity", "index": 2,
                                                                           "maximize": False}]}
    policy, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=1)
    trainer = MOGRPOTrainer(model=policy, objectives=["clarity", spec], train_dataset=_dataset(False),
                            args=MOGRPOConfig(**_args(tmp_path), strategy="gradient"), processing_class=tok)
    assert trainer.objective_names == ["clarity", "helpfulness", "correctness", "verbosity"]
    rm = trainer.objectives[1].reward_model
    assert all(o.reward_model is rm for o in trainer.objectives[1:])
    before = rm.forward_count
    inputs, prompts, completions, ids = _batch(False)
    rewards = trainer._calculate_rewards(inputs, prompts, completions, ids)
    assert rm.forward_count - before == 1

    reference = AutoModelForSequenceClassification.from_pretrained(rm_dirs[3]).eval()
    rtok = AutoTokenizer.from_pretrained(rm_dirs[3])
    enc = rtok(text=[p + c for p, c in zip(prompts, completions)], return_tensors="pt", padding=True,
               padding_side="right", add_special_tokens=False)
    with torch.no_grad():
        logits = reference(**enc).logits
    torch.testing.assert_close(rewards[:, 1:], logits, rtol=0, atol=1e-6)
    assert trainer.objectives[3].maximize is False
    # with a scoring batch size, still one pass over the batch: ceil(4 / 3) = 2 forwards, same scores
    chunked = build_objectives([{**spec, "batch_size": 3}])
    prepare_reward_models(chunked)
    start = chunked[0].reward_model.forward_count
    got = [o(completions, prompts=prompts) for o in chunked]
    assert chunked[0].reward_model.forward_count - start == 2
    torch.testing.assert_close(torch.tensor(got).T, logits, rtol=0, atol=1e-5)


def test_unscorable_reward_models_fail_when_the_trainer_is_built(tmp_path, rm_dirs):
    policy, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=1)

    def build(objectives, **kw):
        return MOGRPOTrainer(model=policy, objectives=objectives, train_dataset=_dataset(False),
                             args=MOGRPOConfig(**_args(tmp_path)), processing_class=tok, **kw)

    lm, _ = tiny_model_and_tokenizer(seed=1, num_hidden_layers=1)
    with pytest.raises(ValueError, match="language model, not a reward model.*AutoModelForSequenceClassification"):
        build([lm], reward_processing_classes=[tok])
    with pytest.raises(ValueError, match=r"index 5 is read.*below 3"):
        build([{"model": rm_dirs[3], "heads": ["a", {"name": "b", "index": 5}]}])
    small, _ = tiny_reward_model(1)
    small.resize_token_embeddings(20)
    with pytest.raises(ValueError, match="not the model's tokenizer.*reward_processing_classes"):
        build([small], reward_processing_classes=[tok])
    with pytest.raises(ValueError, match="is a model, not a reward function"):
        as_objective(small)
    with pytest.raises(ValueError, match="unknown key"):
        build_objective({"model": rm_dirs[1], "head": "x"})
    with pytest.raises(ValueError, match=r"has duplicates: \['a'\]"):
        build_objectives([{"model": rm_dirs[3], "heads": ["a", "a"]}])
    with pytest.raises(ValueError, match="reward_processing_classes has 1 entries but objectives has 2"):
        build(["clarity", rm_dirs[1]], reward_processing_classes=[tok])


def test_how_a_string_is_read(rm_dirs, tmp_path, monkeypatch):
    assert build_objective("clarity").name == "clarity"  # a registry name
    assert build_objective("moalign.objectives.clarity:Clarity").name == "clarity"  # an import path
    assert isinstance(build_objective(rm_dirs[1]), RewardModelObjective)  # a path
    assert isinstance(build_objective("org/some-rm"), RewardModelObjective)  # a Hub id (not loaded here)
    monkeypatch.chdir(tmp_path.parent)
    assert isinstance(build_objective(str(tmp_path.name)), RewardModelObjective)  # an existing directory


def test_calibrated_map_is_the_documented_affine_map():
    obj = RewardModelObjective(RewardModel("org/rm"), "h")
    scores = [1.0, 2.0, 3.0, 6.0]
    mean, std = 3.0, (sum((s - 3.0) ** 2 for s in scores) / 4) ** 0.5
    lo, hi = obj.calibrate(scores)
    assert (lo, hi) == pytest.approx((mean - 2 * std, mean + 2 * std))
    assert obj.normalise(mean) == pytest.approx(0.5)
    assert obj.normalise(mean + std) == pytest.approx(0.75)
    assert obj.normalise(hi + 5) == 1.0 and obj.normalise(lo - 5) == 0.0
    assert obj.calibrate([100.0, 200.0]) == [lo, hi]  # frozen: a second calibration changes nothing
    down = RewardModelObjective(RewardModel("org/rm"), "v", maximize=False, score_range=[0.0, 4.0])
    assert down.normalise(1.0) == pytest.approx(0.75)
    assert down.state_dict() == {}  # a configured range lives in the config, not in the state
    assert obj.state_dict() == {"range": [lo, hi]}


def _yaml_run(tmp_path, rm_dir, name, extra=""):
    """A `moalign train` config: the tiny policy, the synthetic task, clarity plus two heads of a reward model."""
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"""
model: tiny
model_kwargs: {{num_hidden_layers: 1}}
dataset: synthetic
dataset_kwargs: {{n_train: 16, n_val: 4, n_test: 4}}
objectives:
  - clarity
  - {{model: {rm_dir}, heads: [helpful, {{name: verbose, index: 2, maximize: false}}]}}
strategy: fixed
run_dir: {tmp_path / name}
output_dir: {tmp_path / name}/checkpoints
per_device_train_batch_size: 8
num_generations: 4
max_completion_length: 8
save_steps: 1
logging_steps: 1
mo_eval_size: 4
report_to: none
use_cpu: true
bf16: false
disable_tqdm: true
{extra}""")
    return cfg


def test_calibrated_map_is_frozen_and_reused_by_resume_and_eval(tmp_path, rm_dirs):
    """The YAML form trains; the map calibrated on the initial policy's evaluation is written to run.json and every
    moalign_state.json, survives a resume (which does not recalibrate), and `moalign eval` normalises with it."""
    from moalign.config import load_config
    from moalign.evaluation import evaluate_run, normalised_point, run_objectives, summarize_front
    from moalign.rundir import read_jsonl
    from moalign.train import train

    cfg = _yaml_run(tmp_path, rm_dirs[3], "run", "mo_eval_steps: 1\n")
    train(*load_config(cfg, ["--max_steps", "1"]))
    run = tmp_path / "run"
    meta = json.loads((run / "run.json").read_text())
    recorded = {o["name"]: o for o in meta["objectives"]}
    assert recorded["helpful"]["range_source"] == "calibrated" and "range" not in recorded["clarity"]
    ranges = {n: recorded[n]["range"] for n in ("helpful", "verbose")}
    state = json.loads((run / "checkpoints" / "checkpoint-1" / "moalign_state.json").read_text())
    assert {n: state["objectives"][n]["range"] for n in ranges} == ranges

    # a head with maximize: false enters the step engine negated (every strategy maximises); TRL logs raw scores
    logged = [h["rewards/verbose/mean"] for h in json.loads((run / "checkpoints" / "checkpoint-1" /
                                                             "trainer_state.json").read_text())["log_history"]
              if "rewards/verbose/mean" in h]
    engine_means = [line["rewards"]["verbose"] for line in read_jsonl(run / "steps.jsonl")]
    assert engine_means == pytest.approx([-v for v in logged], abs=1e-5) and logged[0] != 0

    trainer = train(*load_config(cfg, ["--max_steps", "2", "--resume_from_checkpoint", "true"]))
    assert {o.name: o.score_range for o in trainer.objectives[1:]} == ranges  # loaded, not recalibrated
    meta = json.loads((run / "run.json").read_text())
    assert {o["name"]: o.get("range") for o in meta["objectives"][1:]} == ranges

    rebuilt = run_objectives(meta)
    assert [o.score_range for o in rebuilt[1:]] == list(ranges.values())
    evals = [e for e in read_jsonl(run / "evals.jsonl") if e["split"] == "val"]
    point = normalised_point(evals[-1]["metrics"], rebuilt, 8)
    lo, hi = ranges["verbose"]
    assert point[2] == pytest.approx(min(1, max(0, (hi - evals[-1]["metrics"]["verbose"]) / (hi - lo))))
    assert summarize_front(evals, meta["objectives"], 8).hypervolume >= 0

    # `moalign eval` on a run that never evaluated its initial policy calibrates once from its step-0 evaluation
    cold = _yaml_run(tmp_path, rm_dirs[3], "cold")
    train(*load_config(cold, ["--max_steps", "1"]))
    assert json.loads((tmp_path / "cold" / "run.json").read_text())["objectives"][1]["range"] is None
    evaluate_run(tmp_path / "cold", split="val", max_rows=4, progress=False)
    cold_meta = json.loads((tmp_path / "cold" / "run.json").read_text())
    assert cold_meta["objectives"][1]["range_source"] == "calibrated"
    assert summarize_front(read_jsonl(tmp_path / "cold" / "evals.jsonl"), cold_meta["objectives"], 8).steps


def test_experts_configs_take_objectives_entries(rm_dirs):
    """`moalign experts`: reward-model entries expand to their heads, weights count them, the gate scores them in the
    normalised space through their range."""
    from moalign.meta.experts import ExpertsConfig
    from moalign.meta.gate import completion_scores

    entry = {"model": rm_dirs[3], "heads": [{"name": "helpful", "range": [-1.0, 1.0]},
                                            {"name": "verbose", "index": 2, "maximize": False, "range": [-1.0, 1.0]}]}
    cfg = ExpertsConfig(objectives=["clarity", entry])
    assert cfg.objective_names == ["clarity", "helpful", "verbose"]
    assert [len(e.weights) for e in cfg.experts] == [3, 3, 3] and [e.name for e in cfg.experts][1:] == ["helpful",
                                                                                                        "verbose"]
    with pytest.raises(ValueError, match="has 2 weights but objectives has 3"):
        ExpertsConfig(objectives=["clarity", entry], experts=[{"name": "x", "weights": [0.5, 0.5]}])
    with pytest.raises(ValueError, match="has duplicates"):
        ExpertsConfig(objectives=["clarity", {"model": rm_dirs[3], "heads": ["clarity"]}])

    objectives = build_objectives(["clarity", entry])
    rows = [{"prompt": [{"role": "user", "content": "1+2=?"}], "answer": "3"}] * 2
    texts = ["1. 1+2=3\n2. so\n\\boxed{3}", "3"]
    got = completion_scores(objectives, rows, texts, [[1] * 5, [1]], 8)
    raw = [o([[{"role": "assistant", "content": t}] for t in texts], prompts=[r["prompt"] for r in rows])
           for o in objectives[1:]]
    expected_helpful = [min(1, max(0, (v + 1) / 2)) for v in raw[0]]
    expected_verbose = [min(1, max(0, (1 - v) / 2)) for v in raw[1]]
    assert got[:, 1].tolist() == pytest.approx(expected_helpful) and got[:, 2].tolist() == pytest.approx(
        expected_verbose)
    assert got[:, 0].tolist() == [1.0, 0.0]


def test_verl_plugin_refuses_reward_models_naming_verls_worker():
    from moalign.integrations.verl.session import MOConfig, MOSession

    with pytest.raises(ValueError, match=r"\['rm'\] are reward-model objectives.*reward_model.enable=True.*"
                                         r"module:callable.*MOGRPOTrainer"):
        MOSession(MOConfig(objectives=["accuracy", {"name": "rm", "model": "org/rm"}]))


def test_shipped_example_points_at_the_shipped_models():
    """examples/reward_model_async.yaml names the directories habit_reward_model() and the async warm start return,
    so a retrained model with another cache key cannot leave the example on a stale path."""
    from pathlib import Path

    from moalign.config import load_config
    from moalign.demo import task_warm_start
    from moalign.habit_reward_model import habit_reward_model

    root = Path(__file__).parents[1]
    _, model, train = load_config(root / "examples" / "reward_model_async.yaml")
    assert (root / train.objectives[0]["model"]).resolve() == habit_reward_model().resolve()
    assert (root / model.model_name_or_path).resolve() == task_warm_start("async", progress=False).resolve()
    assert [h if isinstance(h, str) else h["name"] for h in train.objectives[0]["heads"]] == [
        "rm_correct", "rm_numbered", "rm_filler"]


def test_head_tracking_auc_is_the_rank_statistic():
    import numpy as np

    from moalign.habit_reward_model import _auc

    scores, labels = np.array([0.1, 0.4, 0.35, 0.8, 0.4]), np.array([0, 0, 1, 1, 1])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert _auc(scores, labels) == pytest.approx(expected, abs=1e-4)

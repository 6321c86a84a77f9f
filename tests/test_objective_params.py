"""Objectives with parameters in a `moalign train` config (issue 20, item 3).

``objectives: [accuracy, {name: conciseness, max_tokens: 512}, mypkg.rewards:fmt]``: registry names, mappings whose
extra keys are constructor parameters, and ``module:callable`` paths. Checked here:

* parsing from YAML and from ``--objectives '[...]'``, and building with the parameters;
* every error (unknown name, unknown parameter, a value the constructor rejects, a mapping without ``name``, ...)
  names the problem and what is valid, and comes before any model is built;
* ``run.json`` and ``moalign_state.json`` record the parameters; a resumed run and ``moalign eval`` rebuild the
  objectives with them (checked against scores recomputed by hand), and a resume with other parameters is refused;
* older runs (names only, no ``objective_params``) still load.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import shutil

import pytest
import torch
import yaml
from typer.testing import CliRunner

import moalign.evaluation as evaluation
import moalign.tiny
import moalign.train as train_module
from moalign.cli import app
from moalign.config import load_config
from moalign.objectives import (
    Accuracy,
    Clarity,
    Conciseness,
    FunctionObjective,
    Objective,
    build_objective,
    build_objectives,
    completion_text,
    objective_params,
)
from moalign.objectives.accuracy import last_boxed
from moalign.objectives.clarity import count_step_markers
from moalign.rundir import STATE_FILE, read_jsonl
from moalign.trainer import MOGRPOConfig

runner = CliRunner()


def fmt(completions, **kwargs):
    """A user reward function reached by import path (``test_objective_params:fmt``): 1.0 for a boxed answer."""
    return [float(last_boxed(completion_text(c)) is not None) for c in completions]


class HasWord(Objective):
    """A user objective class with a parameter, reached by import path."""

    name = "has_word"

    def __init__(self, word: str = "so", case_sensitive: bool = False):
        super().__init__()
        if not isinstance(word, str) or not word:
            raise ValueError(f"word must be a non-empty string, but got {word!r}")
        self.word, self.case_sensitive = word, case_sensitive

    def score(self, texts, **kwargs):
        if self.case_sensitive:
            return [float(self.word in t) for t in texts]
        return [float(self.word.lower() in t.lower()) for t in texts]


# --------------------------------------------------------------------------------------------------------------
# conciseness's token budget, by hand
# --------------------------------------------------------------------------------------------------------------
def test_conciseness_token_budget_by_hand():
    lengths = [2, 5, 6, 7, 20]  # mean 8
    ids = [[0] * n for n in lengths]
    texts = ["x"] * len(lengths)
    assert Conciseness()(texts, completion_ids=ids) == [1.0, 1.0, 1.0, 1.0, 0.0]  # below the mean
    budget = Conciseness(max_tokens=5)
    assert budget(texts, completion_ids=ids) == [1.0, 1.0, 0.0, 0.0, 0.0]  # below the mean and <= 5 tokens
    assert budget.state_dict() == {"total_tokens": 40, "count": 5}  # over-budget lengths still enter the mean
    budget.training = False  # evaluation: mean 8 stays, the budget still applies
    assert budget(["a", "b"], completion_ids=[[0] * 5, [0] * 6]) == [1.0, 0.0]
    assert budget.state_dict()["count"] == 5
    assert Conciseness(max_tokens=5.0).max_tokens == 5  # YAML may give 5.0 (e.g. from 5e0)
    for bad in (0, -3, 2.5, "many", True):
        with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
            Conciseness(max_tokens=bad)


# --------------------------------------------------------------------------------------------------------------
# parsing and building
# --------------------------------------------------------------------------------------------------------------
SPECS = ["accuracy", {"name": "conciseness", "max_tokens": 512}, "test_objective_params:fmt",
         {"name": "test_objective_params:HasWord", "word": "therefore"}, {"name": "clarity", "min_steps": 3}]


def _config_text(tmp_path, objectives_yaml: str) -> str:
    return (f"model: tiny\ndataset: synthetic\noutput_dir: {tmp_path / 'run'}\nreport_to: none\n"
            f"objectives: {objectives_yaml}\n")


def _check_built(objectives):
    acc, conc, user_fn, user_cls, clar = objectives
    assert isinstance(acc, Accuracy) and acc.timeout_s == 2.0
    assert isinstance(conc, Conciseness) and conc.max_tokens == 512
    assert isinstance(user_fn, FunctionObjective) and user_fn.name == "fmt" and user_fn.fn is fmt
    assert isinstance(user_cls, HasWord) and user_cls.word == "therefore" and user_cls.case_sensitive is False
    assert isinstance(clar, Clarity) and clar.min_steps == 3


def test_yaml_objectives_with_parameters_are_parsed_and_built(tmp_path):
    flow = ("[accuracy, {name: conciseness, max_tokens: 512}, test_objective_params:fmt, "
            "{name: 'test_objective_params:HasWord', word: therefore}, {name: clarity, min_steps: 3}]")
    block = ("\n  - accuracy\n  - name: conciseness\n    max_tokens: 512\n  - test_objective_params:fmt\n"
             "  - name: test_objective_params:HasWord\n    word: therefore\n  - {name: clarity, min_steps: 3}")
    for text in (flow, block):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(_config_text(tmp_path, text))
        _, _, args = load_config(cfg)
        assert args.objectives == SPECS
        _check_built(build_objectives(args.objectives))
    # the same from the command line, overriding the file's list
    cfg.write_text(_config_text(tmp_path, "[accuracy]"))
    _, _, args = load_config(cfg, ["--objectives", flow])
    assert args.objectives == SPECS
    # every entry is also what build_objective takes, and what TRL's loggers and run.json see as JSON
    _check_built([build_objective(s) for s in args.objectives])
    assert json.loads(args.to_json_string())["objectives"] == SPECS
    assert [objective_params(s) for s in SPECS] == [{}, {"max_tokens": 512}, {}, {"word": "therefore"},
                                                    {"min_steps": 3}]


def test_lists_of_names_keep_working(tmp_path):
    args = MOGRPOConfig(output_dir=str(tmp_path), objectives=["accuracy", "conciseness", "clarity"], use_cpu=True,
                        bf16=False)
    assert [type(o) for o in build_objectives(args.objectives)] == [Accuracy, Conciseness, Clarity]
    assert json.loads(args.to_json_string())["objectives"] == ["accuracy", "conciseness", "clarity"]
    # objects passed in (as in Python code) are logged by name; their parameters are not known to the config
    args = MOGRPOConfig(output_dir=str(tmp_path), objectives=[Accuracy(), Conciseness(max_tokens=9)], use_cpu=True,
                        bf16=False)
    assert json.loads(args.to_json_string())["objectives"] == ["accuracy", "conciseness"]
    assert objective_params(args.objectives[1]) is None


def _accepted(cls) -> str:
    """The constructor's parameter names, from its signature: what the error must list."""
    return ", ".join(p for p in inspect.signature(cls).parameters)


CONFIG_ERRORS = [
    # (objectives as YAML, substrings the error must contain)
    ("[accuracy, {name: concise, max_tokens: 5}]",
     ["objectives: unknown name(s) ['concise']", "valid names: accuracy, clarity, conciseness", "module:callable"]),
    ("[accuracy, concision]", ["unknown name(s) ['concision']", "valid names: accuracy, clarity, conciseness"]),
    ("[accuracy, {name: conciseness, max_tokenz: 512}]",
     ["objectives[1]", "objective 'conciseness' does not accept ['max_tokenz']", "did you mean max_tokens?",
      f"its parameters are: {_accepted(Conciseness)}"]),
    ("[{name: clarity, min_steps: 2, steps: 3}]",
     ["objectives[0]", "does not accept ['steps']", f"its parameters are: {_accepted(Clarity)}"]),
    ("[accuracy, {name: 'test_objective_params:HasWord', words: therefore}]",
     ["objectives[1]", "'test_objective_params:HasWord' does not accept ['words']", "did you mean word?",
      f"its parameters are: {_accepted(HasWord)}"]),
    ("[{name: clarity, min_steps: two}]",
     ["objectives[0]", "objective 'clarity' rejected its parameters {'min_steps': 'two'}",
      "min_steps must be a positive integer, but got 'two'"]),
    ("[accuracy, {name: conciseness, max_tokens: many}]",
     ["objectives[1]", "max_tokens must be a positive integer (or null for no budget), but got 'many'"]),
    ("[{name: accuracy, timeout_s: fast}]", ["timeout_s must be positive, but got 'fast'; give a number of seconds"]),
    ("[{name: 'test_objective_params:HasWord', word: ''}]", ["word must be a non-empty string"]),
    ("[accuracy, {conciseness: {max_tokens: 512}}]",
     ["objectives[1]", "has no 'name'", "write {name: conciseness, max_tokens: 512}"]),
    ("[{name: 3}]", ["objectives[0]", "'name' must be a registry name or a 'module:callable' path, but got 3"]),
    ("[accuracy, {name: 'test_objective_params:fmt', strict: true}]",
     ["objectives[1]", "is a plain function and takes no parameters, but got ['strict']"]),
    ("[accuracy, {name: accuracy, timeout_s: 5}]", ["objectives has duplicates: ['accuracy']"]),
    ("{name: conciseness, max_tokens: 512}", ["objectives must be a list"]),
    ("[accuracy, 'no_such_module:reward']", ["cannot import objective 'no_such_module:reward'"]),
]


@pytest.mark.parametrize(("objectives", "expected"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_bad_objective_entries_are_config_errors_naming_what_is_valid(tmp_path, objectives, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_config_text(tmp_path, objectives))
    with pytest.raises(ValueError) as info:
        load_config(cfg)
    for text in expected:
        if text.startswith("valid names: "):  # other test modules may register objectives of their own
            listed = re.search(r"valid names: (.*?) \(", str(info.value)).group(1).split(", ")
            assert set(text.removeprefix("valid names: ").split(", ")) <= set(listed), str(info.value)
        else:
            assert text in str(info.value), str(info.value)


@pytest.fixture
def no_model(monkeypatch):
    """Every way `moalign train` builds a model fails loudly, with a marker the test looks for."""

    def refuse(*args, **kwargs):
        raise AssertionError("MODEL-BUILT")

    monkeypatch.setattr(train_module, "build_model_and_tokenizer", refuse)
    monkeypatch.setattr(moalign.tiny, "tiny_model_and_tokenizer", refuse)


@pytest.mark.parametrize(("objectives", "expected"), [
    ("[accuracy, {name: conciseness, max_tokenz: 512}]", "does not accept ['max_tokenz']"),
    ("[accuracy, {name: concise}]", "unknown name(s) ['concise']"),
    ("[{name: clarity, min_steps: two}]", "min_steps must be a positive integer"),
])
def test_objective_errors_come_before_any_model_is_built(tmp_path, no_model, objectives, expected):
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: tiny\ndataset: synthetic\nrun_dir: {run}\noutput_dir: {run / 'ckpt'}\nmax_steps: 1\n"
                   f"report_to: none\nobjectives: {objectives}\n")
    result = runner.invoke(app, ["train", str(cfg)])
    text = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, result.output
    assert expected in text and "MODEL-BUILT" not in text, text
    assert not run.exists()
    # the same config with valid entries gets as far as building the model: the patch above does catch a build
    cfg.write_text(cfg.read_text().replace(objectives, "[accuracy, {name: conciseness, max_tokens: 512}]"))
    result = runner.invoke(app, ["train", str(cfg)])
    assert isinstance(result.exception, AssertionError) and "MODEL-BUILT" in str(result.exception), result.output


# --------------------------------------------------------------------------------------------------------------
# a tiny run: run.json, checkpoints, resume and `moalign eval` keep the parameters
# --------------------------------------------------------------------------------------------------------------
RUN_OBJECTIVES = ["accuracy", {"name": "conciseness", "max_tokens": 6}, {"name": "clarity", "min_steps": 1},
                  "test_objective_params:fmt"]
RUN_PARAMS = [{}, {"max_tokens": 6}, {"min_steps": 1}, {}]
RUN_CONFIG = {
    "model": "tiny",
    "model_kwargs": {"num_hidden_layers": 2},  # a CPU step well under a second
    "dataset": "synthetic",
    "dataset_kwargs": {"n_train": 32, "n_val": 4, "n_test": 4},
    "dataset_eval_split": "val",
    "objectives": RUN_OBJECTIVES,
    "max_steps": 2,
    "per_device_train_batch_size": 8,  # 2 prompts x 4 generations
    "num_generations": 4,
    "max_completion_length": 12,
    "learning_rate": 1.0e-2,
    "save_steps": 2,
    "logging_steps": 1,
    "use_cpu": True,
    "report_to": "none",
    "seed": 0,
    "disable_tqdm": True,
}


def _write_run_config(path, run, **overrides):
    path.write_text(yaml.safe_dump({**RUN_CONFIG, "run_dir": str(run), "output_dir": str(run / "checkpoints"),
                                    **overrides}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-step run (checkpoint-2) with parameterised objectives, resumed for a third step."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one intra-op thread keeps tiny steps fast
    try:
        base = tmp_path_factory.mktemp("params_run")
        run = base / "run"
        cfg = _write_run_config(base / "c.yaml", run)
        first = train_module.train(*load_config(cfg))
        first_run_json = json.loads((run / "run.json").read_text())
        state = json.loads((run / "checkpoints" / "checkpoint-2" / STATE_FILE).read_text())
        shutil.copytree(run, base / "after_two_steps")
        resumed = train_module.train(*load_config(cfg, ["--max_steps", "3"]), resume_from_checkpoint=True)
    finally:
        torch.set_num_threads(previous)
    return {"base": base, "run": run, "first": first, "first_run_json": first_run_json, "state": state,
            "resumed": resumed}


def test_run_json_and_checkpoints_record_the_parameters(finished_run):
    trainer, meta = finished_run["first"], finished_run["first_run_json"]
    assert trainer.objectives[1].max_tokens == 6 and trainer.objectives[2].min_steps == 1
    assert [o["params"] for o in meta["objectives"]] == RUN_PARAMS
    assert [o["name"] for o in meta["objectives"]] == ["accuracy", "conciseness", "clarity", "fmt"]
    assert meta["config"]["objectives"] == RUN_OBJECTIVES
    assert finished_run["state"]["objective_params"] == RUN_PARAMS


def test_resume_rebuilds_the_objectives_with_their_parameters(finished_run):
    resumed, run = finished_run["resumed"], finished_run["run"]
    assert resumed.state.global_step == 3
    assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == [1, 2, 3]
    conc, clar = resumed.objectives[1], resumed.objectives[2]
    assert isinstance(conc, Conciseness) and conc.max_tokens == 6 and clar.min_steps == 1
    # conciseness continued from the checkpoint's running mean: one more batch of 8 completions
    assert conc.count == finished_run["state"]["objectives"]["conciseness"]["count"] + 8
    meta = json.loads((run / "run.json").read_text())
    assert [o["params"] for o in meta["objectives"]] == RUN_PARAMS


def test_resume_with_other_parameters_is_refused(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run["base"] / "after_two_steps", run)
    changed = [o if o != RUN_OBJECTIVES[1] else {"name": "conciseness", "max_tokens": 8} for o in RUN_OBJECTIVES]
    cfg = _write_run_config(tmp_path / "c.yaml", run, objectives=changed, max_steps=3)
    torch.set_num_threads(1)
    with pytest.raises(ValueError) as info:
        train_module.train(*load_config(cfg), resume_from_checkpoint=True)
    message = str(info.value)
    assert "other objective parameters" in message and STATE_FILE in message
    assert "conciseness: {'max_tokens': 6} in the checkpoint, {'max_tokens': 8} now" in message
    assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == [1, 2]  # nothing was trained or logged


def test_checkpoints_without_recorded_parameters_still_resume(finished_run):
    trainer = finished_run["first"]
    state = trainer.moalign_state()
    assert state["objective_params"] == RUN_PARAMS
    del state["objective_params"]  # a checkpoint written before objectives had parameters
    trainer.load_moalign_state(state)
    with pytest.raises(ValueError, match="other objective parameters"):
        trainer.load_moalign_state({**state, "objective_params": [{}, {}, {}, {}]})


def test_moalign_eval_uses_the_recorded_parameters(finished_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run["run"], run)
    calls = []
    real = evaluation.evaluate_policy

    def recording(model, tok, rows, objectives, **kwargs):
        out = real(model, tok, rows, objectives, **kwargs)
        calls.append((objectives, json.loads(json.dumps(out))))
        return out

    monkeypatch.setattr(evaluation, "evaluate_policy", recording)
    torch.set_num_threads(1)
    records = evaluation.evaluate_run(run, split="test", batch_size=4, progress=False)
    assert [r["step"] for r in records] == [0, 2, 3] and len(calls) == 3
    for record, (objectives, out) in zip(records, calls):
        conc, clar = objectives[1], objectives[2]
        assert isinstance(conc, Conciseness) and conc.max_tokens == 6
        assert isinstance(clar, Clarity) and clar.min_steps == 1
        assert objectives[3].name == "fmt" and objectives[3].fn is fmt
        # the scores, recomputed by hand from the lengths and texts the evaluation produced
        lengths, texts = out["per_row"]["length"], out["completions"]
        if record["step"] == 0:
            mean = sum(lengths) / len(lengths)  # no training batch seen: the batch's own mean
        else:
            saved = json.loads((run / "checkpoints" / f"checkpoint-{record['step']}" / STATE_FILE).read_text())
            mean = saved["objectives"]["conciseness"]["total_tokens"] / saved["objectives"]["conciseness"]["count"]
        expected = [1.0 if n < mean and n <= 6 else 0.0 for n in lengths]
        assert out["per_row"]["conciseness"] == expected
        # The tiny model's greedy completions all run to 12 tokens, so the budget changes nothing above; the object
        # the evaluation used applies it to shorter completions (4 and 8 tokens, both below the mean of ~11.6).
        if record["step"] > 0:
            conc.training = False
            assert conc(["a", "b"], completion_ids=[[0] * 4, [0] * 8]) == [1.0, 0.0]
        assert record["metrics"]["conciseness"] == pytest.approx(sum(expected) / len(expected))
        clarity = [float(bool(last_boxed(t)) and count_step_markers(t) >= 1) for t in texts]
        assert out["per_row"]["clarity"] == clarity
    assert [e["step"] for e in read_jsonl(run / "evals.jsonl") if e["split"] == "test"] == [0, 2, 3]


def test_run_objectives_loads_runs_recorded_before_parameters(caplog):
    old = {"config": {"objectives": ["accuracy", "conciseness", "clarity"]},
           "objectives": [{"name": "accuracy", "maximize": True}, {"name": "conciseness", "maximize": True},
                          {"name": "clarity", "maximize": True}]}
    built = evaluation.run_objectives(old)
    assert [type(o) for o in built] == [Accuracy, Conciseness, Clarity] and built[1].max_tokens is None
    # objects passed to the trainer: no parameters recorded, so rebuilt with defaults, and said so
    passed = {"config": {"objectives": ["accuracy", "conciseness"]},
              "objectives": [{"name": "accuracy", "params": None}, {"name": "conciseness", "params": None}]}
    with caplog.at_level(logging.WARNING, logger="moalign.evaluation"):
        evaluation.run_objectives(passed)
    assert "default parameters" in caplog.text and "conciseness" in caplog.text
    with pytest.raises(ValueError, match=r"run.json config.objectives\[1\]: .*does not accept \['budget'\]"):
        evaluation.run_objectives({"config": {"objectives": ["accuracy", {"name": "conciseness", "budget": 3}]}})


def test_moalign_eval_samples_as_the_training_did(finished_run, tmp_path, monkeypatch):
    """A run trained with mo_eval_temperature > 0 is evaluated by `moalign eval` at that temperature, each step from
    the seed the training's own evaluation of that step used."""
    run = tmp_path / "run"
    shutil.copytree(finished_run["run"], run)
    meta = json.loads((run / "run.json").read_text())
    meta["config"]["mo_eval_temperature"] = 0.7
    (run / "run.json").write_text(json.dumps(meta))
    seen = []
    real = evaluation.evaluate_policy

    def recording(model, tok, rows, objectives, **kwargs):
        seen.append((kwargs["temperature"], kwargs["seed"]))
        return real(model, tok, rows, objectives, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_policy", recording)
    torch.set_num_threads(1)
    records = evaluation.evaluate_run(run, split="test", batch_size=4, progress=False)
    seed = meta["config"]["seed"]
    assert seen == [(0.7, evaluation.eval_seed(seed, r["step"])) for r in records] and len(seen) == 3

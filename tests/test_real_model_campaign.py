"""benchmarks/real_model_campaign.py (issue 19, item 7): the run list and its states, the analysis against hand
computations on hand-made runs, the results commit, and skip/resume end to end on the tiny model (no download)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
              {"name": "conciseness", "maximize": True, "eval_metric": "length"},
              {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def campaign():
    return _load("real_model_campaign")


def _args(campaign, out: Path, *extra: str):
    return campaign.parse_args(["--out", str(out), *extra])


def test_run_list_settings_and_order(campaign, tmp_path):
    runs = campaign.plan(_args(campaign, tmp_path))
    assert [r.name for r in runs[:4]] == ["fixed-balanced-seed200", "gradient-seed200", "saw-seed200",
                                          "fixed-balanced-seed201"]
    assert len(runs) == 15 and {r.seed for r in runs} == {200, 201, 202, 203, 204}
    base = yaml.safe_load((ROOT / "examples" / "smollm2_additions.yaml").read_text())
    fixed, gradient, saw = runs[:3]
    assert (fixed.config["strategy"], fixed.config["strategy_params"]) == ("fixed", {"preset": "balanced"})
    assert (gradient.config["strategy"], gradient.config["strategy_params"]) == ("gradient", {"mu": 3.3e-3})
    assert (saw.config["strategy"], saw.config["strategy_params"]) == ("saw", {})
    for r in runs[:3]:
        assert r.config["seed"] == 200 and r.config["run_dir"] == str(tmp_path / r.name)
        assert r.config["output_dir"] == str(tmp_path / r.name / "checkpoints")
        assert (r.config["save_strategy"], r.config["save_steps"]) == ("steps", 5)
        assert r.config["mo_eval_temperature"] == 0.7
        # everything else is the documented run's
        for key in ("model", "dataset_kwargs", "max_steps", "learning_rate", "lora_r", "mo_eval_steps", "temperature"):
            assert r.config[key] == base[key]
    # a bench method with trainer settings of its own brings them; --dynamic-params merges into its strategy params
    gdpo = campaign.plan(_args(campaign, tmp_path, "--dynamic", "gdpo", "--seeds", "7"))[1]
    assert gdpo.name == "gdpo-seed7" and gdpo.config["multi_objective_aggregation"] == "normalize_then_sum"
    hv = campaign.plan(_args(campaign, tmp_path, "--dynamic", "hypervolume-balanced", "--seeds", "7",
                             "--dynamic-params", '{"activation": "sigmoid"}'))[1]
    assert hv.config["strategy_params"] == {"preset": "balanced", "point_source": "train_batch",
                                            "activation": "sigmoid"}
    smoke = campaign.plan(_args(campaign, tmp_path / "s", "--smoke"))
    assert len(smoke) == 6 and smoke[0].config["max_steps"] == 2 and smoke[0].config["save_steps"] == 1


def test_bad_choices_are_refused_with_the_fix(campaign, tmp_path):
    with pytest.raises(SystemExit, match="not a bench method; choose from .*hypervolume-balanced"):
        campaign.plan(_args(campaign, tmp_path, "--dynamic", "gradiant"))
    with pytest.raises(SystemExit, match="already in the campaign"):
        campaign.plan(_args(campaign, tmp_path, "--dynamic", "saw"))
    with pytest.raises(SystemExit):
        campaign.parse_args(["--seeds", "200,200"])
    # a run directory of another campaign (here a smoke one) is not resumed or counted
    run = campaign.plan(_args(campaign, tmp_path, "--smoke"))[0]
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "campaign_config.yaml").write_text(yaml.safe_dump(run.config))
    with pytest.raises(SystemExit, match="max_steps: 2 there, 20 now.*own --out"):
        campaign.plan(_args(campaign, tmp_path))


def _checkpoint(run_dir: Path, step: int, complete: bool = True) -> None:
    ckpt = run_dir / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    if complete:
        (ckpt / "moalign_state.json").write_text("{}")


def test_states_in_the_dry_run(campaign, tmp_path, capsys):
    args = _args(campaign, tmp_path, "--seeds", "200")
    fixed, gradient, saw = (tmp_path / f"{m}-seed200" for m in ("fixed-balanced", "gradient", "saw"))
    (fixed / "final").mkdir(parents=True)
    (fixed / "final" / "adapter_model.safetensors").write_bytes(b"x")
    _checkpoint(gradient, 5)
    _checkpoint(gradient, 10)
    _checkpoint(gradient, 15, complete=False)  # killed while saving: not resumed from
    (gradient / "steps.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 17)))
    saw.mkdir()
    (saw / "run.json").write_text("{}")
    states = campaign.dry_run(args)
    assert [s.status for _, s in states] == ["done", "partial", "started"]
    assert states[1][1].step == 10 and states[1][1].checkpoint.endswith("checkpoint-10")
    out = capsys.readouterr().out
    assert "partial at step 10 of 20 (resumes from checkpoint-10)" in out
    assert "started, no checkpoint (0 steps logged; restarts from step 0)" in out
    assert "1 done, 2 to train" in out
    # the partial run resumes from its checkpoint; the others start afresh
    assert campaign.train_argv(Path("c.yaml"), states[1][1].checkpoint) == [
        "train", "c.yaml", "--resume_from_checkpoint", states[1][1].checkpoint]
    assert campaign.train_argv(Path("c.yaml"), None) == ["train", "c.yaml"]
    # ETA: docs/real_model.md's minutes per 20 steps (no run of this campaign timed yet) plus each run's analysis
    expected = (10 * 20.7 * 60 / 20 + campaign.ANALYSIS_SECONDS) + (20 * 16.3 * 60 / 20 + campaign.ANALYSIS_SECONDS)
    assert campaign.eta_seconds(campaign.plan(args), campaign.ANALYSIS_SECONDS) == pytest.approx(expected)


def _hand_made_run(root: Path, method: str, seed: int, final_accuracy: float, greedy_rows: list[float],
                   base_rows: list[float]) -> None:
    """Two evaluations, step 0 (accuracy 0.5, 20 of 40 tokens, clarity 1) and step 20 (final_accuracy, 30 tokens,
    clarity 1), the greedy per-row scores of the base and final policy cached, and a final model file."""
    d = root / f"{method}-seed{seed}"
    (d / "final").mkdir(parents=True)
    (d / "final" / "adapter_model.safetensors").write_bytes(b"x")
    meta = {"seed": seed, "strategy": {"name": method}, "config": {"max_completion_length": 40},
            "objectives": OBJECTIVES}
    (d / "run.json").write_text(json.dumps(meta))
    (d / "evals.jsonl").write_text("".join(json.dumps({"step": s, "split": "test", "metrics": m}) + "\n" for s, m in [
        (0, {"accuracy": 0.5, "length": 20.0, "clarity": 1.0}),
        (20, {"accuracy": final_accuracy, "length": 30.0, "clarity": 1.0})]))
    (d / "steps.jsonl").write_text(json.dumps({"step": 20, "weights": {"accuracy": 0.5, "conciseness": 0.25,
                                                                       "clarity": 0.25}}) + "\n")
    n = len(greedy_rows)
    (d / "final_greedy.json").write_text(json.dumps({
        "split": "test", "max_rows": None, "rows": n,
        "trained": {"accuracy": greedy_rows, "clarity": [1.0] * n, "length": [30.0] * n},
        "base": {"accuracy": base_rows, "clarity": [1.0] * n, "length": [34.0] * n}}))


def test_analysis_of_hand_made_runs_against_hand_computations(campaign, tmp_path):
    # front of a run: normalised points (0.5, 0.5, 1) at step 0 and (a, 0.25, 1) at step 20, a > 0.5: the union of
    # the two boxes from the origin is 0.5*0.5 + a*0.25 - 0.5*0.25 = 0.125 + 0.25 a
    final_acc = {"fixed-balanced": [0.6, 0.7, 0.8], "gradient": [0.7, 0.7, 0.6], "saw": [0.9, 0.8, 1.0]}
    greedy = {"fixed-balanced": [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1]],
              "gradient": [[1, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]],
              "saw": [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 1]]}
    base = [1, 0, 0, 0]
    seeds = [200, 201, 202]
    for method, accs in final_acc.items():
        for i, seed in enumerate(seeds):
            _hand_made_run(tmp_path, method, seed, accs[i], greedy[method][i], base)
    assert campaign.main(["--out", str(tmp_path), "--seeds", "200,201,202", "--analyze-only",
                          "--bootstrap", "2000"]) == 0
    s = json.loads((tmp_path / "campaign.json").read_text())
    assert s["done"] == s["total"] == 9 and s["methods"] == ["fixed-balanced", "gradient", "saw"]
    hv = {m: [0.125 + 0.25 * a for a in accs] for m, accs in final_acc.items()}
    for m in final_acc:
        for i, seed in enumerate(seeds):
            rec = s["runs"][m][str(seed)]
            assert rec["hv"] == pytest.approx(hv[m][i])
            assert rec["greedy"]["accuracy"] == pytest.approx(np.mean(greedy[m][i]))
            assert rec["greedy_base"]["accuracy"] == pytest.approx(0.25)
    eval_script = _load("real_model_eval")
    for c in s["comparisons"]:
        m = c["method"]
        assert c["reference"] == "fixed-balanced" and c["seeds"] == seeds
        d_hv = np.subtract(hv[m], hv["fixed-balanced"])
        assert c["hv"]["per_seed"] == pytest.approx(d_hv) and c["hv"]["diff"] == pytest.approx(d_hv.mean())
        assert [c["hv"]["wins"], c["hv"]["ties"], c["hv"]["losses"]] == [
            int(np.sum(d_hv > 1e-12)), int(np.sum(np.abs(d_hv) <= 1e-12)), int(np.sum(d_hv < -1e-12))]
        assert c["hv"]["ci"][0] <= d_hv.mean() <= c["hv"]["ci"][1]
        rows = [np.subtract(greedy[m][i], greedy["fixed-balanced"][i]) for i in range(3)]
        acc = c["greedy_accuracy"]
        assert acc["per_seed"] == pytest.approx([r.mean() for r in rows])
        assert acc["diff"] == pytest.approx(np.mean([r.mean() for r in rows]))
        assert acc["ci_seeds_x_problems"] == pytest.approx(eval_script.two_level_ci(rows, 2000))
    gradient = next(c for c in s["comparisons"] if c["method"] == "gradient")
    assert gradient["hv"]["per_seed"] == pytest.approx([0.025, 0.0, -0.05])  # hand: 0.25 x (0.1, 0, -0.2)
    assert [gradient["greedy_accuracy"][k] for k in ("wins", "ties", "losses")] == [1, 1, 1]
    md = (tmp_path / "campaign.md").read_text()
    assert "| gradient | 200 | 0.3000 | 0, 20 |" in md
    assert "| saw | fixed-balanced | accuracy | 200,201,202 | 0.750 / 0.417 | +0.500 +0.250 +0.250 | +0.333 [" in md
    assert "Partial results" not in md
    assert s["base_config"] == "examples/smollm2_additions.yaml"  # committed tables name no machine's directory


def test_lr_control_trains_fixed_balanced_at_a_scaled_rate_and_joins_the_earlier_campaign(campaign, tmp_path):
    """Issue 29, item 6: the control's run list, and its tables against an earlier campaign's records."""
    runs = campaign.plan(_args(campaign, tmp_path / "c", "--lr-control", "0.86", "--seeds", "200,201"))
    base = yaml.safe_load((ROOT / "examples" / "smollm2_additions.yaml").read_text())
    assert [r.name for r in runs] == ["fixed-balanced-lr0.86x-seed200", "fixed-balanced-lr0.86x-seed201"]
    assert runs[0].config["learning_rate"] == pytest.approx(0.86 * base["learning_rate"])
    assert (runs[0].config["strategy"], runs[0].config["strategy_params"]) == ("fixed", {"preset": "balanced"})
    with pytest.raises(SystemExit):
        _args(campaign, tmp_path, "--lr-control", "0")
    with pytest.raises(SystemExit):
        _args(campaign, tmp_path, "--reference-results", str(tmp_path / "missing.json"))
    # the earlier campaign: fixed-balanced and gradient; HV of a run is 0.125 + 0.25 x its final accuracy (above)
    earlier, control = tmp_path / "earlier", tmp_path / "control"
    finals = {"fixed-balanced": [0.8, 0.7], "gradient": [0.6, 0.7], "fixed-balanced-lr0.86x": [0.7, 0.9]}
    greedy = {"fixed-balanced": [[1, 1], [1, 0]], "gradient": [[0, 1], [0, 0]], "fixed-balanced-lr0.86x": [[1, 0], [1, 1]]}
    for method, accs in finals.items():
        for i, seed in enumerate([200, 201]):
            _hand_made_run(control if "lr" in method else earlier, method, seed, accs[i], greedy[method][i], [0, 0])
    assert campaign.main(["--out", str(earlier), "--seeds", "200,201", "--dynamic", "gradient", "--analyze-only",
                          "--bootstrap", "200"]) == 0
    assert campaign.main(["--out", str(control), "--seeds", "200,201", "--lr-control", "0.86", "--analyze-only",
                          "--reference-results", str(earlier / "campaign.json"), "--bootstrap", "200"]) == 0
    s = json.loads((control / "campaign.json").read_text())
    assert (s["done"], s["total"]) == (2, 2)  # the control's own runs; the imported ones are not counted
    assert s["issue"] == "29, item 6" and s["methods"] == ["fixed-balanced", "gradient", "saw",
                                                            "fixed-balanced-lr0.86x"]
    pairs = {(c["method"], c["reference"]): c for c in s["comparisons"]}
    assert set(pairs) == {("gradient", "fixed-balanced"), ("fixed-balanced-lr0.86x", "fixed-balanced"),
                          ("gradient", "fixed-balanced-lr0.86x")}
    hv = pairs[("fixed-balanced-lr0.86x", "fixed-balanced")]["hv"]
    assert hv["per_seed"] == pytest.approx([0.25 * (0.7 - 0.8), 0.25 * (0.9 - 0.7)])
    slower_vs_direction = pairs[("gradient", "fixed-balanced-lr0.86x")]
    assert slower_vs_direction["hv"]["per_seed"] == pytest.approx([0.25 * (0.6 - 0.7), 0.25 * (0.7 - 0.9)])
    # greedy accuracy from the earlier records' seed means (its per-problem scores are not imported)
    acc = slower_vs_direction["greedy_accuracy"]
    assert acc["per_seed"] == pytest.approx([0.5 - 0.5, 0.0 - 1.0]) and "ci_seeds_x_problems" not in acc
    md = (control / "campaign.md").read_text()
    assert "| gradient | fixed-balanced-lr0.86x | accuracy | 200,201 | 0.250 / 0.750 | +0.000 -1.000 | -0.500 [" in md


def test_partial_campaign_tables_name_what_is_missing(campaign, tmp_path):
    _hand_made_run(tmp_path, "fixed-balanced", 200, 0.6, [1, 0], [0, 0])
    _hand_made_run(tmp_path, "saw", 200, 0.8, [1, 1], [0, 0])
    _checkpoint(tmp_path / "gradient-seed200", 5)
    campaign.main(["--out", str(tmp_path), "--seeds", "200,201", "--analyze-only", "--bootstrap", "200"])
    s = json.loads((tmp_path / "campaign.json").read_text())
    assert (s["done"], s["total"]) == (2, 6) and [c["method"] for c in s["comparisons"]] == ["saw"]
    md = (tmp_path / "campaign.md").read_text()
    assert "**Partial results" in md and "- gradient-seed200: partial at step 5 of 20" in md
    assert "- fixed-balanced-seed201: todo" in md


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_commit_results_commits_only_the_two_files(campaign, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "other.txt").write_text("a")
    _git(repo, "add", "other.txt")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "other.txt").write_text("b")  # someone else's edits: staged and unstaged
    (repo / "staged.txt").write_text("s")
    _git(repo, "add", "staged.txt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "campaign.md").write_text("# one\n")
    (out / "campaign.json").write_text("{}")
    dest = repo / "results" / "campaign"
    assert campaign.commit_results(out, dest, "results after run 1")
    assert _git(repo, "show", "--name-only", "--format=%s", "HEAD").split() == [
        "results", "after", "run", "1", "results/campaign/campaign.json", "results/campaign/campaign.md"]
    status = _git(repo, "status", "--porcelain")
    assert "A  staged.txt" in status and " M other.txt" in status  # left as they were
    assert not campaign.commit_results(out, dest, "nothing new")  # unchanged results: no empty commit
    (out / "campaign.md").write_text("# two\n")
    assert campaign.commit_results(out, dest, "results after run 2")
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["results/campaign/campaign.md"]


def test_launch_runs_the_moalign_command_in_a_child_and_returns_its_exit_code(campaign, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("earlier session\n")
    code = campaign.launch(["no-such-command"], log, threads=1)
    text = log.read_text()
    assert code == 2 and "No such command 'no-such-command'" in text
    assert text.startswith("earlier session\n") and "moalign no-such-command" in text  # appended, with the command


def test_smoke_campaign_on_the_tiny_model_skips_done_runs_and_resumes_a_killed_one(campaign, tmp_path, monkeypatch):
    """The documented config with the tiny model in place of SmolLM2 (no download): --smoke trains the three runs of
    one seed (in this process, through the same `moalign train` arguments), then a run cut back to its step-1
    checkpoint is resumed from it, and the two finished runs are not trained again."""
    from typer.testing import CliRunner

    from moalign.cli import app

    cfg = yaml.safe_load((ROOT / "examples" / "smollm2_additions.yaml").read_text())
    cfg.update(model="tiny", model_kwargs={"num_hidden_layers": 2}, gram_layers="1", lora_r=4, lora_alpha=8,
               max_completion_length=16)  # the random tiny model's replies are noise: shorter is faster
    cfg["dataset_kwargs"].update(n_train=16, n_val=4, n_test=8)  # fewer problems: faster data set-up
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    launched = []

    def in_process(argv, log_path, threads, on_poll=None):
        launched.append(argv)
        result = CliRunner().invoke(app, argv)
        log_path.write_text(result.output)
        return result.exit_code

    monkeypatch.setattr(campaign, "launch", in_process)
    out = tmp_path / "out"
    argv = ["--smoke", "--out", str(out), "--config", str(tmp_path / "tiny.yaml"), "--seeds", "200", "--threads", "1"]
    assert campaign.main(argv) == 0
    assert [a[1] for a in launched] == [str(out / f"{m}-seed200" / "campaign_config.yaml")
                                        for m in ("fixed-balanced", "gradient", "saw")]
    s = json.loads((out / "campaign.json").read_text())
    assert s["done"] == 3 and s["smoke"] and len(s["comparisons"]) == 2
    saw = out / "saw-seed200"
    assert json.loads((saw / "final_greedy.json").read_text())["rows"] == 4  # --smoke: the first 4 test problems

    # kill saw after its step-1 checkpoint: no final model, no step-2 checkpoint, logs written past the checkpoint
    import shutil

    shutil.rmtree(saw / "final")
    shutil.rmtree(saw / "checkpoints" / "checkpoint-2")
    assert campaign.run_state(saw).describe(2).startswith("partial at step 1 of 2")
    launched.clear()
    assert campaign.main(argv) == 0
    assert launched == [["train", str(saw / "campaign_config.yaml"), "--resume_from_checkpoint",
                         str(saw / "checkpoints" / "checkpoint-1")]]
    assert [json.loads(line)["step"] for line in (saw / "steps.jsonl").read_text().splitlines()] == [1, 2]
    assert campaign.run_state(saw).status == "done"
    timing = json.loads((saw / "timing.json").read_text())
    assert [x["resumed_from"] for x in timing["sessions"]] == [None, str(saw / "checkpoints" / "checkpoint-1")]
    assert json.loads((out / "campaign.json").read_text())["done"] == 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_background_campaign_stops_its_child_on_sigterm_and_sigint(campaign, signum):
    """nohup/& starts the campaign with SIGINT ignored and SIGTERM fatal: either way the running child would be
    orphaned. After stop_on_signals() both raise KeyboardInterrupt, the path on which launch() stops the child."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a background shell job starts with
        signal.signal(signal.SIGTERM, lambda *_: None)  # stands in for the default (which would end pytest too)
        campaign.stop_on_signals()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)  # the handler runs before the next bytecode
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_claim_is_exclusive_and_dies_with_its_process(campaign, tmp_path):
    """Two campaign processes sharing one run list must never train the same run; a killed holder frees the run."""
    run_dir = tmp_path / "saw-seed200"
    with campaign.claim(run_dir) as first:
        assert first and campaign.lock_holder(run_dir) == os.getpid()
        with campaign.claim(run_dir) as second:  # a separate open file: flock refuses it even in one process
            assert not second
    assert campaign.lock_holder(run_dir) is None
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.truncate(0); f.write('4242\\n'); f.flush(); print('held', flush=True); "
         "time.sleep(60)", str(run_dir / campaign.LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert campaign.lock_holder(run_dir) == 4242
        with campaign.claim(run_dir) as mine:
            assert not mine
    finally:
        holder.kill()
        holder.wait()
    with campaign.claim(run_dir) as mine:  # no stale lock left by the killed process
        assert mine


def test_a_run_another_process_trains_is_skipped_not_failed(campaign, tmp_path, monkeypatch, capsys):
    launched = []

    def fake_launch(argv, log_path, threads, on_poll=None):
        run_dir = Path(argv[1]).parent
        launched.append(run_dir.name)
        (run_dir / "final").mkdir()
        (run_dir / "final" / "adapter_model.safetensors").write_bytes(b"")
        return 0

    monkeypatch.setattr(campaign, "launch", fake_launch)
    monkeypatch.setattr(campaign, "_analyse_and_commit", lambda *a, **k: 0.0)
    args = _args(campaign, tmp_path, "--seeds", "200")
    with campaign.claim(tmp_path / "gradient-seed200"):
        assert campaign.run_campaign(args) == 0
        assert launched == ["fixed-balanced-seed200", "saw-seed200"]
        assert "gradient seed 200: being trained by another campaign process" in capsys.readouterr().out
        campaign.dry_run(args)
        assert f"training now (pid {os.getpid()})" in capsys.readouterr().out
        args.no_greedy = True  # the stand-in runs have no logs or model to evaluate
        monkeypatch.setattr(campaign, "run_record", lambda *a: {})
        monkeypatch.setattr(campaign, "compare", lambda *a: [])
        states = campaign.analyse(campaign.plan(args), args)["states"]
        assert states["gradient-seed200"] == "todo; training now" and states["saw-seed200"] == "done"
    launched.clear()
    assert campaign.run_campaign(args) == 0  # released: now this process trains it, and only it
    assert launched == ["gradient-seed200"]

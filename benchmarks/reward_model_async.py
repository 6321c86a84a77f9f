"""RL on the habit reward model vs RL on the rules, on the ``async`` task, measured by the rules (issue 28, item 6).

Two arms, paired by seed (same warm start, data order and sampling seeds), fixed balanced weights, GRPO, the bench
budget of ``moalign bench --task async`` (30 steps, 4 prompts x 8 rollouts, lr 1e-4, 64 tokens):

* ``rules``: objectives ``[accuracy, conciseness, clarity]``;
* ``rm``: the three heads of the shipped reward model (``moalign.habit_reward_model``): ``rm_correct``,
  ``rm_numbered``, ``rm_filler`` (minimised).

Both arms are evaluated the same way, every ``eval_every`` steps and at step 0, on the first ``eval_size`` test
problems, one completion each sampled at temperature 1 (the async task's evaluation, docs/demo_task.md), seeded per
(seed, step): the rules score the completions (accuracy, length, clarity: the front and its hypervolume in the
normalised space), and the reward model's heads score the same completions (reward hacking shows as head scores that
rise while the rule they stand for does not). Lines go to ``<out>/<arm>-seed<k>/rules_evals.jsonl``.

    python benchmarks/reward_model_async.py [--seeds 100,101,102,103,104] [--out runs/rm_async]

Resumable: a run whose last evaluation reached ``--steps`` is skipped; the summary (paired differences with bootstrap
95 % CIs, moalign.bench.paired_comparison) is rewritten after every run to ``<out>/summary.json`` and printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

RULE_OBJECTIVES = ["accuracy", "conciseness", "clarity"]
RULES_META = [{"name": "accuracy", "maximize": True, "eval_metric": "accuracy"},
              {"name": "conciseness", "maximize": True, "eval_metric": "length"},
              {"name": "clarity", "maximize": True, "eval_metric": "clarity"}]
HEAD_NAMES = ["rm_correct", "rm_numbered", "rm_filler"]


def _rules_evaluator(trainer, rows, rm_heads, every: int, seed: int, path: Path, max_new: int):
    from transformers import TrainerCallback

    from moalign.evaluation import eval_seed, evaluate_policy
    from moalign.objectives import build_objectives
    from moalign.rundir import append_jsonl

    rules = build_objectives(RULE_OBJECTIVES)

    def evaluate(step: int) -> None:
        metrics = evaluate_policy(trainer.model, trainer.processing_class, rows, rules + rm_heads,
                                  max_new_tokens=max_new, batch_size=100, temperature=1.0,
                                  seed=eval_seed(seed, step))
        metrics.pop("completions")
        metrics.pop("per_row")
        append_jsonl(path, {"step": step, "split": "test", "metrics": metrics})

    class RulesEvaluation(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            evaluate(0)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                evaluate(state.global_step)

    return RulesEvaluation()


def train_one(arm: str, seed: int, run_dir: Path, args) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from moalign.data.synthetic import load_synthetic
    from moalign.demo import task_warm_start
    from moalign.habit_reward_model import habit_reward_model, objectives_entry
    from moalign.objectives import build_objectives, prepare_reward_models
    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer

    torch.set_num_threads(1)
    warm = task_warm_start("async", progress=False)
    rm_entry = objectives_entry(habit_reward_model())
    splits = load_synthetic(seed=0, variant="async")
    model = AutoModelForCausalLM.from_pretrained(warm)
    tok = AutoTokenizer.from_pretrained(warm)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run starts over (runs are short)
    config = MOGRPOConfig(
        output_dir=str(run_dir / "checkpoints"), run_dir=str(run_dir),
        objectives=RULE_OBJECTIVES if arm == "rules" else [rm_entry],
        strategy="fixed", strategy_params={"preset": "balanced"}, advantage_estimator="grpo",
        max_steps=args.steps, per_device_train_batch_size=4 * 8, num_generations=8, max_completion_length=64,
        learning_rate=1e-4, lr_scheduler_type="constant", temperature=1.0, beta=0.0, mo_eval_steps=0,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False, seed=seed,
        disable_tqdm=True, log_level="error",
    )
    trainer = MOGRPOTrainer(model=model, args=config, train_dataset=splits["train"], processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    heads = build_objectives([rm_entry])  # the same model scores both arms' evaluations
    prepare_reward_models(heads)
    rows = [dict(r) for r in splits["test"].select(range(args.eval_size))]
    trainer.add_callback(_rules_evaluator(trainer, rows, heads, args.eval_every, seed, run_dir / "rules_evals.jsonl",
                                          64))
    start = time.perf_counter()
    trainer.train()
    (run_dir / "timing.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}) + "\n")


def _complete(run_dir: Path, steps: int) -> bool:
    path = run_dir / "rules_evals.jsonl"
    if not path.is_file():
        return False
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return bool(lines) and max(e["step"] for e in lines) >= steps


def summarize(out: Path, seeds: list[int], steps: int) -> dict:
    from moalign.bench import paired_comparison
    from moalign.evaluation import summarize_front

    hv: dict[str, dict[int, float]] = {"rules": {}, "rm": {}}
    final: dict[str, dict[str, dict[int, float]]] = {"rules": {}, "rm": {}}
    for arm in hv:
        for seed in seeds:
            run_dir = out / f"{arm}-seed{seed}"
            if not _complete(run_dir, steps):
                continue
            evals = [json.loads(x) for x in (run_dir / "rules_evals.jsonl").read_text().splitlines() if x.strip()]
            hv[arm][seed] = summarize_front(evals, RULES_META, 64).hypervolume
            last, first = evals[-1]["metrics"], evals[0]["metrics"]
            for key in ("accuracy", "length", "clarity", *HEAD_NAMES):
                final[arm].setdefault(key, {})[seed] = last[key]
                final[arm].setdefault(f"{key}_change", {})[seed] = last[key] - first[key]
    summary = {"seeds_done": {arm: sorted(v) for arm, v in hv.items()}, "steps": steps,
               "hv": paired_comparison(hv["rm"], hv["rules"], 10000),
               "final": {key: paired_comparison(final["rm"][key], final["rules"].get(key, {}), 10000,
                                                higher_is_better=not key.startswith(("length", "rm_filler")))
                         for key in final["rm"]},
               "per_seed_hv": hv}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100,101,102,103,104")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--out", default="runs/rm_async")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for arm in ("rules", "rm"):
            run_dir = out / f"{arm}-seed{seed}"
            if _complete(run_dir, args.steps):
                continue
            print(f"training {arm} seed {seed}", flush=True)
            train_one(arm, seed, run_dir, args)
            s = summarize(out, seeds, args.steps)
            print(json.dumps({"seeds_done": s["seeds_done"], "hv": {k: s["hv"][k] for k in ("diff", "ci", "n")}}),
                  flush=True)
    s = summarize(out, seeds, args.steps)
    print(json.dumps(s, indent=1, default=lambda x: float(x) if isinstance(x, np.floating) else str(x)))


if __name__ == "__main__":
    main()

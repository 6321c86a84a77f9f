"""Step time of MOGRPOTrainer vs TRL's GRPOTrainer and of each weighting strategy vs `fixed`, side by side.

Every configuration trains the same tiny CPU setup (same model init, data, seed and batch, completions forced to
the full `--completion-length` so generation cost does not depend on what the strategy did) for `--steps` RL
steps; configurations are interleaved round-robin for `--rounds` rounds so that machine noise hits all of them
alike. Reported: the median per-step wall time over all measured steps (the first step of each run is warm-up and
dropped) and its ratio to the baseline measured in the same run.

    python benchmarks/bench_trainer.py --suite trainer      # GRPOTrainer vs MOGRPOTrainer(fixed), Gram K=3/6
    python benchmarks/bench_trainer.py --suite strategies   # every registered strategy vs fixed (K = 3)
    python benchmarks/bench_trainer.py --suite strategies --objectives 8   # the same at K = 8
    python benchmarks/bench_trainer.py --suite overhead --rounds 20   # GRPOTrainer vs MOGRPOTrainer(fixed) only

Besides the pooled per-step medians, the ratio of each configuration to the first row is computed within every
round (median step of the configuration / median step of the baseline in the same round, so slow phases of a shared
machine cancel) and reported as the median over rounds with its IQR: the figure to quote, once that IQR is small.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
import warnings

import torch
from datasets import Dataset

from moalign import weighting
from moalign.objectives import Accuracy, Clarity, Conciseness, as_objective, available_objectives, register_objective
from moalign.tiny import tiny_model_and_tokenizer
from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
from step_timer import WholeStepTimer  # benchmarks/step_timer.py (this script's folder is on sys.path)

BASE_OBJECTIVES = ["accuracy", "conciseness", "clarity"]


def _has_digit(completions, **_):
    return [float(any(ch.isdigit() for ch in (c[0]["content"] if isinstance(c, list) else c))) for c in completions]


def _has_space(completions, **_):
    return [float(" " in (c[0]["content"] if isinstance(c, list) else c)) for c in completions]


def _short(completions, **_):
    return [float(len(c[0]["content"] if isinstance(c, list) else c) < 20) for c in completions]


def _has_upper(completions, **_):
    return [float(any(ch.isupper() for ch in (c[0]["content"] if isinstance(c, list) else c))) for c in completions]


def _few_words(completions, **_):
    return [float(len((c[0]["content"] if isinstance(c, list) else c).split()) < 8) for c in completions]


STEP_CLOCK = [time.perf_counter]  # --clock cpu: time.process_time
# Cheap string objectives beyond the three base ones: K = 3 + len(EXTRA) at most (K = 8).
EXTRA = [("has_digit", _has_digit), ("has_space", _has_space), ("short", _short), ("has_upper", _has_upper),
         ("few_words", _few_words)]
MAX_OBJECTIVES = len(BASE_OBJECTIVES) + len(EXTRA)


def _dataset(n=64):
    rows = [{"prompt": [{"role": "user", "content": f"Compute {i % 9 + 1}+{i % 7 + 2}-{i % 3}."}],
             "answer": str(i % 9 + 1 + i % 7 + 2 - i % 3)} for i in range(n)]
    return Dataset.from_list(rows)


def _common(args, out):
    return dict(
        output_dir=out, per_device_train_batch_size=args.batch, num_generations=args.generations,
        max_completion_length=args.completion_length, max_steps=args.steps, learning_rate=1e-4, report_to="none",
        logging_steps=1000, use_cpu=True, seed=0, save_strategy="no", disable_tqdm=True,
        bf16=False,  # float32 for both: TRL's GRPOConfig alone would autocast in bf16 (moalign.precision)
        # Every completion gets exactly completion_length tokens, so generation costs the same whatever the strategy
        # did to the policy and the step-time ratios measure only moalign's overhead.
        generation_kwargs={"min_new_tokens": args.completion_length},
    )


def _objectives(k):
    objs = [Accuracy(), Conciseness(), Clarity()]
    for name, fn in EXTRA[: k - 3]:
        if name not in available_objectives():
            register_objective(name)(fn)
        objs.append(as_objective(fn, name=name))
    return objs


def run_config(args, label, strategy, params, k, estimator="grpo", trl_plain=False):
    model, tok = tiny_model_and_tokenizer(seed=0, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                          intermediate_size=2 * args.hidden)
    timer = WholeStepTimer(clock=STEP_CLOCK[0])
    with tempfile.TemporaryDirectory() as out:
        if trl_plain:
            from trl import GRPOConfig, GRPOTrainer

            trainer = GRPOTrainer(model=model, reward_funcs=_objectives(3), args=GRPOConfig(**_common(args, out)),
                                  train_dataset=_dataset(), processing_class=tok)
        else:
            objs = _objectives(k)
            cfg = MOGRPOConfig(objectives=[o.name for o in objs], strategy="fixed", advantage_estimator=estimator,
                               **_common(args, out))
            strat = weighting.build(strategy, k, [o.name for o in objs], **params)
            trainer = MOGRPOTrainer(model=model, args=cfg, train_dataset=_dataset(), processing_class=tok,
                                    objectives=objs, strategy=strat)
            if getattr(strat, "bench_two_pass", False):
                trainer._gram_one_pass = False
        timer.attach(trainer)  # last, so the trainer's end-of-step work (engine.finish) is inside the step
        torch.manual_seed(0)
        trainer.train()
    return timer.times[1:]


SUITES = {
    "trainer": [
        ("GRPOTrainer (TRL)", "fixed", {}, 3, "grpo", True),
        ("MOGRPOTrainer fixed", "fixed", {}, 3, "grpo", False),
        ("MOGRPOTrainer Gram K=3", "_bench_gram", {}, 3, "rloo", False),
        ("MOGRPOTrainer fixed K=6", "fixed", {"weights": [1 / 6] * 6}, 6, "grpo", False),
        ("MOGRPOTrainer Gram K=6", "_bench_gram", {}, 6, "rloo", False),
    ],
    "overhead": [
        ("GRPOTrainer (TRL)", "fixed", {}, 3, "grpo", True),
        ("MOGRPOTrainer fixed", "fixed", {}, 3, "grpo", False),
    ],
    # GramProbe cost vs fixed with the same estimator; "two-pass" turns off the one-pass forward reuse.
    "gram": [
        ("MOGRPOTrainer fixed K=3", "fixed", {}, 3, "rloo", False),
        ("MOGRPOTrainer Gram K=3", "_bench_gram", {}, 3, "rloo", False),
        ("MOGRPOTrainer Gram K=6", "_bench_gram", {}, 6, "rloo", False),
        ("MOGRPOTrainer Gram K=3 two-pass", "_bench_gram_two_pass", {}, 3, "rloo", False),
        ("MOGRPOTrainer fixed K=6", "fixed", {"weights": [1 / 6] * 6}, 6, "rloo", False),
        ("MOGRPOTrainer Gram K=8", "_bench_gram", {}, 8, "rloo", False),
        ("MOGRPOTrainer fixed K=8", "fixed", {"weights": [1 / 8] * 8}, 8, "rloo", False),
    ],
}


@weighting.register("_bench_gram")
class _BenchGram(weighting.WeightingStrategy):
    """Needs the Gram matrix and does nothing with it: isolates the GramProbe's cost."""

    needs = frozenset({"gram"})


@weighting.register("_bench_gram_two_pass")
class _BenchGramTwoPass(_BenchGram):
    """As _bench_gram, with the probe's own forward instead of reusing the update's (measures the one-pass gain)."""

    bench_two_pass = True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="trainer", choices=sorted(SUITES) + ["strategies"])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--completion-length", type=int, default=48)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--json", default=None, help="also write the raw timings here")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time; cpu: this process's CPU time (robust to other load on a shared machine)")
    p.add_argument("--objectives", type=int, default=3, metavar="K",
                   help=f"number of objectives K for --suite strategies (3 to {MAX_OBJECTIVES}: accuracy, "
                        f"conciseness, clarity, then {', '.join(n for n, _ in EXTRA)}); default 3")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    if not len(BASE_OBJECTIVES) <= args.objectives <= MAX_OBJECTIVES:
        p.error(f"--objectives must be between {len(BASE_OBJECTIVES)} and {MAX_OBJECTIVES}, got {args.objectives}")
    if args.objectives != len(BASE_OBJECTIVES) and args.suite != "strategies":
        p.error("--objectives applies to --suite strategies only (the other suites name K in each row)")
    return args


def suite_configs(args: argparse.Namespace) -> list[tuple]:
    """The rows (label, strategy, params, K, estimator, TRL-plain) the run measures."""
    return SUITES[args.suite] if args.suite in SUITES else strategy_suite(args.objectives)


def main(argv=None):
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        STEP_CLOCK[0] = time.process_time

    configs = suite_configs(args)
    samples = {c[0]: [] for c in configs}
    per_round = {c[0]: [] for c in configs}  # median step of each round
    round_steps = {c[0]: [] for c in configs}  # the steps of each round
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]  # alternate the order: no config always runs first
        for label, strategy, params, k, est, plain in order:
            times = run_config(args, label, strategy, params, k, est, plain)
            samples[label].extend(times)
            per_round[label].append(statistics.median(times))
            round_steps[label].append(times)
            print(f"round {r + 1}/{args.rounds} {label}: median so far {statistics.median(samples[label]):.4f} s",
                  flush=True)
    base = statistics.median(samples[configs[0][0]])
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {args.batch}, {args.generations} generations, "
          f"completion {args.completion_length} tokens, tiny model hidden {args.hidden} x {args.layers} layers; "
          f"{args.clock} clock; suite {args.suite}" + (f", K = {args.objectives}" if args.suite == "strategies" else "")
          + "\n")
    print("| configuration | median step (s) | IQR (s) | steps | ratio vs first row |")
    print("|---|---|---|---|---|")
    for label, *_ in configs:
        s = sorted(samples[label])
        q1, q3 = s[len(s) // 4], s[(3 * len(s)) // 4]
        med = statistics.median(s)
        print(f"| {label} | {med:.4f} | {q3 - q1:.4f} | {len(s)} | {med / base:.3f} |")
    print("\n| configuration | ratio vs first row, median over rounds | IQR of the per-round ratio | rounds |")
    print("|---|---|---|---|")
    for label, *_ in configs:
        ratios = sorted(a / b for a, b in zip(per_round[label], per_round[configs[0][0]]))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        print(f"| {label} | {statistics.median(ratios):.3f} | {q3 - q1:.3f} | {len(ratios)} |")
    # Uncertainty of the pooled-median ratio: bootstrap over rounds (a resampled round brings the steps of every
    # configuration measured in it, so the pairing within rounds is kept).
    import numpy as np

    rng = np.random.default_rng(0)
    base_rounds = round_steps[configs[0][0]]
    print("\n| configuration | ratio of pooled medians | bootstrap IQR | bootstrap 95 % CI | rounds |")
    print("|---|---|---|---|---|")
    for label, *_ in configs[1:]:
        rounds = round_steps[label]
        boot = []
        for _ in range(2000):
            idx = rng.integers(0, len(rounds), len(rounds))
            num = np.median(np.concatenate([rounds[i] for i in idx]))
            den = np.median(np.concatenate([base_rounds[i] for i in idx]))
            boot.append(num / den)
        q = np.percentile(boot, [2.5, 25, 75, 97.5])
        point = statistics.median(samples[label]) / base
        print(f"| {label} | {point:.3f} | {q[2] - q[1]:.3f} | [{q[0]:.3f}, {q[3]:.3f}] | {len(rounds)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": samples, "round_medians": per_round, "args": vars(args), "cpu": _cpu(),
                   "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "configs": [{"label": c[0], "strategy": c[1], "params": c[2], "k": c[3], "estimator": c[4]}
                               for c in configs]}, f, indent=1)


def _cpu() -> dict:
    """The CPU's model name and whether it has AVX-512, AVX512-BF16 and AMX (Linux; else the platform's name)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"model": name, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx": "amx_tile" in flags}


def strategy_suite(k: int = 3):
    """Every registered strategy with its defaults at K objectives, ``fixed`` first (uniform weights when K != 3).

    Hypervolume takes its points from the training batch (``point_source: train_batch``: the exact hypervolume
    contribution of every step's batch means); CTWA needs one target covariance per objective when K != 3: the
    papers' 0.15 for accuracy and 0.08 for every other objective.
    """
    rows = [("fixed", "fixed", {}, k, "grpo", False)]
    params = {"hypervolume": {"point_source": "train_batch"}}
    if k != len(BASE_OBJECTIVES):
        params["ctwa"] = {"cov_targets": [0.15] + [0.08] * (k - 1)}
    for name in weighting.available():
        if name.startswith("_") or name == "fixed":
            continue
        est = "rloo" if "gram" in weighting.STRATEGIES[name].needs else "grpo"
        rows.append((name, name, params.get(name, {}), k, est, False))
    return rows


if __name__ == "__main__":
    main()

"""One RL step on CPU under bf16 autocast against float32, side by side, with and without bf16 hardware.

For each model (the demo's warm-start model at bench size; SmolLM2-135M-Instruct at a small batch) and precision
(`bf16: true`, TRL's default, which Accelerate turns into CPU bf16 autocast; `bf16: false`, float32), one process
trains a few RL steps of the embedded task and reports the median time of each phase: `generate` (sampling +
scoring), `update` (loss, backward, optimizer) and one `evaluation` (greedy, the test split). Every completion is
forced to the full `max_completion_length`, so the two precisions generate the same number of tokens.

Each configuration also runs under `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, which turns off AVX-512 and
bf16 hardware (AMX, AVX512-BF16): the CPU of a user or CI machine without them. Configurations are interleaved
round-robin over `--rounds` rounds, and the bf16/fp32 ratio is taken within each round, so load from other
processes hits both alike. The update is set against its FLOP bound, 6·N·tokens at the float32 GEMM rate measured
here (N: parameters).

    python benchmarks/bench_precision.py --rounds 3 --threads 1 --out benchmarks/results/precision.json
    python benchmarks/bench_precision.py --micro --threads 1 --out benchmarks/results/precision_micro.json

`--micro` times one forward+backward and one sampled generation of each model by the CPU time of its process,
float32 and bf16 autocast interleaved: on a machine shared with other jobs this is the figure to trust (waiting for
a core does not count), while the whole-step phases above are wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ISAS = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
# (prompts per step, generations, max completion tokens, eval problems, steps): the bench's RL step for the demo
# model; a smaller batch for SmolLM2 (135 M parameters, 220x the demo model).
SIZES = {"demo": (4, 8, 64, 200, 3), "smollm2": (2, 4, 32, 16, 2)}
# --micro only: (hidden, layers, vocabulary, batch) of random-init Qwen3 models between the demo model and SmolLM2
RANDOM_SIZES = {"qwen3-7m": (256, 4, 8192, 16), "qwen3-23m": (384, 6, 16384, 8), "qwen3-59m": (512, 8, 32768, 8)}


def _gemm_gflops(threads: int) -> float:
    """Float32 matrix-multiply rate of this CPU (the FLOP bound's denominator)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    return 2 * 1024 ** 3 * reps / (time.perf_counter() - start) / 1e9


def run_one(model: str, bf16: bool, threads: int) -> dict:
    """Train one configuration in this process; returns its phase times (s) and counts."""
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from moalign.data.synthetic import load_synthetic
    from moalign.demo import task_warm_start
    from moalign.precision import cpu_info
    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer
    from moalign.trainer_eval import TrainingEvaluator

    prompts, gens, max_len, eval_size, steps = SIZES[model]
    if model == "demo":
        path = task_warm_start("coupled", progress=False)
    else:
        from moalign.models import resolve_model

        path = resolve_model("smollm2-135m-instruct", verbose=False)
    eval_times: list[float] = []
    original_run = TrainingEvaluator._run

    def timed_run(self, step):
        start = time.perf_counter()
        try:
            return original_run(self, step)
        finally:
            eval_times.append(time.perf_counter() - start)

    TrainingEvaluator._run = timed_run
    splits = load_synthetic(seed=0)
    policy = AutoModelForCausalLM.from_pretrained(path)
    n_params = sum(p.numel() for p in policy.parameters())
    with tempfile.TemporaryDirectory() as out:
        args = MOGRPOConfig(
            output_dir=out, objectives=["accuracy", "conciseness", "clarity"], strategy="fixed",
            max_steps=steps, per_device_train_batch_size=prompts * gens, num_generations=gens,
            max_completion_length=max_len, learning_rate=1e-5, beta=0.0, mo_eval_steps=steps, mo_eval_size=eval_size,
            per_device_eval_batch_size=min(eval_size, 100), logging_steps=1, save_strategy="no", report_to="none",
            use_cpu=True, bf16=bf16, seed=0, disable_tqdm=True, log_level="error",
            generation_kwargs={"min_new_tokens": max_len})
        trainer = MOGRPOTrainer(model=policy, args=args, train_dataset=splits["train"], eval_dataset=splits["test"],
                                processing_class=AutoTokenizer.from_pretrained(path), eval_split_name="test")
        trainer.remove_callback(PrinterCallback)  # stdout carries the result line only
        trainer.train()
        lines = [json.loads(x) for x in (Path(out) / "steps.jsonl").read_text().splitlines()]
        prompt_tokens = statistics.mean(len(trainer.processing_class.apply_chat_template(
            r["prompt"], add_generation_prompt=True, tokenize=True)) for r in splits["train"].select(range(32)))
    timed = lines[1:] or lines  # the first step warms up
    return {
        "model": model, "bf16": bf16, "params": n_params, "cpu": cpu_info(),
        "mixed_precision": trainer.accelerator.mixed_precision,
        "generate_s": statistics.median(x["timings"]["generate"] for x in timed),
        "update_s": statistics.median(x["timings"]["update"] for x in timed),
        "evaluation_s": statistics.median(eval_times[1:] or eval_times),  # [0]: the initial policy's, at step 0
        "update_tokens": prompts * gens * (prompt_tokens + max_len), "gemm_gflops": _gemm_gflops(threads),
    }


def micro_one(model: str, threads: int, reps: int) -> dict:
    """CPU time (this process, ``threads`` threads) of one forward+backward and of one sampled generation, float32 and
    bf16 autocast interleaved ``reps`` times: robust to other processes' load, which wall times are not."""
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM

    from moalign.precision import cpu_info

    if model == "demo":
        from moalign.demo import task_warm_start

        policy, batch, prompt, new = AutoModelForCausalLM.from_pretrained(task_warm_start("coupled", progress=False)), \
            32, 13, 64
    elif model == "smollm2":
        from moalign.models import resolve_model

        policy = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m-instruct", verbose=False))
        batch, prompt, new = 8, 60, 32
    else:  # a random-init Qwen3 of one of the sizes between the two (where bf16 hardware starts to pay)
        from transformers import Qwen3Config

        hidden, layers, vocab, batch = RANDOM_SIZES[model]
        torch.manual_seed(0)
        policy = AutoModelForCausalLM.from_config(Qwen3Config(
            hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers, head_dim=64, vocab_size=vocab,
            num_attention_heads=max(2, hidden // 64), num_key_value_heads=max(1, hidden // 128)))
        prompt, new = 60, 32
    out = {"model": model, "params": sum(p.numel() for p in policy.parameters())}
    ids = torch.randint(0, policy.config.vocab_size, (batch, prompt + new))

    def update(bf16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = policy(ids, labels=ids)
        out.loss.backward()

    def generate(bf16):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            policy.generate(ids[:, :prompt], max_new_tokens=new, min_new_tokens=new, do_sample=True, pad_token_id=0)

    out |= {"cpu": cpu_info(), "batch": batch, "prompt_tokens": prompt, "new_tokens": new}
    for name, fn in (("update", update), ("generate", generate)):
        fn(False), fn(True)  # warm-up
        times = {False: [], True: []}
        for _ in range(reps):
            for bf16 in (False, True):
                start = time.process_time()
                fn(bf16)
                times[bf16].append(time.process_time() - start)
        out[f"{name}_fp32_cpu_s"] = statistics.median(times[False])
        out[f"{name}_bf16_cpu_s"] = statistics.median(times[True])
    return out


def micro_table(rows: list[dict]) -> str:
    out = ["| CPU features | model (parameters) | phase (batch × tokens) | fp32 CPU s | bf16 autocast CPU s | bf16 / fp32 |",
           "|---|---|---|---:|---:|---:|"]
    for r in rows:
        label = f"{r['cpu']['torch_capability']}, bf16 hardware {'on' if r['cpu']['native_bf16'] else 'off'}"
        for phase, shape in (("update", f"{r['batch']} × {r['prompt_tokens'] + r['new_tokens']}, forward+backward"),
                             ("generate", f"{r['batch']} × {r['new_tokens']} new")):
            fp, bf = r[f"{phase}_fp32_cpu_s"], r[f"{phase}_bf16_cpu_s"]
            out.append(f"| {label} | {r['model']} ({r['params'] / 1e6:.1f} M) | {phase} ({shape}) | {fp:.2f} | {bf:.2f} | "
                       f"{bf / fp:.2f} × |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="demo,smollm2")
    parser.add_argument("--isas", default="native,avx2")
    parser.add_argument("--out", default="benchmarks/results/precision.json")
    parser.add_argument("--micro", action="store_true",
                        help="only the CPU-time micro-benchmark (forward+backward, generation), per model and ISA")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "BF16"), help=argparse.SUPPRESS)
    parser.add_argument("--micro-one", metavar="MODEL", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(run_one(opts.one[0], opts.one[1] == "1", opts.threads)))
        return
    if opts.micro_one:
        print(json.dumps(micro_one(opts.micro_one, opts.threads, opts.reps)))
        return
    if opts.micro:
        rows = []
        for isa in opts.isas.split(","):
            for model in opts.models.split(","):
                env = {**os.environ, **ISAS[isa], "OMP_NUM_THREADS": str(opts.threads)}
                done = subprocess.run([sys.executable, __file__, "--threads", str(opts.threads), "--reps",
                                       str(opts.reps), "--micro-one", model], env=env, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"micro {model} under {isa} failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(micro_table(rows[-1:]).splitlines()[-2:], flush=True)
        Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.out).write_text(json.dumps(rows, indent=1))
        print(micro_table(rows))
        print(f"wrote {opts.out}")
        return
    rows = []
    for rnd in range(opts.rounds):
        for isa in opts.isas.split(","):
            for model in opts.models.split(","):
                for bf16 in (False, True):
                    env = {**os.environ, **ISAS[isa], "OMP_NUM_THREADS": str(opts.threads)}
                    done = subprocess.run([sys.executable, __file__, "--threads", str(opts.threads), "--one", model,
                                           "1" if bf16 else "0"], env=env, capture_output=True, text=True)
                    if done.returncode:
                        sys.exit(f"{model} bf16={bf16} under {isa} failed:\n{done.stderr[-3000:]}")
                    row = {**json.loads(done.stdout.strip().splitlines()[-1]), "isa": isa, "round": rnd,
                           "loadavg": os.getloadavg()[0]}
                    rows.append(row)
                    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
                    Path(opts.out).write_text(json.dumps(rows, indent=1))  # kept if the benchmark is stopped
                    print(f"round {rnd} {isa:6} {model:7} {'bf16' if bf16 else 'fp32'}: generate "
                          f"{row['generate_s']:.2f} s, update {row['update_s']:.2f} s, evaluation "
                          f"{row['evaluation_s']:.2f} s", flush=True)
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    print(f"wrote {opts.out}")


def table(rows: list[dict]) -> str:
    """The markdown table of docs/BENCHMARKS.md: medians over rounds; bf16/fp32 ratios within each round."""
    out = ["| CPU features | model | phase | fp32 (s) | bf16 autocast (s) | bf16 / fp32 [min, max over rounds] |",
           "|---|---|---|---:|---:|---|"]
    keys = sorted({(r["isa"], r["model"]) for r in rows}, key=lambda k: (k[0] != "native", k[1]))
    for isa, model in keys:
        mine = [r for r in rows if r["isa"] == isa and r["model"] == model]
        cpu = mine[0]["cpu"]
        label = f"{cpu['torch_capability']}, bf16 hardware {'on' if cpu['native_bf16'] else 'off'}"
        for phase in ("generate", "update", "evaluation"):
            fp = {r["round"]: r[f"{phase}_s"] for r in mine if not r["bf16"]}
            bf = {r["round"]: r[f"{phase}_s"] for r in mine if r["bf16"]}
            ratios = [bf[k] / fp[k] for k in fp if k in bf]
            out.append(f"| {label} | {model} | {phase} | {statistics.median(fp.values()):.2f} | "
                       f"{statistics.median(bf.values()):.2f} | {statistics.median(ratios):.2f} × "
                       f"[{min(ratios):.2f}, {max(ratios):.2f}] |")
    out.append("")
    out.append("| CPU features | model | parameters | update tokens | fp32 update (s) | 6·N·tokens at the fp32 GEMM rate "
               "(s) | share of that bound |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for isa, model in keys:
        mine = [r for r in rows if r["isa"] == isa and r["model"] == model and not r["bf16"]]
        update = statistics.median(r["update_s"] for r in mine)
        gflops = statistics.median(r["gemm_gflops"] for r in mine)
        bound = 6 * mine[0]["params"] * mine[0]["update_tokens"] / (gflops * 1e9)
        cpu = mine[0]["cpu"]
        out.append(f"| {cpu['torch_capability']} | {model} | {mine[0]['params']:,} | {mine[0]['update_tokens']:.0f} | "
                   f"{update:.2f} | {bound:.3f} ({gflops:.0f} GFLOP/s) | {bound / update:.1%} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()

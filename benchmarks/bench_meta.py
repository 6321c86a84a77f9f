"""Cost per token of the three meta-policy aggregations (parameter / logit / hidden), docs/meta_policy.md.

Setup: the shipped warm-start model (tiny Qwen3, hidden 128, 4 layers) with K LoRA experts (rank 8, all linear
layers); an experts run directory if given (``--experts``), else K random adapters. Greedy decoding of B test
prompts of the synthetic task, ``max_new_tokens`` tokens. For each aggregation and mixture: wall time per decoding
step (one token for every row), KV-cache bytes per row at the end, and extra parameters (the merged adapter for
parameter merging). Rounds are interleaved (aggregations round-robin) and the median is reported.

    python benchmarks/bench_meta.py [--experts RUN] [--k 3] [--rounds 3] [--batch 16] [--device cpu|cuda] [--clock cpu]

``--clock cpu`` times each generation by this process's CPU time (``time.process_time`` around ``generate``, so
tokenisation and decoding of the batch are included) instead of the aggregation's wall-clock ``seconds``: other
jobs on a shared machine then do not inflate it (CPU only; with ``--threads`` > 1 it adds the threads' times).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def random_expert_set(k: int, device: str):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moalign.meta.experts import ExpertSet
    from moalign.warmstart import warm_start

    d = warm_start(progress=False)
    base, tok = AutoModelForCausalLM.from_pretrained(d).to(device), AutoTokenizer.from_pretrained(d)
    names = (["accuracy", "conciseness", "clarity"] + [f"extra{i}" for i in range(1, max(k - 2, 1))])[:k]
    model = None
    for i, n in enumerate(names):
        torch.manual_seed(i)
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False,
                         task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg, adapter_name=n) if model is None else (model.add_adapter(n, cfg) or model)
    with torch.no_grad():
        for pn, p in model.named_parameters():
            if "lora_B" in pn:
                p.mul_(0.05)
    return ExpertSet(model=model, tokenizer=tok, names=names, objectives=names)


def adapter_bytes(model, name: str) -> int:
    return sum(p.numel() * p.element_size() for n, p in model.named_parameters() if f".{name}." in n)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", default=None)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall: the aggregation's own wall-clock time; cpu: this process's CPU time per generation")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.device != "cpu":
        ap.error("--clock cpu measures CPU time: use it with --device cpu")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    from moalign.data.synthetic import load_synthetic
    from moalign.meta.aggregate import build
    from moalign.meta.experts import load_experts

    ex = load_experts(args.experts, device=args.device) if args.experts else random_expert_set(args.k, args.device)
    k = ex.num_experts
    prompts = [r["prompt"] for r in load_synthetic(seed=0, n_train=1, n_val=1, n_test=args.batch)["test"]]
    mixtures = {"uniform": [1.0 / k] * k, "one-hot": [1.0] + [0.0] * (k - 1)}
    aggs = {name: build(name, ex) for name in ("parameter", "logit", "hidden")}
    # warm-up (and the one-off merge of the parameter aggregation, timed separately)
    t = clock()
    aggs["parameter"].merged_adapter(ex.names, np.asarray(mixtures["uniform"]))
    merge_s = clock() - t
    for a in aggs.values():
        a.generate(prompts[:2], mixtures["uniform"], max_new_tokens=4)
    times: dict[tuple[str, str], list[float]] = {}
    info: dict[tuple[str, str], dict] = {}
    for _ in range(args.rounds):
        for mname, m in mixtures.items():
            for name, a in aggs.items():
                cpu_started = time.process_time()
                g = a.generate(prompts, m, max_new_tokens=args.max_new_tokens)
                seconds = time.process_time() - cpu_started if args.clock == "cpu" else g.seconds
                steps = max(len(t) for t in g.token_ids)
                times.setdefault((name, mname), []).append(1000 * seconds / steps)
                info[(name, mname)] = {"kv_bytes_per_row": g.kv_cache_bytes // len(prompts), "steps": steps,
                                       "mean_tokens": g.num_tokens / len(prompts)}
    merged = aggs["parameter"].merged_adapter(ex.names, np.asarray(mixtures["uniform"]))
    rows = []
    for (name, mname), ts in times.items():
        rows.append({"aggregation": name, "mixture": mname, "ms_per_step_median": round(statistics.median(ts), 2),
                     "ms_per_step_min": round(min(ts), 2), **info[(name, mname)],
                     "extra_param_bytes": adapter_bytes(ex.model, merged) if name == "parameter" and mname == "uniform"
                     else 0})
    from moalign.precision import cpu_info

    result = {"device": args.device, "cpu": cpu_info(), "threads": args.threads, "clock": args.clock,
              "batch": args.batch, "experts": k, "max_new_tokens": args.max_new_tokens, "rounds": args.rounds,
              "merge_seconds": round(merge_s, 3),
              "expert_adapter_bytes": adapter_bytes(ex.model, ex.names[0]), "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

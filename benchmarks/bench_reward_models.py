"""Cost of reward-model objectives (issue 28, item 8): one K-head model vs K scalar models, and offload.

For one scored batch (one RL step's completions) it measures the model forwards and the wall time of scoring every
objective, the way the trainer scores them (each objective called in turn on the same batch), median of
``--repeats`` runs after one warm-up:

* ``K-head``: one sequence classifier with ``num_labels = K`` read as K objectives (``heads: [...]``);
* ``K scalar``: K classifiers of the same size with ``num_labels = 1``, one objective each;
* ``offload``: the K-head model kept on CPU between scoring calls (``offload: true``) vs resident on the device.

Models are random-init Qwen3 sequence classifiers built from a config (no download), the prompts and completions
synthetic-task text of the RL runs' length.

    python benchmarks/bench_reward_models.py [--device cpu|cuda] [--hidden 256] [--layers 4] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _save_model(path: Path, num_labels: int, hidden: int, layers: int, seed: int) -> str:
    from transformers import Qwen3ForSequenceClassification

    from moalign.tiny import char_tokenizer, tiny_config

    tok = char_tokenizer()
    torch.manual_seed(seed)
    heads = max(hidden // 64, 1)
    config = tiny_config(len(tok), num_labels=num_labels, hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         pad_token_id=tok.pad_token_id)
    Qwen3ForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _batch(n: int) -> tuple[list, list]:
    from moalign.data.synthetic import load_synthetic

    test = load_synthetic(seed=0, variant="async")["test"]
    prompts = [test[i % len(test)]["prompt"] for i in range(n)]
    completions = [[{"role": "assistant", "content": test[i % len(test)]["solution"] + "\nHope this helps!"}]
                   for i in range(n)]
    return prompts, completions


def _time_scoring(objectives, prompts, completions, repeats: int, device: str) -> tuple[float, int]:
    """Median seconds to score the batch with every objective, and model forwards per scoring."""
    models = {id(o.reward_model): o.reward_model for o in objectives}.values()
    times, forwards = [], []
    for r in range(repeats + 1):
        for m in models:
            m._cache = None  # a new batch each time
        before = sum(m.forward_count for m in models)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for o in objectives:
            o(completions, prompts=prompts)
        if device == "cuda":
            torch.cuda.synchronize()
        if r:  # the first run warms up
            times.append(time.perf_counter() - start)
            forwards.append(sum(m.forward_count for m in models) - before)
    return statistics.median(times), int(statistics.median(forwards))


def run(args) -> dict:
    from moalign.objectives import build_objectives, prepare_reward_models

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    prompts, completions = _batch(args.batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k in (3, 8):
            multi = _save_model(tmp / f"multi{k}", k, args.hidden, args.layers, seed=k)
            scalars = [_save_model(tmp / f"scalar{k}_{i}", 1, args.hidden, args.layers, seed=100 + i) for i in range(k)]
            settings = {
                "K-head model": [{"model": multi, "heads": [f"h{i}" for i in range(k)]}],
                "K scalar models": [{"name": f"s{i}", "model": p} for i, p in enumerate(scalars)],
                "K-head model, offload": [{"model": multi, "heads": [f"h{i}" for i in range(k)], "offload": True}],
            }
            for label, entries in settings.items():
                objectives = build_objectives(entries)
                prepare_reward_models(objectives, args.device, dtype)
                seconds, forwards = _time_scoring(objectives, prompts, completions, args.repeats, args.device)
                params = sum(p.numel() for m in {id(o.reward_model): o.reward_model for o in objectives}.values()
                             for p in m.model.parameters())
                rows.append({"K": k, "setting": label, "forwards": forwards, "seconds": round(seconds, 4),
                             "parameters": params})
                print(json.dumps(rows[-1]), flush=True)
                del objectives
    return {"device": args.device, "dtype": str(dtype), "hidden": args.hidden, "layers": args.layers,
            "batch": args.batch, "repeats": args.repeats, "threads": torch.get_num_threads(), "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"| K | setting | forwards / step | scoring s / step (median of {result['repeats']}) | parameters |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['K']} | {r['setting']} | {r['forwards']} | {r['seconds']:.3f} | {r['parameters']:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64, help="completions per RL step (4 prompts x 8 rollouts x 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args)
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

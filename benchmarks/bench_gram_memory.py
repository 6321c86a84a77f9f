"""Peak host memory of one GramProbe pass vs K × (probed parameters), on a mid-size random Qwen3 (CPU).

Each measurement runs in a fresh process: one forward pass, then either one GramProbe pass (K objectives) or, for
reference, one plain ``backward()`` of a single loss (what the update itself costs); reported is the growth of the
process's peak RSS over the forward, next to the ``K × probed × 4 bytes`` a per-objective gradient buffer would need.

    python benchmarks/bench_gram_memory.py --k 3 6 8 [--json rows.json]

The last column is the probe's largest ``(K, numel)`` block (``GramProbe.peak_block_bytes``), what grows with K.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _measure(k: int, hidden: int, layers: int, batch: int, length: int, mode: str) -> dict:
    import torch

    from moalign.rl.gram import GramProbe, select_parameters
    from moalign.tiny import tiny_model_and_tokenizer

    torch.manual_seed(0)
    model, _ = tiny_model_and_tokenizer(seed=0, hidden_size=hidden, num_hidden_layers=layers,
                                        intermediate_size=4 * hidden, num_attention_heads=8, num_key_value_heads=2,
                                        head_dim=hidden // 8)
    selected = select_parameters(model)
    probed = sum(p.numel() for _, p in selected)
    ids = torch.randint(10, 60, (batch, 16 + length))
    adv = torch.randn(batch, k)

    def logps_of(m):
        logits = m(input_ids=ids).logits[:, 15:-1].float()
        return torch.log_softmax(logits, -1).gather(-1, ids[:, 16:].unsqueeze(-1)).squeeze(-1)

    def loss_fn(lp, a):
        return -(torch.exp(lp - lp.detach()) * a.unsqueeze(1)).mean()

    probe = GramProbe(model, selected, k)
    probe.reset(1)
    with probe.capture():
        lp = logps_of(model)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "probe":
        probe.accumulate(lp, loss_fn, adv)
        probe.finish()
    else:
        loss_fn(lp, adv[:, 0]).backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "k": k, "probed_params": probed, "k_x_probed_MiB": k * probed * 4 / 2**20,
            "peak_growth_MiB": (after - before) / 1024, "largest_block_MiB": probe.peak_block_bytes / 2**20}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[3, 6])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=9)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="probe", choices=["probe", "backward"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.k[0], args.hidden, args.layers, args.batch, args.length, args.mode)))
        return
    print("| pass | K | probed params | K × probed × 4 B (MiB) | peak RSS growth over the forward (MiB) "
          "| largest (K, numel) block (MiB) |")
    print("|---|---|---:|---:|---:|---:|")
    rows = []
    for mode, k in [("backward", 1)] + [("probe", k) for k in args.k]:
        cmd = [sys.executable, __file__, "--child", "--mode", mode, "--k", str(k), "--hidden", str(args.hidden),
               "--layers", str(args.layers), "--batch", str(args.batch), "--length", str(args.length)]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        label = "plain backward (the update)" if mode == "backward" else "GramProbe"
        block = "—" if mode == "backward" else f"{r['largest_block_MiB']:.0f}"
        print(f"| {label} | {r['k']} | {r['probed_params']:,} | {r['k_x_probed_MiB']:.0f} | "
              f"{r['peak_growth_MiB']:.0f} | {block} |")
        rows.append(r)
    if args.json:
        from moalign.precision import cpu_info

        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if k not in ("child", "mode")}, "cpu": cpu_info(),
                       "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()

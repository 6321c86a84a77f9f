"""Two CPU processes (gloo): the GramProbe's Gram equals the Gram of brute-force *global* gradients under DDP / FSDP2.

Run by tests/test_gram.py as ``python tests/_gram_dist.py ddp,fsdp2 OUT.json``; each rank holds a different local
batch, so the global gradient is the mean over ranks of the per-rank gradients.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

K = 3


def _loss_fn(mask, num_items, old):
    """A DAPO-style clipped surrogate (global token normaliser, two-sided clip): two directions d+ ≠ -d-."""

    def loss_fn(logps, adv):
        ratio = torch.exp(logps - old)
        a = adv.unsqueeze(1)
        per_tok = -torch.min(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a)
        return (per_tok * mask).sum() / num_items

    return loss_fn


def _logps(model, ids, n_prompt):
    logits = model(input_ids=ids).logits[:, n_prompt - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, n_prompt:].unsqueeze(-1)).squeeze(-1)


def _worker(rank, world, port, modes, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    results = {mode: _run(rank, world, mode) for mode in modes}
    if rank == 0:
        with open(out, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()


def _run(rank, world, mode):
    from moalign.rl.gram import GramProbe, select_parameters
    from moalign.tiny import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer(seed=0, num_hidden_layers=3)
    names = [n for n, _ in select_parameters(model)]
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model)
        inner = wrapped.module
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        wrapped = inner = model
    params = dict(inner.named_parameters())
    selected = [(n, params[n]) for n in names]  # resolved on the wrapped model (DTensors under FSDP2)

    g = torch.Generator().manual_seed(100 + rank)  # each rank: its own local batch
    n_prompt, b, t = 4, 4, 6
    ids = torch.randint(10, 60, (b, n_prompt + t), generator=g)
    mask = (torch.rand(b, t, generator=g) > 0.2).float()
    adv = torch.randn(b, K, generator=g)
    num_items = torch.tensor(float(mask.sum()))
    dist.all_reduce(num_items)
    num_items = num_items / world  # TRL: normaliser = global tokens / processes
    with torch.no_grad():
        old = _logps(wrapped, ids, n_prompt) + 0.2 * torch.randn(b, t, generator=g)
    loss_fn = _loss_fn(mask, num_items, old)

    def mean(x):
        dist.all_reduce(x)
        return x / world

    probe = GramProbe(inner, selected, K, all_reduce=mean)
    probe.reset(1)
    with probe.capture():
        logps = _logps(wrapped, ids, n_prompt)
    probe.accumulate(logps, loss_fn, adv)
    gram, losses = probe.finish()

    # Brute force: the update's own backward per objective, then the global (mean over ranks) gradient.
    rows, local_rows = [], []
    for k in range(K):
        wrapped.zero_grad(set_to_none=True)
        loss = loss_fn(_logps(wrapped, ids, n_prompt), adv[:, k])
        if mode == "ddp":
            local = torch.autograd.grad(loss, [p for _, p in selected], retain_graph=True)
            local_rows.append(torch.cat([x.reshape(-1) for x in local]).double())
            loss.backward()  # DDP averages .grad over ranks
            rows.append(torch.cat([p.grad.reshape(-1) for _, p in selected]).double())
        else:
            loss.backward()  # FSDP2 reduce-scatters the mean gradient into DTensor shards
            rows.append(torch.cat([p.grad.full_tensor().reshape(-1) for _, p in selected]).double())
    v = torch.stack(rows)
    result = {"gram": gram.tolist(), "brute": (v @ v.T).tolist(), "losses": losses.tolist()}
    if local_rows:
        lv = torch.stack(local_rows)
        per_rank = mean(lv @ lv.T)
        result["mean_of_rank_grams"] = per_rank.tolist()
    return result


def main():
    modes, out = sys.argv[1].split(","), sys.argv[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, modes, out), nprocs=2, join=True)


if __name__ == "__main__":
    main()

"""Two CPU processes (gloo) running MOGRPOTrainer under accelerate's DDP: the trainer's Gram is the Gram of the
brute-force global gradients of TRL's own loss (per objective), on the batches each rank actually trained on.

Run by tests/test_gram.py as ``python tests/_gram_dist_trainer.py OUT.json``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile

import torch
import torch.multiprocessing as mp


def _distinct(completions, **_):
    return [len(set(c[0]["content"] if isinstance(c, list) else c)) / 8 for c in completions]


def _alpha(completions, **_):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isalpha() for ch in t) / max(len(t), 1) for t in texts]


def _other(completions, **_):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(not ch.isalnum() for ch in t) / max(len(t), 1) for t in texts]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import logging
    import warnings

    import numpy as np
    import torch.distributed as dist
    from datasets import Dataset
    from trl import GRPOTrainer

    from moalign import weighting
    from moalign.objectives import as_objective, available_objectives, register_objective
    from moalign.tiny import tiny_model_and_tokenizer
    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    @weighting.register("_dist_gram_recorder")
    class _Recorder(weighting.WeightingStrategy):
        needs = frozenset({"gram"})
        grams: list = []

        def before_update(self, stats):
            type(self).grams.append(stats.gram.copy())

    model, tok = tiny_model_and_tokenizer(seed=0, num_hidden_layers=2)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = [{"prompt": [{"role": "user", "content": f"{i % 7 + 1}+{i % 5 + 2}=?"}]} for i in range(16)]
    objectives = []
    for f in (_distinct, _alpha, _other):
        name = "dist_" + f.__name__.strip("_")
        if name not in available_objectives():
            register_objective(name)(f)
        objectives.append(as_objective(f, name=name))
    with tempfile.TemporaryDirectory() as tmp:
        args = MOGRPOConfig(
            output_dir=tmp, objectives=[o.name for o in objectives], strategy="_dist_gram_recorder",
            advantage_estimator="rloo", per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
            max_steps=1, learning_rate=1e-2, report_to="none", use_cpu=True, seed=0, save_strategy="no",
            disable_tqdm=True, bf16=False, loss_type="dapo",
        )
        trainer = MOGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                                objectives=objectives)
        assert trainer.accelerator.num_processes == world
        seen = []
        original = trainer.compute_loss

        def compute_loss(model_, inputs, *a, **kw):
            seen.append({k: (v.clone() if torch.is_tensor(v) else v) for k, v in inputs.items()})
            return original(model_, inputs, *a, **kw)

        trainer.compute_loss = compute_loss
        trainer.train()
        gram = _Recorder.grams[0]

        # Brute force at the parameters the probe saw: per objective, TRL's loss on this rank's micro-batch,
        # autograd on the probed parameters, mean over ranks.
        inner = trainer.accelerator.unwrap_model(trainer.model)
        with torch.no_grad():
            for n, p in inner.named_parameters():
                p.copy_(initial[n])
        named = dict(inner.named_parameters())
        params = [named[n] for n in trainer._gram_probe.param_names]
        (inputs,) = seen
        v = []
        for k in range(3):
            loss = GRPOTrainer._compute_loss(trainer, inner, dict(inputs, advantages=inputs["mo_advantages"][:, k]))
            g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss, params)]).double()
            dist.all_reduce(g)
            v.append(g / world)
        v = torch.stack(v)
        adv = inputs["mo_advantages"]
        if rank == 0:
            with open(out, "w") as f:
                json.dump({"gram": np.asarray(gram).tolist(), "brute": (v @ v.T).tolist(),
                           "adv_std": adv.std(0).tolist()}, f)
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()


def main():
    out = sys.argv[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)


if __name__ == "__main__":
    main()

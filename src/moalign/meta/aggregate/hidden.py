"""Hidden-state aggregation: mix the experts' intermediate representations at chosen decoder layers.

arXiv 2509.21613 §4 ("aggregation at the hidden-state level"; the authors report it works best because the mixed
representation keeps contextual features that logit mixing discards). The K active experts run as one batch of K·B
rows (PEFT mixed-adapter batches); after each decoder layer ``l`` in ``layers`` a forward hook replaces every
expert's output ``h_l^k`` by the mixture ``h_l = Σ_k m_k h_l^k``, so the following layers of every expert start from
the same mixed state. The last decoder layer is always mixed, so all experts end with the same final hidden state and
the (shared, not adapted) final norm and LM head give one next-token distribution.

``layers="all"`` (default) mixes after every layer: the policy is the layer-wise mixture of the experts. Fewer layers
let the experts run separately between mixing points. Cost per token: as logit mixing (K batched forward passes and K
KV caches) plus one weighted sum of ``(K, B, T, H)`` per mixed layer.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .base import Aggregator, register
from .logit import expert_forward

__all__ = ["HiddenAggregator", "decoder_layers"]


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks of a (PEFT-wrapped) causal LM: the largest ``nn.ModuleList`` named ``layers``."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            if best is None or len(module) > len(best):
                best = module
    if best is None:
        raise ValueError(f"could not find the decoder layers of {type(model).__name__} (no ModuleList named layers)")
    return best


@register("hidden")
class HiddenAggregator(Aggregator):
    """Mix hidden states after the decoder layers ``layers`` (``"all"`` or indices; the last one is always added)."""

    def __init__(self, experts, layers="all"):
        super().__init__(experts)
        blocks = decoder_layers(self.model)
        n = len(blocks)
        if layers == "all" or layers is None:
            chosen = list(range(n))
        else:
            if isinstance(layers, str):
                layers = [int(x) for x in layers.split(",") if x.strip()]
            chosen = sorted({int(i) % n if -n <= int(i) < n else int(i) for i in layers})
            bad = [i for i in chosen if not 0 <= i < n]
            if bad:
                raise ValueError(f"layers {bad} out of range: the model has {n} decoder layers (0..{n - 1})")
            chosen = sorted(set(chosen) | {n - 1})
        self.layers = chosen
        self._blocks = blocks
        for name, cfg in self.model.peft_config.items():
            targets = cfg.target_modules if isinstance(cfg.target_modules, (set, list, tuple)) else [cfg.target_modules]
            if any("lm_head" in str(t) for t in targets or []):
                raise ValueError(f"adapter {name!r} adapts lm_head; hidden-state mixing needs a shared LM head "
                                 "(use the logit aggregation for such experts)")

    def __repr__(self) -> str:
        return f"HiddenAggregator(layers={self.layers}, experts={self.experts.names})"

    @contextmanager
    def _mixing(self, names, weights, batch):
        """Forward hooks that mix the K experts' outputs of the chosen layers (none for a single expert)."""
        k = len(names)
        w = torch.as_tensor(np.asarray(weights), dtype=torch.float32)

        def mix(module, args, output):
            h = output[0] if isinstance(output, tuple) else output  # (K·B, T, H)
            hk = h.view(k, batch, *h.shape[1:])
            mixed = (w.to(h.device, h.dtype).view(k, 1, 1, 1) * hk).sum(0)  # Σ_k m_k h^k
            new = mixed.unsqueeze(0).expand_as(hk).reshape(h.shape)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        hooks = [] if k == 1 else [self._blocks[i].register_forward_hook(mix) for i in self.layers]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    def _step_fn(self, names, weights, batch):
        model, k = self.model, len(names)

        def step(ids, mask, pos, cache):
            with self._mixing(names, weights, batch):
                out = expert_forward(model, names, ids, mask, pos, cache)
            logits = out.logits[:, -1].float().view(k, batch, -1)[0]  # every row holds the same mixed final state
            return torch.log_softmax(logits, dim=-1), out.past_key_values

        return step

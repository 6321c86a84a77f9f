"""Logit-level aggregation: mix the experts' next-token distributions at every decoding step.

arXiv 2509.21613 §4 ("aggregation at the logit level"): the experts decode in lock-step on the same prefix and the
next token is drawn from a mixture of their distributions. With mixture ``m`` over the active experts ``k`` and
``p_k(· | x, y_<t)`` each expert's next-token distribution:

* ``space="prob"`` (default): ``p(·) = Σ_k m_k p_k(·)``, the mixture of policies, computed in log space as
  ``logsumexp_k(log m_k + log p_k)``;
* ``space="logprob"``: ``p(·) ∝ exp(Σ_k m_k log p_k(·))``, the weighted geometric mean (product of experts), the
  form of multi-objective decoding (MOD; Shi et al., arXiv 2406.18853, Eq. 7 with f = KL).

The K active experts run as one batch of K·B rows through the shared base with PEFT's mixed-adapter batches
(``adapter_names=``), each row keeping its own KV cache; cost per token ≈ K forward passes of the base (batched)
and K KV caches.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .base import Aggregator, register

__all__ = ["LogitAggregator", "mix_logprobs"]


def mix_logprobs(logprobs: torch.Tensor, weights, space: str = "prob") -> torch.Tensor:
    """``(K, B, V)`` per-expert log-probabilities -> ``(B, V)`` log-probabilities of the mixture.

    >>> lp = torch.log(torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]]))
    >>> mix_logprobs(lp, [0.5, 0.5]).exp().round(decimals=4).tolist()
    [[0.7, 0.3]]
    """
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=logprobs.dtype, device=logprobs.device)
    if space == "prob":
        return torch.logsumexp(logprobs + torch.log(w)[:, None, None], dim=0)
    if space == "logprob":
        return torch.log_softmax((w[:, None, None] * logprobs).sum(0), dim=-1)
    raise ValueError(f"space must be 'prob' or 'logprob', but got {space!r}")


@contextmanager
def active_adapter(model, name: str):
    """Run the PEFT model with one adapter, restoring the previously active one afterwards."""
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)


def expert_forward(model, names: list[str], ids, mask, pos, cache):
    """One forward pass of the K experts on the same rows, batched as K·B rows (PEFT mixed-adapter batch)."""
    k = len(names)
    if k == 1:  # the plain adapter path: bit-identical to `generate` with that adapter
        with active_adapter(model, names[0]):
            return model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
    rows = [n for n in names for _ in range(ids.shape[0])]
    return model(input_ids=ids.repeat(k, 1), attention_mask=mask.repeat(k, 1), position_ids=pos.repeat(k, 1),
                 past_key_values=cache, use_cache=True, adapter_names=rows)


@register("logit")
class LogitAggregator(Aggregator):
    """Mix next-token distributions (``space`` ``prob`` or ``logprob``); see the module docstring."""

    def __init__(self, experts, space: str = "prob"):
        super().__init__(experts)
        if space not in ("prob", "logprob"):
            raise ValueError(f"space must be 'prob' (mixture of policies) or 'logprob' (product), got {space!r}")
        self.space = space

    def __repr__(self) -> str:
        return f"LogitAggregator(space={self.space!r}, experts={self.experts.names})"

    def _step_fn(self, names, weights, batch):
        model = self.model

        def step(ids, mask, pos, cache):
            out = expert_forward(model, names, ids, mask, pos, cache)
            logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).view(len(names), batch, -1)
            if len(names) == 1:
                return logp[0], out.past_key_values
            return mix_logprobs(logp, weights, self.space), out.past_key_values

        return step

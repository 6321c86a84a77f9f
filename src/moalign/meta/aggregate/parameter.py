"""Parameter-level aggregation: merge the experts' LoRA adapters into one with PEFT, then decode once.

arXiv 2509.21613 §4 ("aggregation at the parameter level", weight interpolation as in rewarded soups, Ramé et al.,
arXiv 2306.04488). The merge is PEFT's ``LoraModel.add_weighted_adapter`` with ``combination_type="cat"`` (default):
the merged adapter concatenates the experts' factors, so its update is exactly

    ΔW = Σ_k m_k · s_k · B_k A_k        (s_k = lora_alpha_k / r_k, the expert's LoRA scaling)

(rank Σ r_k, scaling 1). ``"linear"`` (weighted A and B separately; approximate) and ``"svd"`` (rank-truncated exact
sum) are PEFT's other options. The merged adapter is cached per mixture (``cache_size`` mixtures; older ones are
deleted), so a preference costs one merge and then plain decoding: per-token cost = one forward pass of the base
plus one LoRA of rank Σ r_k, one KV cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from .base import Aggregator, cache_bytes, register
from .logit import active_adapter

__all__ = ["ParameterAggregator"]

COMBINATIONS = ("cat", "linear", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")


@register("parameter")
class ParameterAggregator(Aggregator):
    """Merge adapters with ``add_weighted_adapter(combination_type)``; see the module docstring."""

    def __init__(self, experts, combination_type: str = "cat", cache_size: int = 8, **merge_kwargs):
        super().__init__(experts)
        if combination_type not in COMBINATIONS:
            raise ValueError(f"combination_type must be one of {', '.join(COMBINATIONS)}, got {combination_type!r}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, but got {cache_size}")
        self.combination_type, self.cache_size, self.merge_kwargs = combination_type, cache_size, merge_kwargs
        self._merged: OrderedDict[str, str] = OrderedDict()

    def __repr__(self) -> str:
        return f"ParameterAggregator(combination_type={self.combination_type!r}, experts={self.experts.names})"

    def merged_adapter(self, names: list[str], weights) -> str:
        """Name of the merged adapter for ``names`` and ``weights`` (built with PEFT on first use, then cached)."""
        if len(names) == 1:
            return names[0]
        key = repr((names, [round(float(w), 12) for w in weights], self.combination_type))
        if key in self._merged:
            self._merged.move_to_end(key)
            return self._merged[key]
        adapter = "merged-" + hashlib.sha1(key.encode()).hexdigest()[:12]
        self.model.add_weighted_adapter(names, [float(w) for w in weights], adapter,
                                        combination_type=self.combination_type, **self.merge_kwargs)
        self._merged[key] = adapter
        while len(self._merged) > self.cache_size:
            _, old = self._merged.popitem(last=False)
            self.model.delete_adapter(old)
        return adapter

    def _step_fn(self, names, weights, batch):
        import torch

        adapter = self.merged_adapter(names, np.asarray(weights))

        def step(ids, mask, pos, cache):
            with active_adapter(self.model, adapter):
                out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                                 use_cache=True)
            return torch.log_softmax(out.logits[:, -1].float(), dim=-1), out.past_key_values

        return step

    def _generate(self, input_ids, attention_mask, names, weights, *, max_new_tokens, do_sample, temperature,
                  generator, eos_ids, pad_id):
        import torch

        adapter = self.merged_adapter(names, np.asarray(weights))
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if do_sample else \
            {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if generator is not None:  # generate() has no generator argument: seed the global RNG for this call
            torch.manual_seed(int(generator.initial_seed()))
        with active_adapter(self.model, adapter):
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                      pad_token_id=pad_id, eos_token_id=sorted(eos_ids), return_dict_in_generate=True,
                                      **sampling)
        new_ids = out.sequences[:, input_ids.shape[1]:]
        return new_ids, cache_bytes(out.past_key_values), {"active_experts": len(names), "adapter": adapter}

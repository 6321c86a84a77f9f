"""The aggregation interface: ``Aggregator.generate(prompts, mixture) -> Generation``, and the shared decode loop.

An aggregator turns K experts (LoRA adapters of one base, :class:`moalign.meta.experts.ExpertSet`) and a mixture
``m`` on the simplex into one policy. Subclasses implement one of the three levels of arXiv 2509.21613 §4:
parameters (:mod:`.parameter`), logits (:mod:`.logit`), hidden states (:mod:`.hidden`).

Shared rules:

* experts with weight 0 are dropped before anything runs, so the cost is paid per *active* expert and a one-hot
  mixture runs exactly the single expert;
* decoding is greedy by default (``do_sample=True`` samples from the mixed distribution at ``temperature``);
* prompts are strings or chat messages (rendered with the tokenizer's chat template, generation prompt added),
  left-padded, and decoding stops at the tokenizer's EOS.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["Aggregator", "Generation", "available", "build", "check_mixture", "decode", "register"]

_REGISTRY: dict[str, type[Aggregator]] = {}


def register(name: str):
    def wrap(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, experts, **params: Any) -> Aggregator:
    """Aggregator by registry name (``parameter``, ``logit``, ``hidden``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown aggregation {name!r}; choose from {', '.join(available())}")
    return _REGISTRY[name](experts, **params)


def check_mixture(mixture, n: int, name: str = "mixture") -> np.ndarray:
    """``(n,)`` float64 copy of a mixture on the simplex; raises ValueError naming the problem and the fix.

    >>> check_mixture([0.6, 0.2, 0.2], 3).tolist()
    [0.6, 0.2, 0.2]
    """
    if isinstance(mixture, str):
        try:
            mixture = [float(x) for x in mixture.split(",") if x.strip()]
        except ValueError as exc:
            raise ValueError(f"{name} {mixture!r} must be comma-separated numbers, e.g. 0.6,0.2,0.2") from exc
    m = np.array(mixture, dtype=np.float64).reshape(-1)
    if m.shape[0] != n:
        raise ValueError(f"{name} has {m.shape[0]} entries but there are {n}; give one weight per entry, in order")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError(f"{name} {m.tolist()} must be finite and non-negative")
    total = m.sum()
    if total <= 0:
        raise ValueError(f"{name} {m.tolist()} sums to 0; give at least one positive weight")
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} {m.tolist()} sums to {total:g}, not 1; normalise it (divide by the sum)")
    return m


@dataclass
class Generation:
    """Output of :meth:`Aggregator.generate`."""

    texts: list[str]
    token_ids: list[list[int]]  # generated ids up to and including EOS
    mixture: list[float]
    aggregation: str
    seconds: float
    kv_cache_bytes: int = 0  # size of the key/value cache at the end of decoding (all active experts)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)


def cache_bytes(cache) -> int:
    """Bytes held by a transformers cache object (sum over its key/value tensors)."""
    if cache is None:
        return 0
    total = 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total
    for pair in cache:
        for t in pair:
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]


@torch.no_grad()
def decode(
    step: StepFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, Any]:
    """Token-by-token decoding with a KV cache, for aggregators that mix inside the forward pass.

    ``step(ids, attention_mask, position_ids, cache) -> (logprobs (B, V), cache)`` returns the *mixed* next-token
    log-probabilities for the new ``ids`` (the whole prompt first, then one token per call). Position ids follow
    ``transformers``' left-padding rule (cumulative sum of the mask), so a single expert reproduces
    ``model.generate`` token for token under greedy decoding. Returns ``(new ids (B, T'), cache)``; finished rows
    are padded with ``pad_id``.
    """
    batch = input_ids.shape[0]
    mask = attention_mask.clone()
    position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    ids, cache = input_ids, None
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    out: list[torch.Tensor] = []
    eos = torch.tensor(sorted(eos_ids), device=input_ids.device)
    for _ in range(max_new_tokens):
        logprobs, cache = step(ids, mask, position_ids, cache)
        if do_sample:
            probs = torch.softmax(logprobs.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            nxt = logprobs.argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        out.append(nxt)
        finished |= torch.isin(nxt, eos)
        if bool(finished.all()):
            break
        ids = nxt[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        position_ids = position_ids[:, -1:] + 1
    return torch.stack(out, dim=1) if out else input_ids[:, :0], cache


class Aggregator(ABC):
    """Combine the experts of an :class:`~moalign.meta.experts.ExpertSet` under a mixture; one ``generate`` call.

    Subclasses implement :meth:`_generate` for the active experts (weight > 0) and their renormalised weights.
    """

    name: ClassVar[str] = "base"

    def __init__(self, experts):
        self.experts = experts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.experts.names)} experts: {', '.join(self.experts.names)})"

    @property
    def model(self):
        return self.experts.model

    @property
    def tokenizer(self):
        return self.experts.tokenizer

    def render(self, prompts: Sequence[Any]) -> list[str]:
        out = []
        for p in prompts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict) and "prompt" in p:
                out.extend(self.render([p["prompt"]]))
            else:
                out.append(self.tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True))
        return out

    def generate(
        self,
        prompts: Sequence[Any],
        mixture,
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> Generation:
        """Generate one completion per prompt from the experts mixed by ``mixture`` (one weight per expert)."""
        if not prompts:
            raise ValueError("prompts is empty; give at least one prompt")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, but got {max_new_tokens}")
        if do_sample and not temperature > 0:
            raise ValueError(f"temperature must be positive when sampling, but got {temperature}")
        m = check_mixture(mixture, len(self.experts.names))
        names, weights = self._active(m)
        enc = self._encode(prompts)
        device = enc["input_ids"].device
        tok = self.tokenizer
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        eos_ids = {tok.eos_token_id} | set(np.atleast_1d(getattr(self.model.generation_config, "eos_token_id", None)
                                                         or []).tolist())
        started = time.perf_counter()
        new_ids, kv_bytes, extra = self._generate(
            enc["input_ids"], enc["attention_mask"], names, weights, max_new_tokens=max_new_tokens,
            do_sample=do_sample, temperature=temperature, generator=generator, eos_ids=eos_ids,
            pad_id=tok.pad_token_id,
        )
        seconds = time.perf_counter() - started
        token_ids, texts = [], []
        for seq in new_ids.tolist():
            cut = next((i + 1 for i, t in enumerate(seq) if t in eos_ids), len(seq))
            token_ids.append(seq[:cut])
            texts.append(tok.decode(seq[:cut], skip_special_tokens=True))
        return Generation(texts=texts, token_ids=token_ids, mixture=m.tolist(), aggregation=self.name,
                          seconds=seconds, kv_cache_bytes=kv_bytes, extra=extra)

    def _active(self, mixture) -> tuple[list[str], np.ndarray]:
        m = check_mixture(mixture, len(self.experts.names))
        active = [int(i) for i in np.flatnonzero(m > 0)]
        return [self.experts.names[i] for i in active], m[active] / m[active].sum()

    @torch.no_grad()
    def next_token_logprobs(self, prompts: Sequence[Any], mixture) -> torch.Tensor:
        """``(B, V)`` log-probabilities of the mixed policy's first completion token for each prompt."""
        names, weights = self._active(mixture)
        enc = self._encode(prompts)
        mask = enc["attention_mask"]
        pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        logprobs, _ = self._step_fn(names, weights, enc["input_ids"].shape[0])(enc["input_ids"], mask, pos, None)
        return logprobs

    def _encode(self, prompts: Sequence[Any]):
        tok = self.tokenizer
        previous_side = tok.padding_side
        tok.padding_side = "left"
        try:
            device = next(self.model.parameters()).device
            return tok(self.render(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        finally:
            tok.padding_side = previous_side

    @abstractmethod
    def _step_fn(self, names: list[str], weights: np.ndarray, batch: int) -> StepFn:
        """The mixed policy's ``step`` for :func:`decode` (see there) over the active experts ``names``."""

    def _generate(self, input_ids, attention_mask, names: list[str], weights: np.ndarray, **kw) -> tuple:
        """``(new ids (B, T'), kv-cache bytes, extra dict)`` for the active experts ``names`` with ``weights``."""
        new_ids, cache = decode(self._step_fn(names, weights, input_ids.shape[0]), input_ids, attention_mask, **kw)
        rows = len(names) * input_ids.shape[0]
        return new_ids, cache_bytes(cache), {"active_experts": len(names), "forward_rows": rows}

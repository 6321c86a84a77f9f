"""Per-objective policy-gradient statistics: the K×K Gram matrix ``G_ij = <∇J_i, ∇J_j>`` over a parameter subset.

The gradient-level strategies (``gradient``, ``mgda``, ``nash_mtl``, ``gradnorm``) only need inner products between
the K per-objective gradients, so the probe never materialises or communicates full gradients across ranks:

* one forward pass produces the per-token log-probabilities; each objective's surrogate loss
  ``L_k = agg_i(-A_ik · ρ_it)`` (ρ = π/π_old, whose gradient at ρ = 1 is ∇log π) reuses that graph;
* ``torch.autograd.grad(L_k, subset)`` runs K partial backward passes that stop at the lowest parameter of the
  subset (the middle third of the decoder layers by default, as in arXiv 2509.11452 §5: Qwen3-8B layers 10–25), so
  their cost is a fraction of a full backward and grows with K only through that fraction;
* the K flattened subset gradients are accumulated over the micro-batches of one step (so ``G`` is the Gram of
  the step's gradients, not a sum of per-micro-batch Grams), then ``G = V Vᵀ`` is formed locally and only the K×K
  matrix is all-reduced (mean over ranks) by the trainer.

Under data parallelism each rank's subset gradient is the gradient of its own shard of the batch, so the
all-reduced ``G`` is the mean of per-rank Grams (cross-rank terms ``<g_r, g_s>`` are not formed). This is the
price of never gathering gradients; with one rank it is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = ["GramProbe", "select_parameters", "per_objective_losses", "decoder_layers"]


def decoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The model's stack of decoder layers (the longest ``ModuleList`` named ``layers``/``h``/``blocks``)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            if best is None or len(module) > len(best):
                best = module
    return best


def _parse_layers(spec: str | Sequence[int], n_layers: int) -> list[int]:
    if isinstance(spec, str):
        ids: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.extend(range(lo, hi + 1))
            elif part:
                ids.append(int(part))
    else:
        ids = [int(i) for i in spec]
    bad = [i for i in ids if not 0 <= i < n_layers]
    if bad or not ids:
        raise ValueError(
            f"gram_layers={spec!r} selects layer ids {bad or '(none)'} outside the model's {n_layers} decoder layers; "
            f"use ids in 0..{n_layers - 1}, e.g. '{n_layers // 3}-{2 * n_layers // 3 - 1}'"
        )
    return sorted(set(ids))


def select_parameters(
    model: nn.Module, layers: str | Sequence[int] | None = None, regex: str | None = None
) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters the Gram matrix is computed over.

    Priority: ``regex`` (matched with ``re.search`` against parameter names) > ``layers`` (decoder layer ids,
    ``"10-25"`` or a list) > default. Default: all trainable parameters when the model has frozen ones (PEFT/LoRA),
    else the middle third of the decoder layers.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters, so per-objective gradients cannot be computed")
    if regex is not None:
        pattern = re.compile(regex)
        chosen = [(n, p) for n, p in trainable if pattern.search(n)]
        if not chosen:
            raise ValueError(f"gram_param_regex={regex!r} matches no trainable parameter (e.g. {trainable[0][0]!r})")
        return chosen
    frozen = any(not p.requires_grad for p in model.parameters())
    if layers is None and frozen:
        return trainable
    stack = decoder_layers(model)
    if stack is None:
        if layers is not None:
            raise ValueError("gram_layers is set but the model has no decoder layer stack; use gram_param_regex")
        return trainable
    n = len(stack)
    ids = _parse_layers(layers, n) if layers is not None else list(range(n // 3, max(n // 3 + 1, 2 * n // 3)))
    wanted = {id(p) for i in ids for p in stack[i].parameters()}
    chosen = [(name, p) for name, p in trainable if id(p) in wanted]
    if not chosen:
        raise ValueError(f"decoder layers {ids} have no trainable parameters; set gram_param_regex instead")
    return chosen


def per_objective_losses(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """``(K,)`` surrogate losses ``L_k`` with objective k's advantages, aggregated like TRL's ``loss_type``.

    Shapes: ``per_token_logps``/``mask`` ``(B, T)``, ``advantages`` ``(B, K)``. The ratio is unclipped: the
    gradient method disables clipping to keep the objective linear in the weights (arXiv 2509.11452 §5).
    """
    old = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps
    ratio = torch.exp(per_token_logps - old)  # (B, T)
    mask = mask.to(ratio.dtype)
    per_token = -ratio.unsqueeze(-1) * advantages.to(ratio.dtype).unsqueeze(1)  # (B, T, K)
    masked = per_token * mask.unsqueeze(-1)
    if loss_type in ("grpo", "sapo", "luspo"):
        return (masked.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)).mean(0)
    if loss_type == "dr_grpo" and max_completion_length:
        return masked.sum((0, 1)) / (mask.shape[0] * max_completion_length)
    return masked.sum((0, 1)) / mask.sum().clamp(min=1.0)  # bnpo, dapo, cispo, vespo: token-level mean


class GramProbe:
    """Accumulates per-objective subset gradients over the micro-batches of one step and returns their Gram.

    Usage per step: ``probe.reset()``; for each micro-batch ``probe.accumulate(losses, scale)`` where ``losses`` is
    the ``(K,)`` tensor of surrogate losses still attached to the forward graph and ``scale`` the weight of that
    micro-batch in the step's gradient (``1/num_micro_batches``); then ``probe.gram()`` → local ``(K, K)`` float64.
    """

    def __init__(self, params: Iterable[nn.Parameter], num_objectives: int):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("GramProbe needs at least one trainable parameter")
        self.num_objectives = num_objectives
        self.numel = sum(p.numel() for p in self.params)
        self._buffer: torch.Tensor | None = None
        self._losses = torch.zeros(num_objectives, dtype=torch.float64)

    def reset(self) -> None:
        self._buffer = None
        self._losses.zero_()

    def accumulate(self, losses: torch.Tensor, scale: float = 1.0, retain_graph: bool = True) -> None:
        if losses.shape != (self.num_objectives,):
            raise ValueError(f"expected {self.num_objectives} per-objective losses, got shape {tuple(losses.shape)}")
        device = self.params[0].device
        if self._buffer is None:
            self._buffer = torch.zeros(self.num_objectives, self.numel, dtype=torch.float32, device=device)
        for k in range(self.num_objectives):
            if not losses[k].requires_grad:  # e.g. every advantage of objective k is zero on this micro-batch
                continue
            grads = torch.autograd.grad(losses[k], self.params, retain_graph=retain_graph, allow_unused=True)
            flat = torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, self.params)]
            )
            self._buffer[k].add_(flat, alpha=scale)
        self._losses += losses.detach().double().cpu() * scale

    def gram(self) -> torch.Tensor:
        """Local ``(K, K)`` Gram matrix (float64) of the accumulated gradients."""
        if self._buffer is None:
            return torch.zeros(self.num_objectives, self.num_objectives, dtype=torch.float64)
        v = self._buffer.double()
        return (v @ v.T).cpu()

    def losses(self) -> torch.Tensor:
        """``(K,)`` accumulated surrogate losses (float64)."""
        return self._losses.clone()

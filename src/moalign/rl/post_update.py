"""Post-update statistics that strategies ask for with ``"post_update"`` in ``needs`` (computed by the trainer after
the policy update, handed to :meth:`~moalign.rl.engine.StepEngine.finish`). Depends on torch only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["batch_clipped_advantage_weights", "clipped_advantage_weights"]


@torch.no_grad()
def clipped_advantage_weights(new_logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                              mask: torch.Tensor, epsilon_low: float, epsilon_high: float) -> torch.Tensor:
    """CTWA's per-completion weight ``(B,)``: the token mean of ``Â·ρ`` where the PPO clip is inactive (0 where it
    clips), with ``ρ = π_new/π_old`` after the update.

    Args:
        new_logps, old_logps: ``(B, T)`` per-token log-probabilities after and before the update.
        advantages: ``(B,)`` the completions' final advantages (TRL), or ``(B, T)`` token advantages (verl).
        mask: ``(B, T)`` completion mask (1 = token counts).
        epsilon_low, epsilon_high: the PPO clip range ``[1 − ε_low, 1 + ε_high]``.

    >>> w = clipped_advantage_weights(torch.log(torch.tensor([[1.5, 1.0]])), torch.zeros(1, 2), torch.tensor([1.0]),
    ...                               torch.ones(1, 2), 0.2, 0.2)
    >>> w.tolist()  # token 1 (ρ = 1.5 > 1.2 with Â > 0) is clipped: (0 + 1.0) / 2
    [0.5]
    """
    ratio = torch.exp(new_logps - old_logps)
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    clipped = ((ratio > 1 + epsilon_high) & (adv > 0)) | ((ratio < 1 - epsilon_low) & (adv < 0))
    mask = mask.to(ratio.dtype)
    contrib = adv * ratio * (~clipped).to(ratio.dtype) * mask
    return contrib.sum(1) / mask.sum(1).clamp(min=1.0)


@torch.no_grad()
def batch_clipped_advantage_weights(batch: dict[str, Any], old_logps: torch.Tensor, advantages: torch.Tensor,
                                    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor], micro_batch_size: int,
                                    epsilon_low: float, epsilon_high: float) -> torch.Tensor:
    """:func:`clipped_advantage_weights` over a batch ``(B,)``, one no-grad ``forward`` per micro-batch.

    Args:
        batch: ``prompt_ids``, ``prompt_mask``, ``completion_ids``, ``completion_mask`` (``(B, ·)`` each).
        old_logps: ``(B, T)`` pre-update per-token log-probabilities; advantages: ``(B,)``.
        forward: micro-batch (the four keys) -> ``(b, T)`` post-update per-token log-probabilities (the trainer's).
    """
    weights = []
    for start in range(0, batch["prompt_ids"].shape[0], micro_batch_size):
        sl = slice(start, start + micro_batch_size)
        chunk = {key: batch[key][sl] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
        weights.append(clipped_advantage_weights(forward(chunk), old_logps[sl], advantages[sl],
                                                 chunk["completion_mask"], epsilon_low, epsilon_high))
    return torch.cat(weights)

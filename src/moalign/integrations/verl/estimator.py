"""The advantage estimator ``moalign`` (``algorithm.adv_estimator=moalign``), registered with verl's
``core_algos.register_adv_est``.

verl calls it from ``compute_advantage`` with ``token_level_rewards``, ``response_mask``, ``index`` (the ``uid`` of
each row's prompt) and ``config`` (the ``algorithm`` block). The per-objective rewards do not come through those
arguments: verl hands ``non_tensor_batch`` only to the estimator named ``gdpo``, and its v1 trainer fetches only the
summed ``rm_scores``. They come from the moalign trainer, which stages them in the session just before verl calls
the estimator (``session.stage``); when verl does pass ``non_tensor_batch`` the columns are read from there.

The session's step engine (:class:`moalign.rl.engine.StepEngine`, the one TRL's trainer uses) does the step, with
verl's own estimator (``grpo`` or ``rloo``, ``ε = 1e-6``) passed in as its estimator function
(:func:`.session.verl_estimator`): per-objective advantages once, the strategy, the aggregation, the record. With
``normalize_then_sum`` the result is whitened over response tokens with verl's ``masked_whiten``, as verl's GDPO does,
and multiplied by the strategy's advantage scale; with fixed weights the output is verl's GDPO (or GRPO/RLOO with
``sum_then_normalize``) to float precision (tests/verl/test_verl_plugin.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .session import current_session

__all__ = ["NAME", "compute_moalign_advantage", "register"]

NAME = "moalign"


def compute_moalign_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    non_tensor_batch: dict | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's estimator interface: ``(advantages, returns)``, both ``(N, L)`` on ``response_mask``."""
    from verl.utils import torch_functional as verl_F

    session = current_session(config)
    if non_tensor_batch is not None and all(name in non_tensor_batch for name in session.names):
        lengths = response_mask.sum(-1).tolist()
        rewards = session.rewards_from_columns(non_tensor_batch, lengths)
    else:
        rewards = session.take_staged(index)
    norm_by_std = bool(config.get("norm_adv_by_std_in_grpo", True)) if config is not None else True
    adv, scale = session.advantages(rewards, index, norm_by_std=norm_by_std)
    mask = response_mask.to(torch.float32)
    tokens = torch.as_tensor(adv, dtype=torch.float32, device=mask.device).unsqueeze(-1) * mask
    if session.config.aggregation == "normalize_then_sum":  # GDPO's last step; whitening undoes the scale: reapply
        tokens = verl_F.masked_whiten(tokens, mask) * mask * scale
    return tokens, tokens


def register() -> None:
    """Register ``moalign`` with verl (idempotent)."""
    from verl.trainer.ppo import core_algos

    if core_algos.ADV_ESTIMATOR_REGISTRY.get(NAME) is not compute_moalign_advantage:
        core_algos.register_adv_est(NAME)(compute_moalign_advantage)

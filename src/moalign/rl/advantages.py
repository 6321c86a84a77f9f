"""Advantage estimators on scalar or per-objective rewards.

Each estimator maps rewards ``r`` of shape ``(N,)`` or ``(N, K)`` (rows grouped by prompt in consecutive blocks of
``num_generations``; NaN = unscored) to advantages of the same shape. Unscored entries get advantage 0, as in TRL.

=============  ==================================================================================================
``grpo``       ``(r_i - mean_g r) / (std_g r + 1e-4)``; ``scale_rewards`` = ``group`` (std per prompt, TRL's
               default), ``batch`` (std over the batch) or ``none`` (mean-centring only, Dr. GRPO).
               Identical to TRL's ``GRPOTrainer`` (``multi_objective_aggregation="sum_then_normalize"``).
``rloo``       leave-one-out baseline ``r_i - mean_{j != i in group} r_j`` (Ahmadian et al., 2024, arXiv 2402.14740).
``reinforce``  REINFORCE++ (Hu et al., 2025, arXiv 2501.03262): the batch-mean baseline, then batch whitening
               ``(r_i - mean r) / (std r + 1e-4)``; with ``scale_rewards="none"`` the whitening is skipped
               (plain batch-mean REINFORCE). The mean and std are taken over *sequences* (each completion counts
               once). verl's ``reinforce_plus_plus`` (the papers' runs) whitens the token-level returns over all
               valid *tokens*, i.e. a length-weighted mean and std: long completions pull the baseline towards
               their reward. The two agree when completions have equal lengths; we keep the sequence version
               because it matches TRL's sequence-level advantages (see docs/design.md, Reference facts).
=============  ==================================================================================================

``grpo`` with ``scale_rewards="none"``, ``rloo`` and ``reinforce`` with ``scale_rewards="none"`` are linear in the
rewards, so the advantage of ``Σ_k w_k r_k`` equals ``Σ_k w_k A_k`` -- the property the gradient-based weighting
method relies on (:func:`is_linear`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["ESTIMATORS", "ESTIMATOR_SUMMARIES", "compute_advantages", "is_linear", "nanstd"]

EPS = 1e-4  # TRL's constant, kept so grpo matches GRPOTrainer bit for bit


def nanstd(x: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """Bessel-corrected std ignoring NaN (NaN where fewer than 2 values); same definition as ``trl.trainer.utils``."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    var = var * torch.where(count > 1, count / (count - 1), torch.full_like(var, float("nan")))
    std = torch.sqrt(var)
    return std if keepdim else (std.squeeze(dim) if dim is not None else std.reshape(()))


def _grouped(r: torch.Tensor, num_generations: int) -> torch.Tensor:
    n = r.shape[0]
    if n % num_generations:
        raise ValueError(f"{n} rewards cannot be split into groups of num_generations={num_generations}")
    return r.reshape(n // num_generations, num_generations, *r.shape[1:])  # (P, G, ...)


def grpo(r: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
    g = _grouped(r, num_generations)  # (P, G, ...)
    mean = torch.nanmean(g, dim=1, keepdim=True)
    adv = g - mean
    if scale_rewards == "group":
        std = nanstd(g, dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(mean)
        adv = adv / (std + EPS)
    elif scale_rewards == "batch":
        flat = r.reshape(r.shape[0], -1)
        std = torch.stack([nanstd(flat[:, k]) for k in range(flat.shape[1])]).reshape(1, 1, *r.shape[1:])
        adv = adv / (std + EPS)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', but got {scale_rewards!r}")
    return adv.reshape(r.shape)


def rloo(r: torch.Tensor, num_generations: int, scale_rewards: str = "none") -> torch.Tensor:
    g = _grouped(r, num_generations)
    valid = ~torch.isnan(g)
    count = valid.sum(dim=1, keepdim=True)
    total = torch.nansum(g, dim=1, keepdim=True)
    # Leave-one-out mean over the *other* scored completions of the prompt; undefined (-> advantage 0) when the
    # prompt has a single scored completion.
    loo_mean = (total - torch.nan_to_num(g, nan=0.0)) / (count - 1).clamp(min=1)
    adv = torch.where(count > 1, g - loo_mean, torch.zeros_like(g))
    if scale_rewards not in ("none", "group", "batch"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', but got {scale_rewards!r}")
    return adv.reshape(r.shape)


def reinforce(r: torch.Tensor, num_generations: int, scale_rewards: str = "batch") -> torch.Tensor:
    del num_generations  # REINFORCE++ uses the batch, not the prompt group, as baseline
    flat = r.reshape(r.shape[0], -1)  # (N, K')
    adv = flat - torch.nanmean(flat, dim=0, keepdim=True)
    if scale_rewards in ("batch", "group"):
        std = torch.stack([nanstd(flat[:, k]) for k in range(flat.shape[1])]).unsqueeze(0)
        adv = adv / (std + EPS)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', but got {scale_rewards!r}")
    return adv.reshape(r.shape)


ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {"grpo": grpo, "rloo": rloo, "reinforce": reinforce}

#: One line per estimator, for help strings and docs (the keys are ESTIMATORS', checked by a test).
ESTIMATOR_SUMMARIES: dict[str, str] = {
    "grpo": "group mean, std per `scale_rewards`",
    "rloo": "leave-one-out mean",
    "reinforce": "REINFORCE++ batch whitening; plain batch-mean REINFORCE with scale_rewards='none'",
}


def compute_advantages(
    rewards: torch.Tensor, estimator: str | Callable[..., torch.Tensor], num_generations: int,
    scale_rewards: str = "group",
) -> torch.Tensor:
    """Advantages of ``rewards`` (``(N,)`` or ``(N, K)``) with the named estimator, or with an estimator function of
    the same signature as :data:`ESTIMATORS`' (another framework's, e.g. verl's); NaN rewards -> advantage 0.

    >>> r = torch.tensor([1.0, 0.0, 1.0, 1.0])
    >>> compute_advantages(r, "rloo", num_generations=2).tolist()
    [1.0, -1.0, 0.0, 0.0]
    """
    if callable(estimator):
        fn = estimator
    elif estimator in ESTIMATORS:
        fn = ESTIMATORS[estimator]
    else:
        raise ValueError(f"unknown advantage_estimator {estimator!r}; valid names: {', '.join(sorted(ESTIMATORS))}")
    adv = fn(rewards.to(torch.float32), num_generations, scale_rewards)
    return torch.nan_to_num(adv, nan=0.0)


def is_linear(estimator: str, scale_rewards: str) -> bool:
    """Whether the estimator's advantage of ``Σ w_k r_k`` equals ``Σ w_k A_k`` (no std scaling).

    The gradient method of arXiv 2509.11452 (§5) assumes the gradient of the scalarized objective is
    ``Σ_k w_k ∇J_k``. This holds for ``rloo`` (``scale_rewards`` does not apply to it), ``grpo`` and ``reinforce``
    with ``scale_rewards="none"``; dividing by a standard deviation breaks it.

    >>> is_linear("rloo", "group"), is_linear("grpo", "none"), is_linear("grpo", "group")
    (True, True, False)
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage_estimator {estimator!r}; valid names: {', '.join(sorted(ESTIMATORS))}")
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', but got {scale_rewards!r}")
    if estimator == "rloo":
        return True
    return scale_rewards == "none"

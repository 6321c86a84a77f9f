"""Hand-built verl batches (legacy and v1 shapes) shared by the verl tests."""

from __future__ import annotations

import numpy as np
import torch

NAMES = ["accuracy", "conciseness", "clarity"]


def rewards_and_layout(seed: int, prompts: int = 4, g: int = 4, k: int = 3, shuffle: bool = True):
    """0/1 rewards (N, K), uids and response lengths; rows of a prompt interleaved when ``shuffle``."""
    rng = np.random.default_rng(seed)
    n = prompts * g
    rewards = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    uids = np.array([f"p{i // g}" for i in range(n)], dtype=object)
    lengths = rng.integers(3, 9, size=n)
    if shuffle:
        perm = rng.permutation(n)
        rewards, uids, lengths = rewards[perm], uids[perm], lengths[perm]
    return rewards, uids, lengths


def response_mask(lengths, width: int = 10) -> torch.Tensor:
    positions = torch.arange(width).unsqueeze(0)
    return (positions < torch.as_tensor(lengths).unsqueeze(1)).to(torch.int64)


def outcome_tokens(scalar: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
    """verl's token-level reward layout: the outcome reward on the last response token."""
    out = torch.zeros(mask.shape, dtype=torch.float32)
    last = mask.sum(-1) - 1
    out[torch.arange(mask.shape[0]), last] = torch.as_tensor(scalar, dtype=torch.float32)
    return out


def legacy_batch(rewards, uids, lengths, names=NAMES, prompt_len: int = 5):
    """The legacy trainer's batch: prompts + responses + attention mask, reward columns in non_tensor_batch."""
    from tensordict import TensorDict
    from verl import DataProto

    mask = response_mask(lengths, width=max(10, int(np.max(lengths))))
    n, width = mask.shape
    attention = torch.cat([torch.ones(n, prompt_len, dtype=torch.int64), mask], dim=1)
    batch = TensorDict({
        "prompts": torch.ones(n, prompt_len, dtype=torch.int64),
        "responses": torch.ones(n, width, dtype=torch.int64),
        "attention_mask": attention,
        "response_mask": mask,
        "token_level_rewards": outcome_tokens(rewards.sum(1), mask),
    }, batch_size=n)
    non_tensor = {"uid": np.asarray(uids, dtype=object)}
    for k, name in enumerate(names):
        non_tensor[name] = np.asarray(rewards[:, k], dtype=np.float32)
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def v1_batch(rewards, uids, lengths):
    """The v1 trainer's batch (``_compute_advantage``): padded fields, only ``uid`` as a non-tensor column."""
    from tensordict import TensorDict
    from verl import DataProto

    mask = response_mask(lengths)
    scores = outcome_tokens(rewards.sum(1), mask)
    batch = TensorDict({"response_mask": mask, "rm_scores": scores, "token_level_scores": scores,
                        "token_level_rewards": scores}, batch_size=mask.shape[0])
    return DataProto(batch=batch, non_tensor_batch={"uid": np.asarray(uids, dtype=object)})

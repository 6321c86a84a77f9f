"""The reward manager ``moalign`` (``reward.reward_manager.name=moalign``), registered in verl's reward-manager
registry.

It is verl's ``naive`` manager (one ``compute_score`` call per response, in verl's reward workers) with two
additions: without a ``reward.custom_reward_function.path`` it scores with :func:`moalign.integrations.verl.reward.
compute_score` and the objectives of ``algorithm.moalign.objectives``; and it adds the response length in tokens
(``length``, the count verl's response mask gives) to ``reward_extra_info``, which validation needs for the
normalised length of the hypervolume point.
"""

from __future__ import annotations

from functools import partial

from verl.experimental.reward_loop.reward_manager import register as register_reward_manager
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

from .reward import compute_score as score_with_objectives
from .session import LENGTH_KEY

__all__ = ["NAME", "MORewardManager"]

NAME = "moalign"


class MORewardManager(NaiveRewardManager):
    """verl's naive reward manager scoring with moalign objectives, plus the response length."""

    # ``compute_score`` by that name: verl's load_reward_manager passes it as a keyword
    def __init__(self, config, tokenizer, compute_score=None, *args, **kwargs):
        super().__init__(config, tokenizer, compute_score, *args, **kwargs)
        custom = config.get("reward", {}).get("custom_reward_function", {}) or {}
        if not custom.get("path"):
            block = config.get("algorithm", {}).get("moalign", None) or {}
            self.compute_score = partial(score_with_objectives, objectives=block.get("objectives", None))
            self.is_async_reward_score = False

    async def run_single(self, data):
        result = await super().run_single(data)
        item = data[-1]
        response_length = item.batch["responses"].shape[-1]
        result["reward_extra_info"][LENGTH_KEY] = int(item.batch["attention_mask"][-response_length:].sum())
        return result


def register() -> None:
    """Register the manager (idempotent)."""
    from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER

    if REWARD_MANAGER.get(NAME) is not MORewardManager:
        register_reward_manager(NAME)(MORewardManager)

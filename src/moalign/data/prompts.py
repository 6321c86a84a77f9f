r"""Chat context for conversational prompts: an optional system message and worked examples (few-shot turns).

Datasets hold prompts in TRL's conversational format, a list of ``{"role", "content"}`` messages, and TRL renders
them with the tokenizer's chat template. A small instruct model often ignores "put the final answer in
``\boxed{}``" when only told so; one worked example turn fixes the format. Measured on SmolLM2-135M-Instruct, greedy,
16 two-operand sums from the synthetic task: asked alone, 0 of 16 replies hold a ``\boxed{}`` (so accuracy is 0
whatever the arithmetic); after one example exchange, all 16 do (docs/real_model.md).

>>> add_context_messages([{"role": "user", "content": "2+2?"}], system_prompt="Be brief.",
...                      few_shot=[["1+1?", "\\boxed{2}"]])  # doctest: +NORMALIZE_WHITESPACE
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '1+1?'},
 {'role': 'assistant', 'content': '\\boxed{2}'}, {'role': 'user', 'content': '2+2?'}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["add_context", "add_context_messages", "check_few_shot"]


def check_few_shot(few_shot: Any) -> list[tuple[str, str]]:
    """``few_shot`` as a list of ``(user, assistant)`` string pairs; ``ValueError`` naming the bad entry otherwise."""
    if few_shot is None:
        return []
    if isinstance(few_shot, (str, bytes)) or not isinstance(few_shot, Sequence):
        raise ValueError(f"few_shot must be a list of [user, assistant] pairs, but got {few_shot!r}")
    pairs = []
    for i, pair in enumerate(few_shot):
        if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(x, str) and x.strip() for x in pair)):
            raise ValueError(
                f"few_shot[{i}] must be a [user message, assistant reply] pair of non-empty strings, but got {pair!r}"
            )
        pairs.append((pair[0], pair[1]))
    return pairs


def add_context_messages(messages: list[dict[str, str]], system_prompt: str | None = None,
                         few_shot: Any = None) -> list[dict[str, str]]:
    """``messages`` preceded by the system message (unless they already open with one) and the example turns.

    With an existing system message the examples go right after it.
    """
    pairs = check_few_shot(few_shot)
    head: list[dict[str, str]] = []
    rest = list(messages)
    if rest and rest[0].get("role") == "system":
        head, rest = [rest[0]], rest[1:]
    elif system_prompt:
        head = [{"role": "system", "content": system_prompt}]
    shots = [m for user, reply in pairs for m in ({"role": "user", "content": user},
                                                  {"role": "assistant", "content": reply})]
    return [*head, *shots, *rest]


def add_context(dataset, system_prompt: str | None = None, few_shot: Any = None):
    """``dataset`` (a ``datasets.Dataset`` with a conversational ``prompt`` column) with the context added to every
    prompt; unchanged when there is no context. Plain-text prompts are an error (there is no turn to put it in)."""
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError(f"system_prompt must be a string, but got {system_prompt!r}")
    pairs = check_few_shot(few_shot)
    if not system_prompt and not pairs:
        return dataset
    if len(dataset) and isinstance(dataset[0]["prompt"], str):
        raise ValueError("system_prompt/few_shot need conversational prompts (chat=True), but the prompts are plain text")
    return dataset.map(lambda row: {"prompt": add_context_messages(row["prompt"], system_prompt, pairs)},
                       keep_in_memory=True)

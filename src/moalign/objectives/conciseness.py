"""Conciseness: 1 if a completion is shorter than the running mean length of the training completions seen so far.

Semantics (as in the reference code of *Learning to Optimize Multi-Objective Alignment Through Dynamic Reward
Weighting*, arXiv 2509.11452): on a training batch of lengths ``l_1..l_n`` the running sum and count are updated
*first*, ``S += l_1 + ... + l_n``, ``C += n``, and then completion ``i`` scores 1.0 iff ``l_i < S / C`` (strictly).
So the very first batch is compared with its own mean, and a batch where every completion has the same length scores
all 0.0.

In evaluation (``training = False``, which the trainer sets around evaluations) the state does not move: lengths are
compared with the current running mean, or with the batch's own mean if no training batch was seen yet. Evaluations
report this objective as ``length`` (mean tokens, lower is better; ``eval_metric``), measured by the evaluation.

What is counted:

* ``completion_ids`` given (TRL always passes it): ``len(completion_ids[i])``. In TRL 1.16 these are the generated
  tokens up to and including the first EOS token, without padding; a completion cut off at ``max_completion_length``
  counts ``max_completion_length`` tokens.
* otherwise, with ``Conciseness(tokenizer=...)``: the completion text tokenized without special tokens
  (``tokenizer(text, add_special_tokens=False)["input_ids"]``, or ``tokenizer.encode(...)``), so no EOS: one token
  fewer than TRL's count for a completion that ended with EOS.

A token budget, ``Conciseness(max_tokens=N)`` (a moalign option; the papers have none): a completion of more than
``N`` tokens scores 0.0 whatever the running mean, so completion ``i`` scores 1.0 iff ``l_i < S / C`` and
``l_i <= N``. Every length still enters the running mean. The default, ``None``, is the papers' objective.

Under multi-process training TRL scores each process's share of the batch, so each process keeps its own running
mean (of 1/world_size of the completions); the means agree up to sampling noise.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .base import Objective, completion_text, register_objective

__all__ = ["Conciseness", "count_tokens"]


def count_tokens(tokenizer: Any, text: str) -> int:
    """Number of tokens of ``text`` without special tokens, for a Hugging Face or ``tokenizers`` tokenizer (duck-typed).

    >>> class Words:
    ...     def encode(self, text, add_special_tokens=False):
    ...         return text.split()
    >>> count_tokens(Words(), "three little words")
    3
    """
    if callable(tokenizer) and not hasattr(tokenizer, "encode_batch"):
        try:
            out = tokenizer(text, add_special_tokens=False)
        except TypeError:
            out = None
        if out is not None:
            ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else getattr(out, "input_ids", out)
            return len(ids)
    if hasattr(tokenizer, "encode"):
        try:
            out = tokenizer.encode(text, add_special_tokens=False)
        except TypeError:
            out = tokenizer.encode(text)
        return len(getattr(out, "ids", out))  # tokenizers.Tokenizer returns an Encoding
    raise ValueError(f"cannot count tokens with {type(tokenizer).__name__}: it has neither __call__ nor encode")


@register_objective("conciseness")
class Conciseness(Objective):
    """1.0 if the completion has strictly fewer tokens than the running mean length (updated with the batch first).

    Parameters:
        tokenizer: used only when the caller gives no ``completion_ids`` (TRL does); anything with ``encode`` or
            ``__call__`` returning ``input_ids``.
        max_tokens: token budget: a completion longer than this scores 0.0 (``None``: no budget, as in the papers).

    >>> c = Conciseness()
    >>> c(["a", "b", "c"], completion_ids=[[1, 2], [1, 2, 3, 4], [1, 2, 3]])  # mean (2+4+3)/3 = 3
    [1.0, 0.0, 0.0]
    >>> c(["d"], completion_ids=[[5] * 3])  # mean (9+3)/4 = 3: not strictly below
    [0.0]
    >>> c.state_dict()
    {'total_tokens': 12, 'count': 4}
    >>> c.training = False  # evaluation: compared with the running mean, which does not move
    >>> c(["e"], completion_ids=[[1] * 2]), c.state_dict()["count"]
    ([1.0], 4)
    >>> Conciseness(max_tokens=2)(["a", "b", "c"], completion_ids=[[1], [1, 2, 3], [1] * 8])  # mean 4, budget 2
    [1.0, 0.0, 0.0]
    """

    name = "conciseness"
    maximize = True
    eval_metric = "length"

    def __init__(self, tokenizer: Any = None, max_tokens: int | None = None):
        super().__init__()
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Real)
                                       or max_tokens != int(max_tokens) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer (or null for no budget), but got {max_tokens!r}")
        self.tokenizer = tokenizer
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.total_tokens = 0
        self.count = 0

    def lengths(self, completions: list, completion_ids: list | None = None) -> list[int]:
        """Token count of each completion (see the module docstring for what is counted)."""
        if completion_ids is not None:
            if len(completion_ids) != len(completions):
                raise ValueError(
                    f"conciseness: got {len(completion_ids)} completion_ids for {len(completions)} completions"
                )
            return [len(ids) for ids in completion_ids]
        if self.tokenizer is None:
            raise ValueError(
                "conciseness needs token counts: call it with completion_ids=[...] (GRPOTrainer does) or build it "
                "with Conciseness(tokenizer=your_tokenizer)"
            )
        return [count_tokens(self.tokenizer, completion_text(c)) for c in completions]

    def __call__(self, completions: list, completion_ids: list | None = None, **kwargs: Any) -> list[float | None]:
        lengths = self.lengths(completions, completion_ids)
        if not lengths:
            return []
        if self.training:
            self.total_tokens += sum(lengths)
            self.count += len(lengths)
        mean = self.total_tokens / self.count if self.count else sum(lengths) / len(lengths)
        budget = self.max_tokens if self.max_tokens is not None else math.inf
        return [1.0 if n < mean and n <= budget else 0.0 for n in lengths]

    @property
    def mean_length(self) -> float | None:
        """Running mean length of the training completions seen so far (None before the first batch)."""
        return self.total_tokens / self.count if self.count else None

    def reset(self) -> None:
        """Forget every length seen."""
        self.total_tokens = self.count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"total_tokens": int(self.total_tokens), "count": int(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"total_tokens", "count"} - set(state)
        if missing:
            raise ValueError(
                f"conciseness state lacks {sorted(missing)} (got keys {sorted(state)}); "
                "pass the dict saved by Conciseness.state_dict()"
            )
        total, count = int(state["total_tokens"]), int(state["count"])
        if total < 0 or count < 0:
            raise ValueError(f"conciseness state must be non-negative, but got total_tokens={total}, count={count}")
        self.total_tokens, self.count = total, count

    def __repr__(self) -> str:
        tok = "None" if self.tokenizer is None else type(self.tokenizer).__name__
        budget = "" if self.max_tokens is None else f", max_tokens={self.max_tokens}"
        return f"Conciseness(tokenizer={tok}{budget})"

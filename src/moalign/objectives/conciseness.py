"""Conciseness: 1 if the completion is shorter than the running mean length of training completions.

What is counted: the completion's tokens as TRL hands them over in ``completion_ids`` -- the generated tokens up to
and including the first EOS, without padding (a truncated completion counts all ``max_completion_length`` tokens).
Without ``completion_ids`` (direct calls), the completion text is tokenized with the tokenizer given at
construction, without special tokens.

Running mean (as in the reference code of arXiv 2509.11452): while training, each batch's lengths are first added
to the running sum and count, then every completion of the batch scores 1 if its length is *strictly* below the
updated mean. In evaluation (``training = False``) the mean is not updated; before any training batch the batch's
own mean is used. Evaluations report conciseness as the mean ``length`` in tokens (lower is better).
"""

from __future__ import annotations

from typing import Any

from .base import Objective, completion_text, register_objective

__all__ = ["Conciseness"]


@register_objective("conciseness")
class Conciseness(Objective):
    """1.0 if ``len(completion tokens) < running mean length``, else 0.0.

    >>> c = Conciseness()
    >>> c(["a", "b", "c"], completion_ids=[[1, 2], [1, 2, 3, 4], [1, 2, 3]])  # mean (2+4+3)/3 = 3
    [1.0, 0.0, 0.0]
    >>> c.state_dict()
    {'total_tokens': 9, 'count': 3}
    """

    name = "conciseness"
    maximize = True
    eval_metric = "length"

    def __init__(self, tokenizer: Any = None):
        super().__init__()
        self.tokenizer = tokenizer
        self.total_tokens = 0
        self.count = 0

    def lengths(self, completions: list, completion_ids: list | None = None) -> list[int]:
        if completion_ids is not None:
            if len(completion_ids) != len(completions):
                raise ValueError(f"got {len(completion_ids)} completion_ids for {len(completions)} completions")
            return [len(ids) for ids in completion_ids]
        if self.tokenizer is None:
            raise ValueError(
                "Conciseness needs token counts: call it with completion_ids=... (TRL does) or build it with "
                "Conciseness(tokenizer=your_tokenizer)"
            )
        return [len(self.tokenizer(completion_text(c), add_special_tokens=False)["input_ids"]) for c in completions]

    def __call__(self, completions: list, completion_ids: list | None = None, **columns: Any) -> list[float | None]:
        lengths = self.lengths(completions, completion_ids)
        if not lengths:
            return []
        if self.training:
            self.total_tokens += sum(lengths)
            self.count += len(lengths)
        mean = self.total_tokens / self.count if self.count else sum(lengths) / len(lengths)
        return [1.0 if n < mean else 0.0 for n in lengths]

    @property
    def mean_length(self) -> float | None:
        return self.total_tokens / self.count if self.count else None

    def state_dict(self) -> dict[str, Any]:
        return {"total_tokens": int(self.total_tokens), "count": int(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"total_tokens", "count"} - set(state)
        if missing:
            raise ValueError(f"conciseness state lacks {sorted(missing)}; the saved state is incomplete")
        self.total_tokens, self.count = int(state["total_tokens"]), int(state["count"])

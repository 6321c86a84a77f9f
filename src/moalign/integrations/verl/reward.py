"""moalign objectives as a verl reward function (``reward.custom_reward_function``).

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` once per response, in its reward
workers, and accepts a dict: ``"score"`` becomes the response's scalar reward and every other key a column of
``reward_extra_info`` (``non_tensor_batch`` in the legacy trainer, validation metrics ``val-aux/<source>/<key>``).
Here each objective's score is one key, named after the objective; ``"score"`` is their mean, which only verl's own
logs use (the moalign estimator weighs the columns).

Length objectives (``conciseness``: a running mean of lengths) are not scored here but in the driver, from verl's
response mask, so that their state is a single checkpointed state (docs/verl.md). This module imports moalign only,
by absolute imports: verl loads ``reward.custom_reward_function.path`` as a file, outside its package.
"""

from __future__ import annotations

import json
import math
from typing import Any

from moalign.evaluation import eval_metric_name
from moalign.objectives import Objective, build_objectives, objective_spec_json

__all__ = ["DEFAULT_OBJECTIVES", "compute_score", "text_objectives"]

DEFAULT_OBJECTIVES = ("accuracy", "conciseness", "clarity")
_CACHE: dict[str, list[Objective]] = {}


def text_objectives(specs: Any) -> list[Objective]:
    """The objectives of ``specs`` that are scored from a response's text (all but length objectives), built once
    per process."""
    specs = list(DEFAULT_OBJECTIVES if specs is None else specs)
    key = json.dumps([objective_spec_json(s) for s in specs], sort_keys=True, default=repr)
    if key not in _CACHE:
        built = build_objectives(specs, field="algorithm.moalign.objectives")
        _CACHE[key] = [obj for obj in built if eval_metric_name(obj) != "length"]
    return _CACHE[key]


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  objectives: Any = None, **kwargs: Any) -> dict[str, float]:
    r"""Score one response with every text objective: ``{"score": mean, <objective name>: score, ...}``; an objective
    that cannot score the response gives NaN (and is left out of the mean).

    ``objectives``: the same list as ``algorithm.moalign.objectives`` (verl passes
    ``reward.custom_reward_function.reward_kwargs``); default accuracy, conciseness, clarity.

    >>> out = compute_score("math", r"First add. Then carry. \boxed{4}", "4")
    >>> out == {"score": 1.0, "accuracy": 1.0, "clarity": 1.0}
    True
    """
    columns: dict[str, list[Any]] = {"reward_model": [{"ground_truth": ground_truth}], "data_source": [data_source]}
    for key, value in (extra_info or {}).items():
        columns.setdefault(str(key), [value])
    out: dict[str, float] = {}
    for obj in text_objectives(objectives):
        value = obj([solution_str], **columns)[0]
        out[obj.name] = math.nan if value is None else float(value)
    scored = [v for v in out.values() if not math.isnan(v)]
    return {"score": sum(scored) / len(scored) if scored else 0.0, **out}

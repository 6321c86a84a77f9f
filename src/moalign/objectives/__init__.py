"""Objectives: TRL-compatible reward functions with a name, a direction and checkpointable state."""

from .accuracy import Accuracy, answers_match, last_boxed
from .base import (
    OBJECTIVES,
    FunctionObjective,
    Objective,
    as_objective,
    available_objectives,
    build_objective,
    completion_text,
    register_objective,
)
from .clarity import Clarity, count_step_markers
from .conciseness import Conciseness

__all__ = [
    "OBJECTIVES",
    "Accuracy",
    "Clarity",
    "Conciseness",
    "FunctionObjective",
    "Objective",
    "answers_match",
    "as_objective",
    "available_objectives",
    "build_objective",
    "completion_text",
    "count_step_markers",
    "last_boxed",
    "register_objective",
]

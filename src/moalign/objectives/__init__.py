"""Objectives: TRL-compatible reward functions with a name, a direction and checkpointable state.

Built in (registry names): ``accuracy`` (:class:`Accuracy`), ``conciseness`` (:class:`Conciseness`), ``clarity``
(:class:`Clarity`) and ``habit`` (:class:`Habit`, one formatting habit of the ``habits`` synthetic task); reward
models (:class:`RewardModelObjective`, one per head of a :class:`RewardModel`). See ``docs/objectives.md``. This
package imports only the standard library, math-verify and torch (transformers only when a reward model is loaded
from a path).
"""

from .accuracy import Accuracy, answers_match, ground_truth, last_boxed
from .base import (
    OBJECTIVES,
    FunctionObjective,
    Objective,
    ScoreCountError,
    as_objective,
    available_objectives,
    build_objective,
    build_objectives,
    build_objectives_with_params,
    check_distinct_names,
    completion_text,
    get_objective,
    objective_label,
    objective_params,
    objective_spec_json,
    register_objective,
    sanitize_scores,
)
from .clarity import ORDINAL_WORDS, Clarity, count_step_markers, step_markers
from .conciseness import Conciseness, count_tokens
from .habit import HABITS, Habit, has_habit
from .reward_model import RewardModel, RewardModelObjective, prepare_reward_models, reward_model_objectives

__all__ = [
    "OBJECTIVES",
    "ORDINAL_WORDS",
    "Accuracy",
    "Clarity",
    "Conciseness",
    "FunctionObjective",
    "HABITS",
    "Habit",
    "Objective",
    "RewardModel",
    "RewardModelObjective",
    "ScoreCountError",
    "answers_match",
    "as_objective",
    "available_objectives",
    "build_objective",
    "build_objectives",
    "build_objectives_with_params",
    "check_distinct_names",
    "completion_text",
    "count_step_markers",
    "count_tokens",
    "get_objective",
    "has_habit",
    "ground_truth",
    "last_boxed",
    "objective_label",
    "objective_params",
    "objective_spec_json",
    "prepare_reward_models",
    "reward_model_objectives",
    "register_objective",
    "sanitize_scores",
    "step_markers",
]

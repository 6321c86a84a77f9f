"""``MOGRPOConfig``: TRL's ``GRPOConfig`` plus moalign's fields, checked without building the strategy.

``__post_init__`` validates names (strategy, its parameter names, estimator, aggregation), builds the objectives
(cheap; so an unknown objective or objective parameter is reported at once), checks the settings a strategy's needs
impose (:func:`moalign.weighting.needs_for`, known without building it) and the step alignment. The strategy's
parameter *values* (e.g. the count of ``strategy_params.weights``) are checked when the strategy is built, once, by
the step engine (:class:`moalign.rl.engine.StepEngine`): ``moalign train`` builds it right after the data, before any
model is loaded; ``MOGRPOTrainer`` builds it when it is constructed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from . import weighting
from .objectives import build_objectives, build_objectives_with_params, objective_spec_json
from .rl.advantages import ESTIMATOR_SUMMARIES, ESTIMATORS, is_linear
from .rl.step import AGGREGATIONS

__all__ = ["DEFAULT_OBJECTIVES", "MOGRPOConfig", "check_objective_params", "resolve_objectives"]

#: The objectives of both papers, in their weight order; used when neither the trainer nor the config names any.
DEFAULT_OBJECTIVES = ("accuracy", "conciseness", "clarity")

logger = logging.getLogger(__name__)


@dataclass
class MOGRPOConfig(GRPOConfig):
    """:class:`trl.GRPOConfig` plus the multi-objective settings. Every ``GRPOConfig`` field works as in TRL.

    Parameters that control the objectives and their weighting:
        objectives: registry names (or ``module:callable`` paths) of the objectives, in weight order.
        strategy: weighting strategy registry name (``moalign.weighting.available()``).
        strategy_params: keyword parameters of the strategy.
        advantage_estimator: ``grpo`` | ``rloo`` | ``reinforce``.
        run_dir: where the run directory goes (default ``output_dir``).

    Parameters that control per-objective gradient statistics (only used when the strategy needs them):
        gram_layers: decoder layer ids the Gram matrix is computed over, e.g. ``"10-25"``.
        gram_param_regex: regex over parameter names; overrides ``gram_layers``.
        gram_keep_activations: keep the activations of the layers above the probed ones for the probe's forward
            under activation checkpointing (docs/trainer.md, "Gram probe under activation checkpointing").

    Parameters that control evaluation and monitoring:
        mo_eval_steps, mo_eval_size, mo_eval_temperature, mo_validation_size, interference_window.
    """

    objectives: list[Any] | None = field(
        default=None,
        metadata={"help": "Objective registry names (or 'module:callable' paths, or callables) in weight order. "
                  "Default: the objectives passed to MOGRPOTrainer(objectives=...), else [accuracy, conciseness, "
                  "clarity] (both papers, in this order). `moalign train` fills the default in."},
    )
    strategy: str = field(
        default="fixed",
        metadata={"help": f"Weighting strategy: {', '.join(weighting.available())} (moalign.weighting.available())."},
    )
    strategy_params: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Strategy parameters, e.g. {'preset': 'balanced'} or {'weights': [0.5, 0.25, 0.25]}."},
    )
    advantage_estimator: str = field(
        default="grpo",
        metadata={"help": "; ".join(f"{name}: {text}" for name, text in ESTIMATOR_SUMMARIES.items()) + "."},
    )
    run_dir: str | None = field(default=None, metadata={"help": "Run directory (default: output_dir)."})
    gram_layers: str | None = field(
        default=None,
        metadata={"help": "Decoder layers for the per-objective Gram matrix, e.g. '10-25' (arXiv 2509.11452 §5 "
                  "uses Qwen3-8B layers 10-25). Default: middle third; all trainable params under PEFT."},
    )
    gram_param_regex: str | None = field(
        default=None, metadata={"help": "Regex over parameter names selecting the Gram parameters."}
    )
    gram_keep_activations: bool = field(
        default=False,
        metadata={"help": "Under activation checkpointing, let the Gram probe's forward keep the activations of the "
                  "layers from the lowest probed one upward, so the probe's and the update's backwards do not each "
                  "recompute them: a faster step for those layers' activation memory (docs/BENCHMARKS.md)."},
    )
    mo_eval_steps: int = field(
        default=0,
        metadata={"help": "Greedy evaluation of `eval_dataset` every N RL steps (generation batches) and at step 0, "
                  "into evals.jsonl; 0 disables. The papers evaluate every 5 steps."},
    )
    mo_eval_size: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N rows of eval_dataset (default: all)."}
    )
    mo_eval_temperature: float = field(
        default=0.0,
        metadata={"help": "0: greedy evaluations (the papers'). > 0: one completion sampled per row at this "
                  "temperature (no top-k/top-p), seeded from `seed` and the step, so runs with the same seed draw "
                  "alike; the validation points use it too. For policies whose habits greedy decoding hides."},
    )
    mo_validation_size: int | None = field(
        default=None,
        metadata={"help": "Validation points (hypervolume strategy, point_source: validation) use the first N rows of "
                  "the validation dataset (default: all). The paper uses the 100-problem Math500 val split."},
    )
    interference_window: int = field(
        default=5,
        metadata={"help": "Warn when an objective's covariance with the advantage stays negative for this many "
                  "consecutive steps while its mean reward falls."},
    )

    def __post_init__(self):
        # moalign's checks first: a misspelt strategy or objective is reported before TRL's device/precision checks.
        # scale_rewards may be TRL's bool alias; resolve it the way GRPOConfig does, for the linearity check.
        self.scale_rewards = {True: "group", False: "none"}.get(self.scale_rewards, self.scale_rewards)
        self._check_moalign_fields()
        self._choose_precision()
        super().__post_init__()
        self._check_step_alignment()

    def _choose_precision(self) -> None:
        # TRL would turn an unset bf16 on (GRPOConfig: bf16 = not fp16), which is emulated and slow on CPU:
        # moalign.precision decides instead, for every path that builds a MOGRPOConfig.
        from .precision import choose_precision

        self.precision = choose_precision(bf16=self.bf16, fp16=self.fp16, use_cpu=self.use_cpu)
        self.bf16, self.fp16 = self.precision.bf16, self.precision.fp16

    def _check_step_alignment(self) -> None:
        # The strategy sets a generation batch's weights before its update and adapts them after it (finish_step at
        # the optimizer step that consumes the batch's last micro-batch): each generation batch must end on an
        # optimizer-step boundary and no optimizer step may span two generation batches.
        generate_every = self.steps_per_generation * self.num_iterations  # micro-batches per generation batch
        if generate_every % self.gradient_accumulation_steps:
            raise ValueError(
                f"steps_per_generation × num_iterations ({self.steps_per_generation} × {self.num_iterations} = "
                f"{generate_every}) must be a multiple of gradient_accumulation_steps "
                f"({self.gradient_accumulation_steps}): moalign adapts the weights once per generation batch, after "
                "the optimizer step that finishes it. Set steps_per_generation to a multiple of "
                "gradient_accumulation_steps (TRL's default, steps_per_generation = gradient_accumulation_steps, works)"
            )

    def to_dict(self) -> dict[str, Any]:
        # Callables in `objectives` become their names and {name, <parameter>: ...} entries stay mappings of JSON
        # values, so TrainingArguments.to_json_string (TensorBoard, W&B, run.json) stays JSON.
        out = super().to_dict()
        if out.get("objectives") is not None:
            out["objectives"] = [objective_spec_json(o) for o in out["objectives"]]
        return out

    def _check_moalign_fields(self) -> None:
        if not isinstance(self.strategy_params, dict):
            raise ValueError(f"strategy_params must be a mapping, but got {type(self.strategy_params).__name__}")
        if self.advantage_estimator not in ESTIMATORS:
            raise ValueError(
                f"advantage_estimator={self.advantage_estimator!r} is unknown; use one of {', '.join(sorted(ESTIMATORS))}"
            )
        if self.objectives is not None:
            self._check_objectives()
        # The strategy's name and parameter names now; its parameter values when the engine builds it (once).
        self._check_needs(weighting.needs_for(self.strategy, self.strategy_params))
        self._check_common()

    def _check_objectives(self) -> None:
        # Names, import paths and {name: ..., <parameter>: ...} entries are resolved and built now, before any model
        # is loaded: an unknown name or parameter is reported here (the objectives are cheap; the strategy is not
        # built here, the engine builds it once).
        build_objectives(self.objectives)

    def _check_needs(self, needs) -> None:
        if "gram" in needs:
            if getattr(self, "use_liger_kernel", False) or getattr(self, "use_liger_loss", False):
                raise ValueError(
                    f"strategy {self.strategy!r} needs per-objective gradients, which the fused Liger GRPO loss does "
                    "not expose; set use_liger_kernel: false"
                )
            if self.loss_type not in ("grpo", "bnpo", "dr_grpo", "dapo"):
                raise ValueError(
                    f"strategy {self.strategy!r} needs per-objective policy-gradient losses, defined for loss_type "
                    f"grpo/bnpo/dr_grpo/dapo; got loss_type={self.loss_type!r}"
                )
            if not is_linear(self.advantage_estimator, self.scale_rewards):
                logger.warning(
                    "strategy %r assumes the update is linear in the weights (arXiv 2509.11452 §5), which holds for "
                    "advantage_estimator='rloo' or scale_rewards='none', not for %s with scale_rewards=%r: the "
                    "per-objective influences are then only an approximation.",
                    self.strategy, self.advantage_estimator, self.scale_rewards,
                )

    def _check_common(self) -> None:
        if self.multi_objective_aggregation not in AGGREGATIONS:
            raise ValueError(
                f"multi_objective_aggregation must be one of {', '.join(AGGREGATIONS)}, but got "
                f"{self.multi_objective_aggregation!r} (mo_grpo is normalize_then_sum without the final whitening)"
            )
        if self.mo_validation_size is not None and self.mo_validation_size < 1:
            raise ValueError(f"mo_validation_size must be >= 1 (or null for all rows), but got {self.mo_validation_size}")
        if not (math.isfinite(self.mo_eval_temperature) and self.mo_eval_temperature >= 0):
            raise ValueError(f"mo_eval_temperature must be >= 0 (0: greedy), but got {self.mo_eval_temperature}")
        if self.mo_eval_steps < 0:
            raise ValueError(f"mo_eval_steps must be >= 0 (0 disables), but got {self.mo_eval_steps}")
        if self.interference_window < 1:
            raise ValueError(f"interference_window must be >= 1, but got {self.interference_window}")


def resolve_objectives(args: MOGRPOConfig, objectives: list[Any] | None = None, reward_processing_classes: Any = None
                       ) -> tuple[list[Any], list[dict[str, Any] | None]]:
    """The run's objective instances and each one's parameters (``{name: conciseness, max_tokens: 512}`` ->
    ``{"max_tokens": 512}``; None for an objective passed as an object): ``objectives`` (instances, callables, reward
    models or specs; the source of truth, as ``reward_funcs`` in TRL; ``args.objectives``, when set, must give as
    many objectives), else built from ``args.objectives`` (default :data:`DEFAULT_OBJECTIVES`).
    ``reward_processing_classes``: one tokenizer per entry for reward models, as in TRL. Names are checked to be
    distinct by :func:`moalign.objectives.check_distinct_names`, the one place that checks them."""
    if objectives is None:
        specs = list(args.objectives) if args.objectives is not None else list(DEFAULT_OBJECTIVES)
        return build_objectives_with_params(specs, tokenizers=reward_processing_classes)
    built, params = build_objectives_with_params(list(objectives), tokenizers=reward_processing_classes)
    if args.objectives is not None:
        configured = build_objectives(args.objectives)
        if len(configured) != len(built):
            names = [o.name for o in built]
            raise ValueError(
                f"{len(built)} objectives were passed ({', '.join(names)}) but args.objectives names "
                f"{len(configured)} ({', '.join(o.name for o in configured)}); pass one objective per name, in order"
            )
    return built, params


def check_objective_params(state: dict[str, Any], names: list[str], params: list[dict[str, Any] | None]) -> None:
    """Refuse to resume a checkpoint (``moalign_state.json``) trained with other objective parameters. Checkpoints
    written before objectives had parameters have none and pass; other objective names are the engine's to refuse."""
    saved = state.get("objective_params")
    if state.get("objective_names") != names or saved is None or saved == params:
        return
    changed = "; ".join(f"{n}: {a} in the checkpoint, {b} now" for n, a, b in zip(names, saved, params) if a != b)
    raise ValueError(f"the checkpoint was trained with other objective parameters ({changed}); resume with the same "
                     "objectives entries, e.g. the run's config (run.json records them)")

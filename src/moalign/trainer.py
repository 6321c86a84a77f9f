"""Multi-objective GRPO/RLOO/REINFORCE++ on top of TRL's ``GRPOTrainer``.

TRL's ``GRPOTrainer`` scalarizes rewards with static ``reward_weights`` and hands the loss nothing per objective.
:class:`MOGRPOTrainer` subclasses it and, at each RL step (one generation batch):

1. captures the gathered ``(N, K)`` per-objective rewards (``_calculate_rewards``), with faulty objectives isolated
   per sample (an objective that raises or returns NaN/inf leaves that sample unscored for it);
2. computes per-objective advantages with the chosen estimator (``grpo``/``rloo``/``reinforce``) and, for
   strategies that need it, the K×K Gram matrix of per-objective policy gradients (:mod:`moalign.rl.gram`);
3. calls the weighting strategy (``before_update``), scalarizes the rewards with its weights (or its own
   non-linear scalarization), recomputes the scalar advantages and multiplies them by ``advantage_scale()``;
4. lets TRL run its usual loss and optimizer step (so vLLM, accelerate/DeepSpeed/FSDP, PEFT, gradient
   accumulation, ``steps_per_generation``, logging and checkpoints keep working);
5. after the update, hands post-update statistics to the strategy (``after_update``), logs weights, reward means,
   the within-prompt covariance diagnostic and timings, and appends a line to ``steps.jsonl``;
6. saves the strategy and objective state as JSON (``moalign_state.json``) in every checkpoint and restores it on
   ``resume_from_checkpoint``.

Everything TRL-specific lives in this module; the strategies, objectives and RL maths are framework-free.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from . import weighting
from .evaluation import eval_metric_name, evaluate_policy, normalised_point
from .live_front import FrontTracker, log_front_table
from .objectives import (ScoreCountError, build_objectives, objective_label, objective_params, objective_spec_json,
                         sanitize_scores)
from .rl.advantages import ESTIMATORS, compute_advantages, is_linear
from .rl.gram import GramProbe, GramSkipped, gram_setup_problem, select_parameters
from .rundir import (
    STATE_FILE,
    STATE_FORMAT_VERSION,
    append_jsonl,
    atomic_write_json,
    package_versions,
    read_jsonl,
    read_state_file,
    set_aside_old_logs,
    sync_file,
    truncate_jsonl,
)
from .rl.step import AGGREGATIONS, StepRecord, StepSkipped, finish_step, weigh_step
from .weighting.base import StepStats

__all__ = ["DEFAULT_OBJECTIVES", "MOGRPOConfig", "MOGRPOTrainer"]

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

    Parameters that control evaluation and monitoring:
        mo_eval_steps, mo_eval_size, mo_validation_size, interference_window.
    """

    objectives: list[Any] | None = field(
        default=None,
        metadata={"help": "Objective registry names (or 'module:callable' paths, or callables) in weight order. "
                  "Default: the objectives passed to MOGRPOTrainer(objectives=...), else [accuracy, conciseness, "
                  "clarity] (both papers, in this order). `moalign train` fills the default in."},
    )
    strategy: str = field(
        default="fixed",
        metadata={"help": "Weighting strategy: fixed, hypervolume, gradient, ctwa, lagrangian, tchebycheff, pama, "
                  "mgda, gradnorm, nash_mtl, famo."},
    )
    strategy_params: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Strategy parameters, e.g. {'preset': 'balanced'} or {'weights': [0.5, 0.25, 0.25]}."},
    )
    advantage_estimator: str = field(
        default="grpo",
        metadata={"help": "grpo (group mean, std per `scale_rewards`), rloo (leave-one-out mean) or reinforce "
                  "(REINFORCE++ batch whitening; plain batch-mean REINFORCE with scale_rewards='none')."},
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
    mo_eval_steps: int = field(
        default=0,
        metadata={"help": "Greedy evaluation of `eval_dataset` every N RL steps (generation batches) and at step 0, "
                  "into evals.jsonl; 0 disables. The papers evaluate every 5 steps."},
    )
    mo_eval_size: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N rows of eval_dataset (default: all)."}
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
        super().__post_init__()
        self._check_step_alignment()

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
        if self.objectives is None:
            # The objectives come with the trainer (MOGRPOTrainer(objectives=...), as reward_funcs in TRL), which
            # builds the strategy for them. Everything but the number of objectives is checked now, against the
            # default objectives; a count mismatch is left to the trainer, which knows the real count.
            try:
                strategy = weighting.build(self.strategy, len(DEFAULT_OBJECTIVES), list(DEFAULT_OBJECTIVES),
                                           **self.strategy_params)
            except ValueError as exc:
                if " entries but " not in str(exc):
                    raise
                strategy = None
            self._check_needs(strategy.needs if strategy is not None else weighting.STRATEGIES[self.strategy].needs)
            self._check_common()
            return
        # Names, import paths and {name: ..., <parameter>: ...} entries are resolved and built now, before any model
        # is loaded: an unknown name or parameter is reported here.
        build_objectives(self.objectives)
        # Building the strategy validates its name and every parameter (count of weights included) before any
        # model is loaded.
        strategy = weighting.build(self.strategy, len(self.objectives), [objective_label(o) for o in self.objectives],
                                   **self.strategy_params)
        self._check_needs(strategy.needs)
        self._check_common()

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
        if self.mo_eval_steps < 0:
            raise ValueError(f"mo_eval_steps must be >= 0 (0 disables), but got {self.mo_eval_steps}")
        if self.interference_window < 1:
            raise ValueError(f"interference_window must be >= 1, but got {self.interference_window}")


class _GuardedObjective:
    """Calls an objective so that one bad completion cannot stop training.

    If the objective raises on the batch, it is called again one completion at a time and the completions it still
    raises on are left unscored (None). NaN, inf and non-numbers become None. Counts are kept for logging.
    """

    def __init__(self, objective):
        self.objective = objective
        self.__name__ = getattr(objective, "name", getattr(objective, "__name__", type(objective).__name__))
        self.unscored = 0
        self.errors: list[str] = []

    def __call__(self, prompts, completions, **kwargs):
        n = len(completions)
        try:
            values = self.objective(prompts=prompts, completions=completions, **kwargs)
        except ScoreCountError:
            raise  # a bug in the objective, not a bad completion: stop with the message
        except Exception as exc:  # noqa: BLE001 - isolate the failing sample, report it
            self.errors.append(f"{type(exc).__name__}: {exc}")
            values = [self._score_one(i, prompts, completions, kwargs) for i in range(n)]
        scores, _ = sanitize_scores(values, n, self.__name__)
        self.unscored += sum(v is None for v in scores)
        return scores

    def _score_one(self, i, prompts, completions, kwargs):
        one = {k: ([v[i]] if isinstance(v, list) and len(v) == len(completions) else v) for k, v in kwargs.items()}
        try:
            return self.objective(prompts=[prompts[i]], completions=[completions[i]], **one)[0]
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return None


@dataclass
class _Batch:
    """What the trainer keeps about the current generation batch between generation and the end of the update."""

    stats: StepStats
    rewards: torch.Tensor  # (N, K) gathered
    process_slice: slice
    local: dict[str, Any]  # the local (unshuffled) generation batch
    weights: np.ndarray | None = None
    advantages: torch.Tensor | None = None  # (N,) final scalar advantages
    advantage_scale: float = 1.0
    lr_scale: float = 1.0  # the strategy's learning-rate multiplier applied to this batch's optimizer steps
    covariance: np.ndarray | None = None
    old_logps: dict[int, torch.Tensor] = field(default_factory=dict)  # gathered index -> (T,) pre-update logps
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unscored: dict[str, int] = field(default_factory=dict)
    validation_point: np.ndarray | None = None
    generated_at: float = 0.0
    skip_reason: str | None = None
    record: StepRecord | None = None  # what rl.step.weigh_step decided


class MOGRPOTrainer(GRPOTrainer):
    """GRPO-family trainer with K objectives and a weighting strategy (see the module docstring).

    Args:
        model: model id, local path or ``PreTrainedModel`` (as for ``GRPOTrainer``).
        args: :class:`MOGRPOConfig`.
        train_dataset: dataset with a ``prompt`` column and whatever columns the objectives read (``answer``...).
        processing_class: tokenizer (loaded from the model when None).
        eval_dataset: dataset for ``mo_eval_steps`` evaluations (and the hypervolume strategy's validation points
            when no ``validation_dataset`` is given).
        validation_dataset: dataset the strategy's validation points are evaluated on (split name ``val`` in
            ``evals.jsonl``; the first ``mo_validation_size`` rows).
        eval_split_name: the split name written to ``evals.jsonl`` for those evaluations.
        objectives: objective instances or callables; default: built from ``args.objectives``.
        strategy: a :class:`~moalign.weighting.WeightingStrategy`; default: built from ``args.strategy``.
        callbacks, peft_config, **kwargs: passed to ``GRPOTrainer``.
    """

    def __init__(
        self,
        model,
        args: MOGRPOConfig,
        train_dataset,
        processing_class=None,
        eval_dataset=None,
        validation_dataset=None,
        objectives=None,
        strategy: weighting.WeightingStrategy | None = None,
        callbacks=None,
        peft_config=None,
        eval_split_name: str = "eval",
        **kwargs,
    ):
        from .objectives import build_objective

        if not isinstance(args, MOGRPOConfig):
            raise ValueError(f"args must be a MOGRPOConfig, got {type(args).__name__}; build one with MOGRPOConfig(...)")
        # The objectives passed here are the source of truth (as reward_funcs in TRL); args.objectives, when set,
        # must agree in number.
        if objectives is None:
            specs = list(args.objectives) if args.objectives is not None else list(DEFAULT_OBJECTIVES)
            objectives = [build_objective(spec) for spec in specs]
        else:
            specs = list(objectives)
            objectives = [build_objective(o) for o in objectives]
            names = [o.name for o in objectives]
            if args.objectives is not None and len(names) != len(args.objectives):
                raise ValueError(
                    f"{len(objectives)} objectives were passed ({', '.join(names)}) but args.objectives names "
                    f"{len(args.objectives)} ({', '.join(map(objective_label, args.objectives))}); pass one "
                    "objective per name, in order"
                )
        self.objectives = objectives
        self.objective_names = [o.name for o in objectives]
        # The parameters of each config entry ({name: conciseness, max_tokens: 512}), for run.json and checkpoints;
        # None for an objective passed as an object.
        self.objective_params = [objective_params(spec) for spec in specs]
        duplicates = sorted({n for n in self.objective_names if self.objective_names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"two objectives share the name(s) {duplicates}; every objective needs its own name (weights, logs "
                "and checkpoints are keyed by it): give your functions distinct names or set `.name`"
            )
        self._guards = [_GuardedObjective(o) for o in objectives]
        k = len(objectives)
        if args.objectives is None:
            args.objectives = list(self.objective_names)  # run.json and `moalign eval` read them
        if strategy is None:
            strategy = weighting.build(args.strategy, k, self.objective_names, **args.strategy_params)
        elif strategy.num_objectives != k:
            raise ValueError(f"strategy has {strategy.num_objectives} objectives but {k} objectives were given")
        self.strategy = strategy
        self.run_dir = Path(args.run_dir or args.output_dir)
        if isinstance(model, str):  # a known short name (moalign.models.KNOWN_MODELS) -> its local directory
            from .models import resolve_model

            model = resolve_model(model)

        super().__init__(
            model=model,
            reward_funcs=self._guards,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            peft_config=peft_config,
            **kwargs,
        )
        # TRL validates reward_weights against reward_funcs; we drive them ourselves each step.
        self.reward_weights = torch.tensor(self.strategy.weights(), dtype=torch.float32)
        # moalign's aggregation (rl.step); TRL still computes advantages of its own, which moalign replaces, and knows
        # only its two aggregations, so mo_grpo reaches TRL as the GDPO it differs from by one scale per step.
        self._aggregation = args.multi_objective_aggregation
        if self._aggregation == "mo_grpo":
            self.multi_objective_aggregation = "normalize_then_sum"

        needs = self.strategy.needs
        self._gram_probe: GramProbe | None = None  # built on the wrapped model at the first step (_gram_probe_now)
        self._gram_wanted = "gram" in needs or "losses" in needs
        if self._gram_wanted:
            self._check_gram_setup()
            select_parameters(self.model, args.gram_layers, args.gram_param_regex)  # bad selections fail here
        # One forward for the Gram and the update when each rank's generation batch is a single micro-batch.
        self._gram_one_pass = (
            self._gram_wanted
            and args.steps_per_generation == 1
            and self.num_iterations == 1
            and args.gradient_accumulation_steps == 1
        )
        self._batch: _Batch | None = None
        self._deferred: _Batch | None = None
        self._cached_forward = None
        self._capture_logps: torch.Tensor | None = None  # gathered indices of the micro-batch being forwarded
        self._last_rewards: torch.Tensor | None = None
        self._neg_cov_streak = np.zeros(k, dtype=int)
        self._reward_history: list[np.ndarray] = []
        self._evaluator = None
        if eval_dataset is not None and (args.mo_eval_steps > 0 or ("validation" in needs and validation_dataset is None)):
            eval_split = eval_dataset if not isinstance(eval_dataset, dict) else next(iter(eval_dataset.values()))
            self._evaluator = _Evaluator(self, eval_split, eval_split_name, args.mo_eval_size, live=True)
        # Validation points (hypervolume strategy) come from their own split when one is given, as in the paper
        # (Math500 val for the meta-reward, test for reporting), so the reported split never steers training.
        self._validator = self._evaluator
        if "validation" in needs and validation_dataset is not None:
            self._validator = _Evaluator(self, validation_dataset, "val", args.mo_validation_size)
        if "validation" in needs and self._validator is None:
            raise ValueError(
                f"strategy {self.strategy.name!r} takes its Pareto points from greedy validation evaluations, but no "
                "eval_dataset or validation_dataset was given; pass one (e.g. dataset_eval_split: val) or set "
                "strategy_params.point_source: train_batch"
            )
        self._resumed_step: int | None = None
        self.extra_run_info: dict[str, Any] = {}  # e.g. {"data": ..., "model": ...} from `moalign train`
        self.add_callback(_MOCallback(self))
        self._default_tensorboard_dir()
        # First in line, so the front table reaches the loggers before their own on_train_end closes them.
        self.callback_handler.callbacks.insert(0, _FrontTableCallback(self))

    # ------------------------------------------------------------------------------------------------------------
    # rewards and advantages
    # ------------------------------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards = rewards
        return rewards

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            with self._objectives_frozen():
                return super()._generate_and_score_completions(inputs)

        start = time.perf_counter()
        for g in self._guards:
            g.unscored, g.errors = 0, []
        self.reward_weights = torch.tensor(self.strategy.weights(), dtype=torch.float32)
        output = super()._generate_and_score_completions(inputs)
        t_generate = time.perf_counter() - start

        rewards = self._last_rewards.float()  # (N, K) gathered over ranks
        n, k = rewards.shape
        local_n = output["prompt_ids"].shape[0]
        process_slice = slice(self.accelerator.process_index * local_n, (self.accelerator.process_index + 1) * local_n)
        mo_adv = compute_advantages(rewards, self.args.advantage_estimator, self.num_generations, self.scale_rewards)
        index = torch.arange(n, device=rewards.device)
        output["mo_index"] = index[process_slice]
        output["mo_advantages"] = mo_adv[process_slice]

        stats = StepStats(
            step=int(self.state.global_step),
            rewards=rewards.double().cpu().numpy(),
            group_ids=(index // self.num_generations).cpu().numpy(),
            advantages=mo_adv.double().cpu().numpy(),
            lr=float(self._current_lr()),
        )
        batch = _Batch(stats=stats, rewards=rewards, process_slice=process_slice, local=dict(output))
        batch.timings["generate"] = t_generate
        batch.generated_at = time.perf_counter()
        # Each rank scores its own completions: sum the counts so they match the gathered N.
        counts = torch.tensor([g.unscored for g in self._guards], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        batch.unscored = {g.__name__: int(c) for g, c in zip(self._guards, counts.tolist())}
        for g in self._guards:
            if batch.unscored[g.__name__] and self.accelerator.is_main_process:
                logger.warning(
                    "objective %r left %d of %d completions unscored at step %d%s", g.__name__,
                    batch.unscored[g.__name__], n, stats.step, f" (first error: {g.errors[0]})" if g.errors else "",
                )
        self._batch = batch

        if self._gram_wanted and self._gram_one_pass:
            self._deferred = batch  # the Gram comes from the update's own forward, in compute_loss
            output["advantages"] = torch.zeros(local_n, device=rewards.device)
            return output
        if self._gram_wanted:
            t0 = time.perf_counter()
            self._probe_gram(batch, output)
            batch.timings["strategy"] += time.perf_counter() - t0
        self._weigh(batch)
        output["advantages"] = batch.advantages[process_slice]
        return output

    def _current_lr(self) -> float:
        if getattr(self, "lr_scheduler", None) is not None:
            with contextlib.suppress(Exception):
                return float(self.lr_scheduler.get_last_lr()[0])
        return float(self.args.learning_rate)

    def _weigh(self, batch: _Batch) -> None:
        """The framework-free step (:func:`moalign.rl.step.weigh_step`) on the whole gathered batch.

        The Gram probe has already run (``_probe_gram`` or the one-pass path in ``compute_loss``) and left its result
        in ``batch.stats`` (or a ``batch.skip_reason``); the callable hands it over."""
        t0 = time.perf_counter()
        probed = batch.stats

        def gram(_advantages):
            if batch.skip_reason is not None:
                raise StepSkipped(batch.skip_reason)
            return probed.gram, probed.losses

        adv, record = weigh_step(
            batch.rewards, self.strategy, num_generations=self.num_generations,
            estimator=self.args.advantage_estimator, scale_rewards=self.scale_rewards,
            aggregation=self._aggregation, step=probed.step, lr=probed.lr,
            gram=gram if self._gram_wanted else None,
        )
        if record.skip_reason is not None:
            logger.warning("step %d: strategy %r kept its previous weights (%s)", record.step, self.strategy.name,
                           record.skip_reason)
        batch.record, batch.stats, batch.skip_reason = record, record.stats, record.skip_reason
        batch.weights, batch.advantage_scale, batch.covariance = record.weights, record.advantage_scale, \
            record.covariance
        batch.advantages = adv.to(batch.rewards.device)
        self.reward_weights = torch.tensor(record.weights, dtype=torch.float32)
        batch.timings["strategy"] += time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------------------------
    # per-objective gradient statistics
    # ------------------------------------------------------------------------------------------------------------
    def _forward_logps(self, model, chunk):
        input_ids = torch.cat([chunk["prompt_ids"], chunk["completion_ids"]], dim=1)
        attention_mask = torch.cat([chunk["prompt_mask"], chunk["completion_mask"]], dim=1)
        logits_to_keep = chunk["completion_ids"].size(1)
        return self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
        )

    def _check_gram_setup(self) -> None:
        """Refuses, at start-up, parallel setups on which the Gram probe cannot be exact (rl.gram.gram_setup_problem)."""
        state = self.accelerator.state
        zero = state.deepspeed_plugin.zero_stage if getattr(self, "is_deepspeed_enabled", False) else None
        fsdp = getattr(state.fsdp_plugin, "fsdp_version", 1) if getattr(self, "is_fsdp_enabled", False) else None
        kwargs = self.args.gradient_checkpointing_kwargs or {}
        problem = gram_setup_problem(
            zero_stage=zero, fsdp_version=fsdp, gradient_checkpointing=bool(self.args.gradient_checkpointing),
            use_reentrant=kwargs.get("use_reentrant", False),
        )
        if problem:
            raise ValueError(f"strategy {self.strategy.name!r} needs per-objective gradient statistics, but {problem}")

    def _gram_probe_now(self) -> GramProbe:
        """The probe, built at the first step on the model as accelerate prepared it (DDP/FSDP2 wrapping done)."""
        if self._gram_probe is None:
            model = self.accelerator.unwrap_model(self.model)
            params = select_parameters(model, self.args.gram_layers, self.args.gram_param_regex)
            reduce = self._all_reduce_mean if self.accelerator.num_processes > 1 else None
            self._gram_probe = GramProbe(model, params, len(self.objective_names), all_reduce=reduce)
        return self._gram_probe

    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor.to(self.accelerator.device), reduction="mean")

    @contextlib.contextmanager
    def _policy_term_only(self):
        """TRL's loss without the objective-independent terms (KL, entropy bonus, aux) and without metric logging."""
        saved = {name: getattr(self, name) for name in ("beta", "_entropy_bonus_enabled", "aux_loss_enabled")
                 if hasattr(self, name)}
        lengths = {key: len(v) for key, v in self._metrics["train"].items()}
        self.beta, self._entropy_bonus_enabled, self.aux_loss_enabled = 0.0, False, False
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)
            for key in list(self._metrics["train"]):
                del self._metrics["train"][key][lengths.get(key, 0):]

    def _policy_loss_fn(self, model, chunk: dict[str, Any], entropies: torch.Tensor | None):
        """``(logps, advantages) -> loss``: TRL's own ``_compute_loss`` on a given forward (GramProbe's loss_fn)."""

        def loss_fn(logps, advantages):
            inputs = dict(chunk, advantages=advantages)
            self._cached_forward = (logps, None if entropies is None else entropies.detach(), None)
            try:
                with self._policy_term_only():
                    return GRPOTrainer._compute_loss(self, model, inputs)
            finally:
                self._cached_forward = None

        return loss_fn

    def _finish_gram(self, batch: _Batch, probe: GramProbe) -> None:
        """All-reduced Gram and losses into the step's stats, or a skip with its true reason."""
        gram, losses = probe.finish(self.accelerator.device)
        gram, losses = gram.numpy(), losses.numpy()
        adv = batch.stats.advantages
        if not np.all(np.isfinite(gram)):
            reason = "non-finite Gram matrix (NaN/inf in the per-objective gradients of the probed parameters)"
        elif not gram.any() and np.nan_to_num(adv).any():
            reason = ("all-zero Gram matrix although objective advantages are non-zero: no probed parameter got a "
                      "gradient (every completion token masked, clipped or outside the entropy mask, or the probed "
                      "parameters are not on the loss's graph)")
        else:
            batch.stats.gram, batch.stats.losses = gram, losses
            return
        batch.skip_reason = reason

    def _probe_gram(self, batch: _Batch, output: dict[str, Any]) -> None:
        """Extra pass over the local generation batch: per micro-batch one forward and one or two backwards."""
        probe = self._gram_probe_now()
        b = output["prompt_ids"].shape[0]
        size = self.args.per_device_train_batch_size
        chunks = max(1, math.ceil(b / size))
        probe.reset(chunks)
        # TRL divides each micro-batch's loss by the accumulation steps of its window; the probe's gradient is one
        # optimizer step's worth averaged over the generation batch: sum of micro-batch gradients × gas / spg.
        scale = self.current_gradient_accumulation_steps / self.args.steps_per_generation
        try:
            for c in range(chunks):
                sl = slice(c * size, (c + 1) * size)
                chunk = {key: (v[sl] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == b else v)
                         for key, v in output.items()}
                with self.compute_loss_context_manager(), probe.capture():
                    logps, entropies, _ = self._forward_logps(self.model, chunk)
                probe.accumulate(logps, self._policy_loss_fn(self.model, chunk, entropies), chunk["mo_advantages"],
                                 scale=scale)
                del logps, entropies
        except GramSkipped as skipped:
            batch.skip_reason = skipped.reason
            return
        self._finish_gram(batch, probe)

    # ------------------------------------------------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kw):
        if self._cached_forward is not None:  # the one-pass Gram already ran this exact forward
            out, self._cached_forward = self._cached_forward, None
        else:
            out = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kw
            )
        if self._capture_logps is not None and self._batch is not None:
            for i, logps in zip(self._capture_logps.tolist(), out[0].detach()):
                self._batch.old_logps[i] = logps
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.model.training and self._deferred is not None:
            batch, self._deferred = self._deferred, None
            t0 = time.perf_counter()
            probe = self._gram_probe_now()
            probe.reset(1)
            with probe.capture():
                forward = self._forward_logps(model, inputs)
            try:
                probe.accumulate(forward[0], self._policy_loss_fn(model, inputs, forward[1]), inputs["mo_advantages"],
                                 scale=self.current_gradient_accumulation_steps / self.args.steps_per_generation,
                                 retain_graph=True)
                self._finish_gram(batch, probe)
            except GramSkipped as skipped:
                batch.skip_reason = skipped.reason
            batch.timings["strategy"] += time.perf_counter() - t0
            self._weigh(batch)
            inputs["advantages"] = batch.advantages[inputs["mo_index"]]
            self._cached_forward = forward
        needs_old = "post_update" in getattr(self.strategy, "needs", ()) and inputs.get("old_per_token_logps") is None
        self._capture_logps = inputs["mo_index"] if (self.model.training and needs_old) else None
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._capture_logps = None
            self._cached_forward = None

    # ------------------------------------------------------------------------------------------------------------
    # after the update
    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _clipped_advantage_weights(self, batch: _Batch) -> np.ndarray:
        """CTWA's per-completion weight: token mean of Â·ρ where the PPO clip is inactive (0 where clipped).

        ρ = π_new/π_old after the update. One no-grad forward over the local batch; the old log-probs are TRL's
        ``old_per_token_logps`` when it computed them, else the ones captured during the update's own forward.
        """
        local = batch.local
        b = local["prompt_ids"].shape[0]
        idx = local["mo_index"]
        old = local.get("old_per_token_logps")
        if old is None:
            old = torch.stack([batch.old_logps[i] for i in idx.tolist()])
        size = self.args.per_device_train_batch_size
        weights = []
        for start in range(0, b, size):
            sl = slice(start, start + size)
            chunk = {key: local[key][sl] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
            new, _, _ = self._forward_logps(self.model, chunk)
            ratio = torch.exp(new - old[sl])
            adv = batch.advantages[idx[sl]].unsqueeze(1)
            clipped = ((ratio > 1 + self.epsilon_high) & (adv > 0)) | ((ratio < 1 - self.epsilon_low) & (adv < 0))
            mask = chunk["completion_mask"].float()
            contrib = adv * ratio * (~clipped).float() * mask
            weights.append(contrib.sum(1) / mask.sum(1).clamp(min=1.0))
        local_w = torch.cat(weights).float()
        return self.accelerator.gather(local_w).double().cpu().numpy()

    def _finish_step(self) -> None:
        """Runs once the generation batch's optimizer steps are done: after_update, logging, steps.jsonl."""
        batch, self._batch = self._batch, None
        if batch is None or batch.advantages is None:
            return
        t0 = time.perf_counter()
        batch.timings["update"] = t0 - batch.generated_at - batch.timings["strategy"]
        needs = self.strategy.needs
        clipped = self._clipped_advantage_weights(batch) if "post_update" in needs else None
        step_after = int(self.state.global_step)
        rl_step = self.rl_steps_done()
        if "validation" in needs and self._validator is not None and self.strategy.wants_validation_point(rl_step):
            batch.validation_point = self._validator.validation_point(step_after)
        finish_step(self.strategy, batch.record, clipped_advantage_weights=clipped,
                    validation_point=batch.validation_point, validation_step=step_after)
        batch.timings["strategy"] += time.perf_counter() - t0
        self._log_step(batch, step_after, rl_step)
        if self._evaluator is not None and self.args.mo_eval_steps and rl_step % self.args.mo_eval_steps == 0:
            self._evaluator.evaluate(step_after)

    def optimizer_steps_per_rl_step(self) -> float:
        """Optimizer steps one generation batch lasts (1 unless steps_per_generation/num_iterations say otherwise)."""
        return self.args.steps_per_generation * self.num_iterations / self.args.gradient_accumulation_steps

    def rl_steps_done(self) -> int:
        """Generation batches fully used so far (derived from ``global_step``, so it survives resume)."""
        return int(round(self.state.global_step / self.optimizer_steps_per_rl_step()))

    def _log_step(self, batch: _Batch, step: int, rl_step: int) -> None:
        names = self.objective_names
        means = batch.stats.objective_means
        cov = batch.covariance if batch.covariance is not None else np.full(len(names), np.nan)
        flags = self._interference_flags(cov, means)
        strategy_metrics = self.strategy.metrics()
        record = {
            "step": step,
            "rl_step": rl_step,
            "weights": dict(zip(names, batch.weights.tolist())),
            "rewards": dict(zip(names, means.tolist())),
            "advantage_scale": batch.advantage_scale,
            "lr_scale": batch.lr_scale,
            "covariance": dict(zip(names, cov.tolist())),
            "timings": dict(batch.timings),
            "lr": batch.stats.lr,
            "unscored": batch.unscored,
            "strategy": strategy_metrics,
        }
        if flags:
            record["traded_away"] = flags
        if batch.skip_reason:
            record["skip_reason"] = batch.skip_reason
        if self.accelerator.is_main_process:
            append_jsonl(self.run_dir / "steps.jsonl", record, fsync=False)  # synced at every checkpoint
        metrics = self._metrics["train"]
        for name, w, c in zip(names, batch.weights, cov):
            metrics[f"weights/{name}"].append(float(w))
            metrics[f"covariance/{name}"].append(float(c))
        metrics["advantage_scale"].append(batch.advantage_scale)
        metrics["lr_scale"].append(batch.lr_scale)
        for key, value in strategy_metrics.items():
            metrics[f"strategy/{key}"].append(float(value))
        for key, value in batch.timings.items():
            metrics[f"moalign_time/{key}"].append(float(value))

    def _interference_flags(self, cov: np.ndarray, means: np.ndarray) -> list[str]:
        """Objectives whose covariance stayed negative for ``interference_window`` steps while their score fell."""
        window = self.args.interference_window
        self._neg_cov_streak = np.where(np.nan_to_num(cov, nan=0.0) < 0, self._neg_cov_streak + 1, 0)
        self._reward_history.append(np.asarray(means, dtype=np.float64))
        self._reward_history = self._reward_history[-(window + 1):]
        flags = []
        if len(self._reward_history) > window:
            falling = self._reward_history[-1] < self._reward_history[0]
            for j, name in enumerate(self.objective_names):
                if self._neg_cov_streak[j] >= window and falling[j]:
                    flags.append(name)
                    logger.warning(
                        "objective %r is being traded away: its covariance with the advantage has been negative for "
                        "%d steps while its mean reward fell from %.3f to %.3f",
                        name, int(self._neg_cov_streak[j]), self._reward_history[0][j], self._reward_history[-1][j],
                    )
        return flags

    # ------------------------------------------------------------------------------------------------------------
    # state, checkpoints, resume
    # ------------------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _objectives_frozen(self):
        """Evaluation must not move objective state (e.g. the running mean length of conciseness)."""
        previous = [getattr(o, "training", None) for o in self.objectives]
        for o in self.objectives:
            if hasattr(o, "training"):
                o.training = False
        try:
            yield
        finally:
            for o, p in zip(self.objectives, previous):
                if p is not None:
                    o.training = p

    def moalign_state(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT_VERSION,
            "step": int(self.state.global_step),
            "objective_names": self.objective_names,
            "objective_params": self.objective_params,
            "strategy": {"name": self.strategy.name, "state": self.strategy.state_dict()},
            "objectives": {o.name: (o.state_dict() if hasattr(o, "state_dict") else {}) for o in self.objectives},
            "monitor": {
                "neg_cov_streak": self._neg_cov_streak.tolist(),
                "reward_history": [h.tolist() for h in self._reward_history],
            },
        }

    def load_moalign_state(self, state: dict[str, Any], source: str | Path | None = None) -> None:
        """Restore :meth:`moalign_state`; ``source`` (the state file) is named in every error."""
        try:
            self._load_moalign_state(state)
        except ValueError as exc:
            if source is None:
                raise
            raise ValueError(f"{source}: {exc}") from exc

    def _load_moalign_state(self, state: dict[str, Any]) -> None:
        if state.get("objective_names") != self.objective_names:
            raise ValueError(
                f"the checkpoint was trained with objectives {state.get('objective_names')}, but this run has "
                f"{self.objective_names}; resume with the same objectives, in the same order"
            )
        saved = state.get("objective_params")  # absent in checkpoints written before objectives had parameters
        if saved is not None and saved != self.objective_params:
            changed = "; ".join(f"{n}: {a} in the checkpoint, {b} now" for n, a, b in
                                zip(self.objective_names, saved, self.objective_params) if a != b)
            raise ValueError(
                f"the checkpoint was trained with other objective parameters ({changed}); resume with the same "
                "objectives entries, e.g. the run's config (run.json records them)"
            )
        if state["strategy"]["name"] != self.strategy.name:
            raise ValueError(
                f"the checkpoint was trained with strategy {state['strategy']['name']!r}, but this run uses "
                f"{self.strategy.name!r}; resume with the same strategy"
            )
        self.strategy.load_state_dict(state["strategy"]["state"])
        for o in self.objectives:
            if hasattr(o, "load_state_dict"):
                o.load_state_dict(state["objectives"].get(o.name, {}))
        monitor = state.get("monitor", {})
        self._neg_cov_streak = np.asarray(monitor.get("neg_cov_streak", self._neg_cov_streak), dtype=int)
        self._reward_history = [np.asarray(h) for h in monitor.get("reward_history", [])]

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_moalign_state(read_state_file(checkpoint), source=Path(checkpoint) / STATE_FILE)
            self._resumed_step = int(Path(checkpoint).name.rsplit("-", 1)[-1]) if "-" in Path(checkpoint).name else None

    def _default_tensorboard_dir(self) -> None:
        """TensorBoard logs go to ``<run_dir>/tensorboard`` unless $TENSORBOARD_LOGGING_DIR says otherwise
        (transformers' own default is ``./runs/<time>_<host>``, away from the run)."""
        from transformers.integrations import TensorBoardCallback

        for callback in self.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
                callback.logging_dir = str(self.run_dir / "tensorboard")

    def objectives_meta(self) -> list[dict[str, Any]]:
        """The objectives as ``run.json`` records them (what ``moalign report`` computes fronts from)."""
        return [{"name": o.name, "maximize": bool(getattr(o, "maximize", True)), "eval_metric": eval_metric_name(o),
                 "params": params} for o, params in zip(self.objectives, self.objective_params)]

    def write_run_json(self) -> None:
        if not self.accelerator.is_main_process:
            return
        config = {k: v for k, v in self.args.to_dict().items() if not k.startswith("_")}
        atomic_write_json(
            self.run_dir / "run.json",
            {
                "config": config,
                "objectives": self.objectives_meta(),
                "strategy": {"name": self.strategy.name, "repr": repr(self.strategy),
                             "needs": sorted(self.strategy.needs)},
                "advantage_estimator": self.args.advantage_estimator,
                "seed": self.args.seed,
                "pareto": {"space": "normalised", "reference_point": [0.0] * len(self.objectives),
                           "split": self._evaluator.split if self._evaluator is not None else None},
                "versions": package_versions(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **self.extra_run_info,
            },
        )


class _Evaluator:
    """Greedy evaluations during training: ``evals.jsonl`` lines and the hypervolume strategy's validation points."""

    def __init__(self, trainer: MOGRPOTrainer, dataset, split: str, size: int | None, live: bool = False):
        rows = [dict(r) for r in (dataset.select(range(min(size, len(dataset)))) if size else dataset)]
        self.trainer, self.rows, self.split = trainer, rows, split
        self._last: tuple[int, dict[str, Any]] | None = None
        # The reported split's evaluations also go to the report_to loggers, with the front so far (live_front.py).
        self.front = FrontTracker(trainer.objectives_meta(), trainer.max_completion_length, split) if live else None

    def evaluate(self, step: int) -> dict[str, Any]:
        """Greedy evaluation of the current policy. With several processes the main process evaluates and broadcasts
        the metrics (every rank gets the same validation point); with sharded parameters (FSDP, ZeRO-3), whose
        generation needs every rank, all ranks evaluate the same rows and the main process writes the line."""
        if self._last is not None and self._last[0] == step:
            return self._last[1]
        t = self.trainer
        acc = t.accelerator
        sharded = getattr(t, "is_fsdp_enabled", False) or (
            getattr(t, "is_deepspeed_enabled", False) and acc.state.deepspeed_plugin.zero_stage == 3)
        if acc.num_processes == 1 or sharded or acc.is_main_process:
            metrics = self._run()
        else:
            metrics = None
        if acc.num_processes > 1 and not sharded:
            from accelerate.utils import broadcast_object_list

            metrics = broadcast_object_list([metrics], from_process=0)[0]
        self._last = (step, metrics)
        if t.accelerator.is_main_process:
            append_jsonl(t.run_dir / "evals.jsonl", {"step": step, "split": self.split, "metrics": metrics},
                         fsync=False)  # synced at every checkpoint
            if self.front is not None:
                # transformers' Trainer.log, not GRPOTrainer.log, which would flush TRL's per-step metrics early;
                # its on_log clears control.should_log, which would drop TRL's own log of this step: keep it.
                should_log = t.control.should_log
                Trainer.log(t, self.front.add(step, metrics))
                t.control.should_log = should_log
        return metrics

    def _run(self) -> dict[str, Any]:
        from trl.models import unwrap_model_for_generation

        t = self.trainer
        with unwrap_model_for_generation(t.model_wrapped, t.accelerator) as model:
            metrics = evaluate_policy(
                model, t.processing_class, self.rows, t.objectives, max_new_tokens=t.max_completion_length,
                batch_size=max(t.args.per_device_eval_batch_size, 1), chat_template_kwargs=t.chat_template_kwargs,
            )
        for key in ("completions", "per_row"):
            metrics.pop(key)
        return metrics

    def validation_point(self, step: int) -> np.ndarray:
        return normalised_point(self.evaluate(step), self.trainer.objectives, self.trainer.max_completion_length)


class _FrontTableCallback(TrainerCallback):
    """At the end of training, the reported split's Pareto front goes to the loggers as a table."""

    def __init__(self, trainer: MOGRPOTrainer):
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        evaluator = self.trainer._evaluator
        if evaluator is not None and evaluator.front is not None:
            log_front_table(self.trainer, *evaluator.front.front_table())


class _MOCallback(TrainerCallback):
    """Hooks the trainer into the HF training loop at train begin/step end."""

    def __init__(self, trainer: MOGRPOTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        t.run_dir.mkdir(parents=True, exist_ok=True)
        if t._resumed_step is not None and t.accelerator.is_main_process:
            # A resumed run continues the files: drop what the killed run wrote after its checkpoint.
            for name in ("steps.jsonl", "evals.jsonl"):
                truncate_jsonl(t.run_dir / name, max_step=t._resumed_step)
            if t._evaluator is not None and t._evaluator.front is not None:
                t._evaluator.front.restore(read_jsonl(t.run_dir / "evals.jsonl"))
        elif t.accelerator.is_main_process:
            for old in set_aside_old_logs(t.run_dir):
                logger.warning("%s already held a run's logs; kept them as %s (pass resume_from_checkpoint to "
                               "continue that run instead)", t.run_dir, old.name)
        t.write_run_json()
        if state.global_step == 0:
            if t._evaluator is not None:
                t._evaluator.evaluate(0)
            if "validation" in t.strategy.needs and t._validator is not None:
                # The initial policy's point: the hypervolume reference point (docs/design.md, Reference facts).
                t.strategy.set_reference_point(t._validator.validation_point(0), step=0)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        """Applies the strategy's learning-rate multiplier to this optimizer step only (e.g. hypervolume's r_pareto:
        the update of Adam-type optimizers is proportional to the learning rate, so nothing normalises it away)."""
        t = self.trainer
        scale = float(t.strategy.lr_scale())
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"strategy {t.strategy.name!r} returned lr_scale={scale}; it must be finite and >= 0")
        if t._batch is not None:
            t._batch.lr_scale = scale
        self._saved_lrs = None
        if scale != 1.0 and optimizer is not None:
            self._saved_lrs = [group["lr"] for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * scale

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if getattr(self, "_saved_lrs", None) is not None and optimizer is not None:
            for group, lr in zip(optimizer.param_groups, self._saved_lrs):
                group["lr"] = lr  # the scheduler keeps its own schedule
        self._saved_lrs = None

    def on_save(self, args, state, control, **kwargs):
        """Right after TRL saved ``checkpoint-N``: the strategy and objective state, written last (a checkpoint
        without it is incomplete and skipped on resume)."""
        t = self.trainer
        if args.should_save:
            for name in ("steps.jsonl", "evals.jsonl"):  # every line up to this checkpoint is on disk before it
                sync_file(t.run_dir / name)
            folder = Path(t._get_output_dir(trial=getattr(t, "_trial", None))) / f"checkpoint-{state.global_step}"
            atomic_write_json(folder / STATE_FILE, t.moalign_state())

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        generate_every = t.args.steps_per_generation * t.num_iterations
        if t._step % generate_every == 0:
            t._finish_step()


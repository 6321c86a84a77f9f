"""Multi-objective GRPO/RLOO/REINFORCE++ on TRL's ``GRPOTrainer``: the TRL adapter of the step engine.

:class:`MOGRPOTrainer` hands every RL step (one generation batch) to a :class:`~moalign.rl.engine.StepEngine`
(estimator, strategy, interference monitor, step record, state) and only moves tensors between TRL and it:

1. ``_calculate_rewards``: the gathered ``(N, K)`` per-objective rewards (objectives guarded per sample,
   :class:`~moalign.scoring.GuardedObjective`) go to ``engine.begin``, which computes the per-objective advantages;
2. the Gram slot: when the strategy needs it, the per-objective gradient Gram of TRL's own loss
   (:class:`~moalign.rl.gram.GramProbe`, in the update's forward when a generation batch is one micro-batch, else in
   an extra pass); ``engine.weigh`` returns the scalar advantages that TRL's loss then uses;
3. callbacks: the strategy's learning-rate multiplier on each optimizer step, ``engine.finish`` after the update
   (CTWA's post-update statistics, validation points), logs (``steps.jsonl``, TRL's logger), and the engine's state in
   every checkpoint (``moalign_state.json``), restored on ``resume_from_checkpoint``.

Every other TRL feature works as in TRL. The config is :class:`~moalign.mo_config.MOGRPOConfig` (re-exported here).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from . import weighting
from .evaluation import eval_metric_name
from .mo_config import DEFAULT_OBJECTIVES, MOGRPOConfig, check_objective_params, resolve_objectives
from .objectives import RewardModelObjective, objective_spec_json, prepare_reward_models
from .precision import choose_for_model
from .rl.engine import StepEngine
from .rl.gram import GramProbe, gram_setup_problem, select_parameters
from .rl.post_update import batch_clipped_advantage_weights
from .rl.step import StepRecord, StepSkipped
from .rundir import (
    STATE_FILE,
    STATE_FORMAT_VERSION,
    append_jsonl,
    atomic_write_json,
    read_jsonl,
    read_state_file,
    run_json,
    start_logs,
    sync_file,
)
from .scoring import GuardedObjective, objectives_frozen, report_unscored
from .trainer_eval import FrontTableCallback, TrainingEvaluator, default_tensorboard_dir

__all__ = ["DEFAULT_OBJECTIVES", "MOGRPOConfig", "MOGRPOTrainer"]

logger = logging.getLogger(__name__)


@dataclass
class _Batch:
    """What the trainer keeps about the current generation batch between generation and the end of the update."""

    rewards: torch.Tensor  # (N, K) gathered
    process_slice: slice
    local: dict[str, Any]  # the local (unshuffled) generation batch
    advantages: torch.Tensor | None = None  # (N,) final scalar advantages (on the rewards' device)
    gram: Callable | None = None  # the Gram slot handed to engine.weigh for this batch
    old_logps: dict[int, torch.Tensor] = field(default_factory=dict)  # gathered index -> (T,) pre-update logps
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unscored: dict[str, int] = field(default_factory=dict)
    generated_at: float = 0.0
    record: StepRecord | None = None  # what the engine decided (engine.weigh)


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
        engine: a :class:`~moalign.rl.engine.StepEngine` for these objectives (``moalign train`` builds it before
            the model); default: built from ``args`` (and ``strategy``).
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
        engine: StepEngine | None = None,
        callbacks=None,
        peft_config=None,
        eval_split_name: str = "eval",
        **kwargs,
    ):
        if not isinstance(args, MOGRPOConfig):
            raise ValueError(f"args must be a MOGRPOConfig, got {type(args).__name__}; build one with MOGRPOConfig(...)")
        # objective_params: each config entry's parameters ({name: conciseness, max_tokens: 512}), for run.json and
        # checkpoints; None for an objective passed as an object.
        # Reward models in `objectives` (paths, ids, model objects, {model: ..., heads: [...]}) come with one
        # tokenizer per entry, as TRL's reward_processing_classes; they are loaded and placed after TRL's __init__.
        reward_processing_classes = kwargs.pop("reward_processing_classes", None)
        entries = objectives
        objectives, self.objective_params = resolve_objectives(args, objectives, reward_processing_classes)
        self.objectives, self.objective_names = objectives, [o.name for o in objectives]
        self._guards = [GuardedObjective(o) for o in objectives]
        self._reward_signs = torch.tensor([1.0 if getattr(o, "maximize", True) else -1.0 for o in objectives])
        if args.objectives is None:  # run.json and `moalign eval` rebuild the objectives from these entries
            args.objectives = ([objective_spec_json(e) for e in entries] if entries is not None
                               else list(self.objective_names))
        if engine is None:  # the one place the strategy is built (unless it was handed in)
            engine = StepEngine.from_config(args, self.objective_names, strategy=strategy)
        elif strategy is not None:
            raise ValueError("pass either strategy= or engine= (the engine holds its strategy), not both")
        elif engine.objective_names != self.objective_names:
            raise ValueError(f"the engine was built for objectives {engine.objective_names}, but this trainer has "
                             f"{self.objective_names}; build it with StepEngine.from_config(args, objective_names)")
        self.engine = engine
        self.run_dir = Path(args.run_dir or args.output_dir)
        if isinstance(model, str):  # a known short name (moalign.models.KNOWN_MODELS) -> its local directory
            from .models import resolve_model

            model = resolve_model(model)
        choose_for_model(args, model)  # bf16 on a CPU with bf16 hardware pays only for large enough models

        super().__init__(model=model, reward_funcs=self._guards, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks,
                         peft_config=peft_config, **kwargs)
        self._prepare_reward_models(model)
        # TRL validates reward_weights against reward_funcs; we drive them ourselves each step.
        self.reward_weights = torch.tensor(self.strategy.weights(), dtype=torch.float32)
        # The engine does the aggregation; TRL still computes advantages of its own, which moalign replaces, and knows
        # only its two aggregations, so mo_grpo reaches TRL as the GDPO it differs from by one scale per step.
        if args.multi_objective_aggregation == "mo_grpo":
            self.multi_objective_aggregation = "normalize_then_sum"

        needs = self.engine.needs
        self._gram_probe: GramProbe | None = None  # built on the wrapped model at the first step (_gram_probe_now)
        self._gram_wanted = self.engine.wants_gram
        if self._gram_wanted:
            self._check_gram_setup()
            select_parameters(self.model, args.gram_layers, args.gram_param_regex)  # bad selections fail here
        # One forward for the Gram and the update when each rank's generation batch is a single micro-batch.
        self._gram_one_pass = (self._gram_wanted and args.steps_per_generation == 1 and self.num_iterations == 1
                               and args.gradient_accumulation_steps == 1)
        self._batch: _Batch | None = None
        self._deferred: _Batch | None = None
        self._cached_forward = None
        self._capture_logps: torch.Tensor | None = None  # gathered indices of the micro-batch being forwarded
        self._last_rewards: torch.Tensor | None = None
        self._evaluator = None
        if eval_dataset is not None and (args.mo_eval_steps > 0 or ("validation" in needs and validation_dataset is None)):
            eval_split = eval_dataset if not isinstance(eval_dataset, dict) else next(iter(eval_dataset.values()))
            self._evaluator = TrainingEvaluator(self, eval_split, eval_split_name, args.mo_eval_size, live=True)
        # Validation points (hypervolume strategy) come from their own split when one is given, as in the paper
        # (Math500 val for the meta-reward, test for reporting), so the reported split never steers training.
        self._validator = self._evaluator
        if "validation" in needs and validation_dataset is not None:
            self._validator = TrainingEvaluator(self, validation_dataset, "val", args.mo_validation_size)
        if "validation" in needs and self._validator is None:
            raise ValueError(
                f"strategy {self.strategy.name!r} takes its Pareto points from greedy validation evaluations, but no "
                "eval_dataset or validation_dataset was given; pass one (e.g. dataset_eval_split: val) or set "
                "strategy_params.point_source: train_batch"
            )
        self._resumed_step: int | None = None
        self.extra_run_info: dict[str, Any] = {}  # e.g. {"data": ..., "model": ...} from `moalign train`
        self.add_callback(_MOCallback(self))
        default_tensorboard_dir(self)
        # First in line, so the front table reaches the loggers before their own on_train_end closes them.
        self.callback_handler.callbacks.insert(0, FrontTableCallback(self))

    def _prepare_reward_models(self, model) -> None:
        """Reward-model objectives: loaded, checked (one row scored) and placed as TRL places ``reward_funcs``
        models: on this rank's device, in the policy's dtype, through ``prepare_deepspeed`` under DeepSpeed and
        ``accelerator.prepare_model(evaluation_mode=True)`` otherwise. Each rank scores its own completions."""
        if not any(isinstance(o, RewardModelObjective) for o in self.objectives):
            return
        offloaded = [o.name for o in self.objectives if isinstance(o, RewardModelObjective) and o.reward_model.offload]
        if offloaded and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            raise ValueError(f"objective(s) {offloaded} set offload: true, which moves the reward model between CPU "
                             "and device itself; under DeepSpeed or FSDP the model is sharded by them: drop offload "
                             "(use DeepSpeed's own parameter offload instead)")
        if self.is_deepspeed_enabled:
            from trl.models import prepare_deepspeed

            def place(rm):
                return prepare_deepspeed(rm, self.accelerator)
        else:
            def place(rm):
                return self.accelerator.prepare_model(rm, evaluation_mode=True, device_placement=True)
        policy = self.accelerator.unwrap_model(self.model)
        dtype = next(policy.parameters()).dtype
        prepare_reward_models(self.objectives, self.accelerator.device, dtype, place,
                              trust_remote_code=bool(self.args.trust_remote_code),
                              chat_template_kwargs=self.chat_template_kwargs)

    @property
    def strategy(self) -> weighting.WeightingStrategy:
        """The engine's weighting strategy."""
        return self.engine.strategy

    # -- rewards and advantages ----------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards = rewards
        return rewards

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            with objectives_frozen(self.objectives):
                return super()._generate_and_score_completions(inputs)

        start = time.perf_counter()
        for g in self._guards:
            g.unscored, g.errors = 0, []
        self.reward_weights = torch.tensor(self.strategy.weights(), dtype=torch.float32)
        output = super()._generate_and_score_completions(inputs)
        t_generate = time.perf_counter() - start

        # (N, K) gathered over ranks; an objective with maximize=False (a reward-model head such as verbosity) enters
        # the engine negated, so that every estimator and strategy maximises all K rewards.
        rewards = self._last_rewards.float() * self._reward_signs.to(self._last_rewards.device)
        n = rewards.shape[0]
        local_n = output["prompt_ids"].shape[0]
        process_slice = slice(self.accelerator.process_index * local_n, (self.accelerator.process_index + 1) * local_n)
        step = int(self.state.global_step)
        mo_adv = self.engine.begin(rewards, num_generations=self.num_generations, step=step, lr=self._current_lr())
        output["mo_index"] = torch.arange(n, device=rewards.device)[process_slice]
        output["mo_advantages"] = mo_adv[process_slice].to(rewards.device)

        batch = _Batch(rewards=rewards, process_slice=process_slice, local=dict(output))
        batch.timings["generate"] = t_generate
        batch.generated_at = time.perf_counter()
        # Each rank scores its own completions: sum the counts so they match the gathered N.
        counts = torch.tensor([g.unscored for g in self._guards], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        batch.unscored = report_unscored(self._guards, counts.tolist(), n, step, warn=self.accelerator.is_main_process)
        self._batch = batch

        if self._gram_wanted and self._gram_one_pass:
            self._deferred = batch  # the Gram comes from the update's own forward, in compute_loss
            output["advantages"] = torch.zeros(local_n, device=rewards.device)
            return output
        if self._gram_wanted:
            batch.gram = lambda adv: self._probe_gram(output, adv[process_slice].to(rewards.device))
        self._weigh(batch)
        output["advantages"] = batch.advantages[process_slice]
        return output

    def _current_lr(self) -> float:
        if getattr(self, "lr_scheduler", None) is not None:
            with contextlib.suppress(Exception):
                return float(self.lr_scheduler.get_last_lr()[0])
        return float(self.args.learning_rate)

    def _weigh(self, batch: _Batch) -> None:
        """The engine weighs the step begun in ``_generate_and_score_completions`` (asking ``batch.gram`` when the
        strategy needs the Gram) and hands back the scalar advantages."""
        t0 = time.perf_counter()
        adv = self.engine.weigh(batch.gram)
        record = batch.record = self.engine.record
        if record.skip_reason is not None:
            logger.warning("step %d: strategy %r kept its previous weights (%s)", record.step, self.strategy.name,
                           record.skip_reason)
        batch.advantages = adv.to(batch.rewards.device)
        self.reward_weights = torch.tensor(record.weights, dtype=torch.float32)
        batch.timings["strategy"] += time.perf_counter() - t0

    # -- per-objective gradient statistics -----------------------------------------------------------------------------
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
            self._gram_probe = GramProbe(model, params, len(self.objective_names), all_reduce=reduce,
                                         keep_activations=self.args.gram_keep_activations)
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

    def _finish_gram(self, probe: GramProbe, advantages: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The all-reduced ``(gram, losses)``, or :class:`StepSkipped` with the true reason."""
        gram, losses = probe.finish(self.accelerator.device)
        gram, losses = gram.numpy(), losses.numpy()
        if not np.all(np.isfinite(gram)):
            raise StepSkipped("non-finite Gram matrix (NaN/inf in the per-objective gradients of the probed parameters)")
        if not gram.any() and bool(advantages.any()):
            raise StepSkipped(
                "all-zero Gram matrix although objective advantages are non-zero: no probed parameter got a gradient "
                "(every completion token masked, clipped or outside the entropy mask, or the probed parameters are not "
                "on the loss's graph)")
        return gram, losses

    def _probe_gram(self, output: dict[str, Any], advantages: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The Gram slot when a generation batch spans several micro-batches: an extra pass over the local batch
        (``advantages``: its ``(b, K)`` per-objective advantages), per micro-batch one forward and one or two
        backwards."""
        probe = self._gram_probe_now()
        b = output["prompt_ids"].shape[0]
        size = self.args.per_device_train_batch_size
        chunks = max(1, math.ceil(b / size))
        probe.reset(chunks)
        # TRL divides each micro-batch's loss by the accumulation steps of its window; the probe's gradient is one
        # optimizer step's worth averaged over the generation batch: sum of micro-batch gradients × gas / spg.
        scale = self.current_gradient_accumulation_steps / self.args.steps_per_generation
        for c in range(chunks):
            sl = slice(c * size, (c + 1) * size)
            chunk = {key: (v[sl] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == b else v)
                     for key, v in output.items()}
            with self.compute_loss_context_manager(), probe.capture():
                logps, entropies, _ = self._forward_logps(self.model, chunk)
            probe.accumulate(logps, self._policy_loss_fn(self.model, chunk, entropies), advantages[sl], scale=scale)
            del logps, entropies
        return self._finish_gram(probe, advantages)

    # -- loss ----------------------------------------------------------------------------------------------------------
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
            # One pass: the Gram slot uses the update's own forward (kept for TRL's loss below).
            batch, self._deferred = self._deferred, None
            t0 = time.perf_counter()
            probe = self._gram_probe_now()
            probe.reset(1)
            with probe.capture():
                forward = self._forward_logps(model, inputs)
            batch.timings["strategy"] += time.perf_counter() - t0

            def gram(advantages):
                probe.accumulate(forward[0], self._policy_loss_fn(model, inputs, forward[1]),
                                 advantages.to(forward[0].device)[inputs["mo_index"]],
                                 scale=self.current_gradient_accumulation_steps / self.args.steps_per_generation,
                                 retain_graph=True)
                return self._finish_gram(probe, advantages)

            batch.gram = gram
            self._weigh(batch)
            inputs["advantages"] = batch.advantages[inputs["mo_index"]]
            self._cached_forward = forward
        needs_old = "post_update" in self.engine.needs and inputs.get("old_per_token_logps") is None
        self._capture_logps = inputs["mo_index"] if (self.model.training and needs_old) else None
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._capture_logps = None
            self._cached_forward = None

    # -- after the update ----------------------------------------------------------------------------------------------
    def _clipped_advantage_weights(self, batch: _Batch) -> np.ndarray:
        """CTWA's per-completion weights over the local batch, gathered; the old log-probs are TRL's
        ``old_per_token_logps`` when it computed them, else the ones captured during the update's own forward."""
        local, idx = batch.local, batch.local["mo_index"]
        old = local.get("old_per_token_logps")
        old = torch.stack([batch.old_logps[i] for i in idx.tolist()]) if old is None else old
        weights = batch_clipped_advantage_weights(
            local, old, batch.advantages[idx], lambda chunk: self._forward_logps(self.model, chunk)[0],
            self.args.per_device_train_batch_size, self.epsilon_low, self.epsilon_high)
        return self.accelerator.gather(weights.float()).double().cpu().numpy()

    def _finish_step(self) -> None:
        """Runs once the generation batch's optimizer steps are done: engine.finish, logging, steps.jsonl."""
        batch, self._batch = self._batch, None
        if batch is None or batch.advantages is None:
            return
        t0 = time.perf_counter()
        batch.timings["update"] = t0 - batch.generated_at - batch.timings["strategy"]
        clipped = self._clipped_advantage_weights(batch) if "post_update" in self.engine.needs else None
        step_after = int(self.state.global_step)
        rl_step = self.rl_steps_done()
        point = None
        if self._validator is not None and self.engine.wants_validation_point(rl_step):
            point = self._validator.validation_point(step_after)
        record = self.engine.finish(clipped_advantage_weights=clipped, validation_point=point,
                                    validation_step=step_after)
        batch.timings["strategy"] += time.perf_counter() - t0
        if self.accelerator.is_main_process:
            line = self.engine.log_line(record, step=step_after, rl_step=rl_step, timings=batch.timings,
                                        unscored=batch.unscored)
            append_jsonl(self.run_dir / "steps.jsonl", line, fsync=False)  # synced at every checkpoint
        metrics = self._metrics["train"]
        for key, value in self.engine.metrics(record).items():
            metrics[key].append(value)
        for key, value in batch.timings.items():
            metrics[f"moalign_time/{key}"].append(float(value))
        if self._evaluator is not None and self.args.mo_eval_steps and rl_step % self.args.mo_eval_steps == 0:
            self._evaluator.evaluate(step_after)

    def optimizer_steps_per_rl_step(self) -> float:
        """Optimizer steps one generation batch lasts (1 unless steps_per_generation/num_iterations say otherwise)."""
        return self.args.steps_per_generation * self.num_iterations / self.args.gradient_accumulation_steps

    def rl_steps_done(self) -> int:
        """Generation batches fully used so far (derived from ``global_step``, so it survives resume)."""
        return int(round(self.state.global_step / self.optimizer_steps_per_rl_step()))

    # -- state, checkpoints, resume ------------------------------------------------------------------------------------
    def moalign_state(self) -> dict[str, Any]:
        """``moalign_state.json``: the engine's state (objective names, strategy, monitor) plus the objectives'."""
        engine = self.engine.state_dict()
        return {
            "format_version": STATE_FORMAT_VERSION,
            "step": int(self.state.global_step),
            "objective_names": engine["objective_names"],
            "objective_params": self.objective_params,
            "strategy": engine["strategy"],
            "objectives": {o.name: (o.state_dict() if hasattr(o, "state_dict") else {}) for o in self.objectives},
            "monitor": engine["monitor"],
        }

    def load_moalign_state(self, state: dict[str, Any], source: str | Path | None = None) -> None:
        """Restore :meth:`moalign_state`; ``source`` (the state file) is named in every error."""
        try:
            check_objective_params(state, self.objective_names, self.objective_params)
            self.engine.load_state_dict(state)
            for o in self.objectives:
                if hasattr(o, "load_state_dict"):
                    o.load_state_dict(state["objectives"].get(o.name, {}))
        except ValueError as exc:
            if source is None:
                raise
            raise ValueError(f"{source}: {exc}") from exc

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_moalign_state(read_state_file(checkpoint), source=Path(checkpoint) / STATE_FILE)
            self._resumed_step = int(Path(checkpoint).name.rsplit("-", 1)[-1]) if "-" in Path(checkpoint).name else None

    def objectives_meta(self) -> list[dict[str, Any]]:
        """The objectives as ``run.json`` records them (what ``moalign report`` computes fronts from)."""
        meta = []
        for o, params in zip(self.objectives, self.objective_params):
            entry = {"name": o.name, "maximize": bool(getattr(o, "maximize", True)), "eval_metric": eval_metric_name(o),
                     "params": params}
            if isinstance(o, RewardModelObjective):  # its affine map into the normalised space (docs/objectives.md)
                entry["range"], entry["range_source"] = o.score_range, o.range_source
            meta.append(entry)
        return meta

    def write_run_json(self) -> None:
        if self.accelerator.is_main_process:
            config = {k: v for k, v in self.args.to_dict().items() if not k.startswith("_")}
            split = self._evaluator.split if self._evaluator is not None else None
            record = {"config": config, "objectives": self.objectives_meta(), **self.engine.run_info(),
                      "seed": self.args.seed, "pareto": {"space": "normalised", "split": split,
                                                         "reference_point": [0.0] * len(self.objectives)}}
            precision = getattr(self.args, "precision", None)  # None: args unpickled from before moalign.precision
            if precision is not None:
                record["precision"] = precision.record()
            atomic_write_json(self.run_dir / "run.json", run_json(record, self.extra_run_info))


class _MOCallback(TrainerCallback):
    """Hooks the trainer into the HF training loop at train begin/step end."""

    def __init__(self, trainer: MOGRPOTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        t.run_dir.mkdir(parents=True, exist_ok=True)
        if t.accelerator.is_main_process:
            start_logs(t.run_dir, t._resumed_step)
            if t._resumed_step is not None and t._evaluator is not None and t._evaluator.front is not None:
                # the objectives' state (a reward model's frozen range) is loaded now, after the tracker was built
                t._evaluator.front.objectives_meta = t.objectives_meta()
                t._evaluator.front.restore(read_jsonl(t.run_dir / "evals.jsonl"))
        t.write_run_json()
        if state.global_step == 0:
            if t._evaluator is not None:
                t._evaluator.evaluate(0)
            if "validation" in t.engine.needs and t._validator is not None:
                # The initial policy's point: the hypervolume reference point (docs/design.md, Reference facts).
                t.engine.set_reference_point(t._validator.validation_point(0), step=0)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        """Applies the strategy's learning-rate multiplier to this optimizer step only (e.g. hypervolume's r_pareto:
        the update of Adam-type optimizers is proportional to the learning rate, so nothing normalises it away)."""
        scale = self.trainer.engine.lr_scale()  # also recorded in the step's record
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


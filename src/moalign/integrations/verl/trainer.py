"""The v1 trainer ``moalign`` (``trainer.v1.trainer_mode=moalign``), registered with verl's ``register_trainer``.

It is verl's synchronous trainer (``PPOTrainerSync``) with five hooks, each calling the parent first or around it:

* ``__init__``: builds the session (objectives, step engine, strategy) once; a strategy that needs per-objective
  gradients is refused here, before any model is loaded.
* ``_compute_advantage``: reads each response's ``reward_extra_info`` (the objectives' scores from the reward
  workers) and response length from verl's TransferQueue, forms the ``(N, K)`` rewards and stages them for the
  ``moalign`` estimator that verl's ``compute_advantage`` calls next (the engine weighs them there); logs the step's
  weights, reward means, covariances and strategy metrics through the metrics dict verl hands its logger.
* ``_update_actor``: after verl's update, the engine's ``finish`` (the strategy's ``after_update``, the interference
  monitor), then the refreshed metrics; for strategies that need post-update statistics (CTWA) one extra no-grad
  log-prob pass of the updated actor on the same batch, through the actor worker group's ``compute_log_prob``, as
  in the CTWA authors' verl code.
* ``_val_metrics_update``: the validation pass's per-response columns become the policy's normalised point
  (the reference point at step 0, later the hypervolume strategy's next point).
* ``_save_checkpoint`` / ``_load_checkpoint``: ``moalign_state.json`` beside verl's ``actor/`` and ``data.pt``.

With ``trainer.device=cpu`` it also swaps in the CPU actor worker of :mod:`.cpu` (``_init_resource_pool_mgr``).
"""

from __future__ import annotations

import os

import numpy as np
import transfer_queue as tq
from verl import DataProto
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.utils.padding import response_from_nested

from .estimator import NAME as ESTIMATOR_NAME
from .session import MOConfig, MOSession, clipped_advantage_weights, set_session

__all__ = ["NAME", "MOPPOTrainer"]

NAME = "moalign"


def session_from_config(config) -> MOSession:
    """The session for a full verl config: ``algorithm.moalign`` plus the rollout's response length."""
    block = config.algorithm.get("moalign", None)
    mo = MOConfig.from_mapping(block)
    if mo.max_response_length is None:
        mo.max_response_length = int(config.actor_rollout_ref.rollout.response_length)
    if config.algorithm.adv_estimator != ESTIMATOR_NAME:
        raise ValueError(f"trainer.v1.trainer_mode=moalign needs algorithm.adv_estimator={ESTIMATOR_NAME}, but it is "
                         f"{config.algorithm.adv_estimator!r}")
    return MOSession(mo)


class MOPPOTrainer(PPOTrainerSync):
    """verl's synchronous v1 trainer with moalign's multi-objective weighting (module docstring)."""

    def __init__(self, config):
        self.mo_session = session_from_config(config)
        set_session(self.mo_session)
        super().__init__(config)

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        if self.config.trainer.device == "cpu":  # verl's workers would ask torch for a "cpu:gloo,cpu:gloo" group
            from .cpu import use_cpu_workers

            use_cpu_workers(self.role_worker_mapping)

    def _compute_advantage(self, batch, metrics):
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["uid", "extra_fields", "response_mask"])
        # pop, not [...]: indexing a non-tensor field gives tensordict's LinkedList, pop its NonTensorStack
        uids = np.array(data.pop("uid").tolist(), dtype=object)
        infos = [(e or {}).get("reward_extra_info", {}) or {} for e in data.pop("extra_fields").tolist()]
        columns = {name: [info.get(name) for info in infos] for name in self.mo_session.names}
        lengths = [int(row.sum()) for row in data["response_mask"].unbind(0)]
        self.mo_session.stage(self.mo_session.rewards_from_columns(columns, lengths), uids)
        batch = super()._compute_advantage(batch, metrics)
        metrics.update(self.mo_session.metrics())
        return batch

    def _update_actor(self, batch, metrics):
        batch = super()._update_actor(batch, metrics)
        clipped = self._clipped_advantage_weights(batch) if "post_update" in self.mo_session.needs else None
        self.mo_session.finish_step(clipped)
        metrics.update(self.mo_session.metrics())  # after after_update: the strategy's and the monitor's new values
        return batch

    def _clipped_advantage_weights(self, batch) -> np.ndarray:
        """CTWA's per-response weight from one no-grad log-prob pass of the updated actor (batch row order)."""
        batch.extra_info.update({"calculate_entropy": False, "compute_loss": False,
                                 "temperature": self.config.actor_rollout_ref.rollout.temperature})
        self.actor_rollout_wg.compute_log_prob(batch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["log_probs", "old_log_probs", "advantages", "response_mask"])
        data["new_log_probs"] = response_from_nested(data.pop("log_probs"), data["response_mask"])
        padded = DataProto(batch=data.to_padded_tensor()).batch
        actor = self.config.actor_rollout_ref.actor
        low = actor.get("clip_ratio_low", None) or actor.clip_ratio
        high = actor.get("clip_ratio_high", None) or actor.clip_ratio
        return clipped_advantage_weights(padded["new_log_probs"], padded["old_log_probs"], padded["advantages"],
                                         padded["response_mask"], float(low), float(high))

    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns, *args, **kwargs):
        metrics = super()._val_metrics_update(data_sources, sample_uids, reward_extra_infos_dict, sample_turns,
                                              *args, **kwargs)
        point = self.mo_session.observe_validation(reward_extra_infos_dict, self.global_steps)
        if point is not None:
            metrics.update({f"moalign/validation_point/{n}": float(v) for n, v in zip(self.mo_session.names, point)})
        return metrics

    def _checkpoint_folder(self) -> str:
        if self.config.trainer.resume_mode == "resume_path":
            folder = self.config.trainer.resume_from_path
        else:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        return os.path.abspath(folder)

    def _save_checkpoint(self):
        super()._save_checkpoint()
        self.mo_session.save(os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"))

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps > 0:
            self.mo_session.load(self._checkpoint_folder())


def register() -> None:
    """Register the trainer (idempotent)."""
    if TRAINER_REGISTRY.get(NAME) is not MOPPOTrainer:
        register_trainer(NAME)(MOPPOTrainer)

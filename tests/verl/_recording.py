"""A test-only verl trainer, ``moalign_recording``: the moalign trainer, plus one line per step in
``$MOALIGN_VERL_RECORD`` with the batch's rewards ``(N, K)``, the advantages the run wrote to verl's TransferQueue,
and verl's own GDPO advantages on the same batch (``compute_advantage(..., "gdpo")`` with the run's fixed weights).

verl 0.9.1 cannot run GDPO itself under its v1 trainer (its ``_compute_advantage`` gives the estimator ``uid`` only,
and GDPO asserts on the missing reward columns), so "the run's advantages equal verl's GDPO run" is checked on the
batches of the run. Loaded in the Ray task runner through ``VERL_USE_EXTERNAL_MODULES`` (tests/verl/_cpu_run.py).
"""

from __future__ import annotations

import json
import os

import numpy as np
import transfer_queue as tq
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer

from moalign.integrations.verl.trainer import MOPPOTrainer

NAME = "moalign_recording"


class RecordingTrainer(MOPPOTrainer):
    def _compute_advantage(self, batch, metrics):
        staged = {}
        stage = self.mo_session.stage
        self.mo_session.stage = lambda rewards, uids: (staged.update(rewards=rewards, uids=uids), stage(rewards, uids))
        try:
            batch = super()._compute_advantage(batch, metrics)
        finally:
            self.mo_session.stage = stage
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["advantages", "response_mask"])
        padded = DataProto(batch=data.to_padded_tensor()).batch
        lengths = padded["response_mask"].sum(-1).numpy()
        ours = padded["advantages"][:, 0].double().numpy()  # constant over each response's tokens
        record = {"step": self.global_steps, "rewards": staged["rewards"].tolist(), "uids": list(map(str, staged["uids"])),
                  "lengths": lengths.tolist(), "advantages": ours.tolist()}
        params = self.mo_session.config.strategy_params
        if self.mo_session.config.strategy == "fixed" and "weights" in params:
            from _batches import legacy_batch

            config = OmegaConf.create({"gdpo_reward_keys": self.mo_session.names,
                                       "gdpo_reward_weights": list(params["weights"]),
                                       "norm_adv_by_std_in_grpo": True})
            gdpo = compute_advantage(legacy_batch(staged["rewards"], staged["uids"], lengths, self.mo_session.names),
                                     "gdpo", config=config).batch["advantages"]
            record["gdpo_advantages"] = gdpo[:, 0].double().numpy().tolist()
        with open(os.environ["MOALIGN_VERL_RECORD"], "a") as f:
            f.write(json.dumps(record) + "\n")
        return batch


if TRAINER_REGISTRY.get(NAME) is not RecordingTrainer:
    register_trainer(NAME)(RecordingTrainer)

"""The ``verl.plugins`` entry point: verl imports this module at the end of ``import verl``, in every process
(driver, Ray workers), and the module registers the plugin's names with verl's registries:

* advantage estimator ``moalign`` (``algorithm.adv_estimator=moalign``),
* reward manager ``moalign`` (``reward.reward_manager.name=moalign``),
* v1 trainer ``moalign`` (``trainer.v1.trainer_mode=moalign``),
* rollout ``hf`` (``actor_rollout_ref.rollout.name=hf``, Hugging Face ``generate``: :mod:`.hf_rollout`);

and it makes verl's FSDP model build work next to TRL 1.16 (:mod:`.compat`).

verl swallows a plugin's import error into a debug log line, so a failure here is logged as a warning as well.
``VERL_USE_EXTERNAL_PLUGINS=none`` (verl's switch) turns every plugin off.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

HF_ROLLOUT = "hf"


def register_all() -> None:
    """Register the estimator, the reward manager and the trainer with verl (idempotent)."""
    from . import compat, estimator, manager, trainer

    compat.narrow_trl_check()  # before anything builds a model: TRL 1.16 lacks the class verl imports
    estimator.register()
    manager.register()
    trainer.register()
    register_hf_rollout()


def register_hf_rollout() -> None:
    """``actor_rollout_ref.rollout.name=hf`` (:mod:`.hf_rollout`), registered by name: this module must not import
    it (see its docstring)."""
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(HF_ROLLOUT, _hf_replica)
    base._ROLLOUT_REGISTRY[(HF_ROLLOUT, "async")] = f"{__package__}.hf_rollout.HFServerAdapter"


def _hf_replica():
    from .hf_rollout import HFReplica

    return HFReplica


try:
    register_all()
except Exception:  # noqa: BLE001 - verl would hide it; say what broke and keep verl usable
    logger.warning("moalign's verl plugin could not register (algorithm.adv_estimator=moalign will be unknown)",
                   exc_info=True)

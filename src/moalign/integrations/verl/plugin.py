"""The ``verl.plugins`` entry point: verl imports this module at the end of ``import verl``, in every process
(driver, Ray workers), and the module registers the plugin's three names with verl's registries:

* advantage estimator ``moalign`` (``algorithm.adv_estimator=moalign``),
* reward manager ``moalign`` (``reward.reward_manager.name=moalign``),
* v1 trainer ``moalign`` (``trainer.v1.trainer_mode=moalign``).

verl swallows a plugin's import error into a debug log line, so a failure here is logged as a warning as well.
``VERL_USE_EXTERNAL_PLUGINS=none`` (verl's switch) turns every plugin off.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def register_all() -> None:
    """Register the estimator, the reward manager and the trainer with verl (idempotent)."""
    from . import estimator, manager, trainer

    estimator.register()
    manager.register()
    trainer.register()


try:
    register_all()
except Exception:  # noqa: BLE001 - verl would hide it; say what broke and keep verl usable
    logger.warning("moalign's verl plugin could not register (algorithm.adv_estimator=moalign will be unknown)",
                   exc_info=True)

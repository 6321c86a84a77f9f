"""moalign's weighting strategies inside verl (0.9.1), as a plugin: no fork of verl, no copied verl code.

verl loads :mod:`moalign.integrations.verl.plugin` through its ``verl.plugins`` entry point; that module registers
an advantage estimator, a reward manager and a v1 trainer, all named ``moalign`` (docs/verl.md). Importing this
package does not import verl: only the plugin module and the modules it registers do.

Framework-free parts, usable and tested without verl:

* :mod:`.session` -- the per-run state (objectives, the :class:`~moalign.rl.engine.StepEngine` that weighs every
  step, step counter, checkpoint JSON);
* :mod:`.reward` -- ``compute_score``, moalign objectives as a verl reward function.
"""

from .session import GRADIENT_NEEDS, MOConfig, MOSession, gradient_free_strategies

__all__ = ["GRADIENT_NEEDS", "MOConfig", "MOSession", "gradient_free_strategies"]

"""The interference monitor: which objectives the weighted update is trading away.

After every RL step it receives each objective's within-prompt covariance with the final advantage (``(K,)``,
:func:`moalign.rl.covariance.within_group_covariance`) and the objectives' mean rewards. An objective is flagged
when its covariance has been negative for ``window`` consecutive steps *and* its mean reward fell over those steps:
the update keeps pushing against it and it shows. Its state (streaks and the last ``window + 1`` reward means) is
saved with the strategy's, so a resumed run flags the same steps. Depends on numpy only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["InterferenceMonitor"]

logger = logging.getLogger(__name__)


class InterferenceMonitor:
    """Flags objectives traded away (module docstring).

    >>> m = InterferenceMonitor(["a", "b"], window=1)
    >>> m.update(np.array([-0.1, 0.2]), np.array([0.5, 0.5]))
    []
    >>> m.update(np.array([-0.1, 0.2]), np.array([0.4, 0.4]))  # a: covariance < 0 for 1 step and its mean fell
    ['a']
    """

    def __init__(self, objective_names: Sequence[str], window: int = 5):
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"interference_window must be >= 1, but got {window!r}")
        self.objective_names = list(objective_names)
        self.window = window
        self.neg_cov_streak = np.zeros(len(self.objective_names), dtype=int)
        self.reward_history: list[np.ndarray] = []
        # flagged at the previous step: the warning goes out once per run of consecutive flagged steps (every flag
        # is still returned and logged per step); not saved, so a resumed run warns once more
        self._flagged_before: set[str] = set()

    def update(self, covariance: np.ndarray, reward_means: np.ndarray) -> list[str]:
        """One step's covariance and mean rewards (both ``(K,)``; NaN covariance resets a streak) -> the names of
        the objectives flagged now; a warning names an objective when it is flagged after a step it was not."""
        window = self.window
        self.neg_cov_streak = np.where(np.nan_to_num(covariance, nan=0.0) < 0, self.neg_cov_streak + 1, 0)
        self.reward_history.append(np.asarray(reward_means, dtype=np.float64))
        self.reward_history = self.reward_history[-(window + 1):]
        flags = []
        if len(self.reward_history) > window:
            falling = self.reward_history[-1] < self.reward_history[0]
            for j, name in enumerate(self.objective_names):
                if self.neg_cov_streak[j] >= window and falling[j]:
                    flags.append(name)
                    if name in self._flagged_before:
                        continue
                    logger.warning(
                        "objective %r is being traded away: its covariance with the advantage has been negative for "
                        "%d steps while its mean reward fell from %.3f to %.3f",
                        name, int(self.neg_cov_streak[j]), self.reward_history[0][j], self.reward_history[-1][j],
                    )
        self._flagged_before = set(flags)
        return flags

    def state_dict(self) -> dict[str, Any]:
        return {
            "neg_cov_streak": self.neg_cov_streak.tolist(),
            "reward_history": [h.tolist() for h in self.reward_history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; missing keys keep the current values (states written before the monitor
        existed had none)."""
        streak = np.asarray(state.get("neg_cov_streak", self.neg_cov_streak), dtype=int)
        history = [np.asarray(h) for h in state.get("reward_history", [])]
        k = len(self.objective_names)
        if streak.shape != (k,) or any(h.shape != (k,) for h in history):
            raise ValueError(f"monitor state has entries of the wrong length for the {k} objectives of this run (the "
                             "state file is damaged or from another run)")
        self.neg_cov_streak, self.reward_history = streak, history

"""Gating of the meta-policy: a contextual multi-armed bandit that picks the expert mixture per input and preference.

arXiv 2509.21613 §4 proposes learning the upper-level combination as a contextual bandit from the rewards the mixed
model earns. Here:

* **context** ``x = [1, prompt features, preference p]`` (:func:`prompt_features`: length, digit and operator shares);
* **arms** = candidate mixtures over the experts, by default the simplex grid :func:`simplex_grid`;
* **reward** = ``p · s`` with ``s`` the normalised objective scores of the generated answer (length-type objectives
  as ``1 - tokens / max_new_tokens``; see :func:`completion_scores`);
* **policy**: LinUCB (Li et al., WWW 2010, arXiv 1003.0146, Algorithm 1; one ridge model per arm) from ``mabwiser``.

Why mabwiser: it is a maintained, pure-Python (numpy/scikit-learn) library with LinUCB, linear Thompson sampling and
ε-greedy behind one ``fit/partial_fit/predict`` API, and it installs from PyPI everywhere moalign does;
``vowpalwabbit`` is faster but ships compiled wheels only for some platforms and Python versions, and its
``--cb_explore_adf`` state is a binary model file, not JSON.

State is JSON (:meth:`MixtureGate.state_dict`): the settings plus every observed ``(context, arm, reward)``; loading
refits the bandit on that history, which for LinUCB's ridge statistics gives the same model as the online updates.
Before every arm has been tried once the gate plays the untried arms in order (LinUCB's cold start).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .aggregate.base import check_mixture

__all__ = ["MixtureGate", "completion_scores", "prompt_features", "simplex_grid", "simulate"]

POLICIES = ("linucb", "lints", "epsilon_greedy")


def simplex_grid(k: int, step: float = 0.25) -> list[list[float]]:
    """All points of the simplex in ``k`` dimensions whose coordinates are multiples of ``step``.

    >>> simplex_grid(3, 0.5)
    [[0.0, 0.0, 1.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
    """
    n = round(1.0 / step)
    if k < 1 or n < 1 or abs(n * step - 1.0) > 1e-9:
        raise ValueError(f"step must divide 1 (e.g. 0.5, 0.25, 0.1) and k must be >= 1, got step={step}, k={k}")
    return [[c / n for c in combo] for combo in itertools.product(range(n + 1), repeat=k) if sum(combo) == n]


_OPS = re.compile(r"[+\-*/=^]")


def prompt_features(text: str) -> list[float]:
    """Three cheap, model-free features of a prompt: ``log1p(chars)/5``, share of digits, share of operators."""
    n = max(len(text), 1)
    return [float(np.log1p(len(text)) / 5.0), sum(c.isdigit() for c in text) / n, len(_OPS.findall(text)) / n]


def completion_scores(objectives: Sequence, rows: Sequence[dict[str, Any]], texts: Sequence[str],
                      token_ids: Sequence[Sequence[int]], max_new_tokens: int) -> np.ndarray:
    """``(n, K)`` per-completion scores in [0, 1], higher is better, in the objectives' order.

    An objective reported as ``length`` (conciseness) scores ``1 - tokens / max_new_tokens`` (the normalised space of
    :func:`moalign.evaluation.normalised_point`, per completion); a reward model its score mapped by its range; the
    others their own 0/1 scores (``None`` -> 0).
    """
    from ..evaluation import _is_chat, eval_metric_name
    from ..scoring import normalised_length, score_completions

    columns = {key: [r.get(key) for r in rows] for key in rows[0] if key != "prompt"}
    completions = [[{"role": "assistant", "content": t}] for t in texts] if _is_chat(rows[0]["prompt"]) else list(texts)
    out = np.zeros((len(texts), len(objectives)))
    for j, obj in enumerate(objectives):
        if eval_metric_name(obj) == "length":
            out[:, j] = [normalised_length(len(t), max_new_tokens) for t in token_ids]
            continue
        scores = score_completions([obj], [r["prompt"] for r in rows], completions, token_ids, columns)[obj.name]
        if hasattr(obj, "normalise"):  # a reward model: the affine map of its range (docs/objectives.md)
            scores = [None if s is None else obj.normalise(s) for s in scores]
        out[:, j] = [0.0 if s is None else s for s in scores]
    return out


class MixtureGate:
    """Contextual bandit over expert mixtures (mabwiser); see the module docstring.

    Args:
        arms: candidate mixtures, each with one weight per expert (default: ``simplex_grid(num_experts, 0.25)``).
        num_objectives: length of the preference vectors in the context.
        num_features: length of the prompt-feature vectors (3 for :func:`prompt_features`).
        policy: ``linucb`` (default; ``alpha`` = exploration width, ``l2_lambda`` = ridge), ``lints`` (linear
            Thompson sampling; ``alpha``, ``l2_lambda``) or ``epsilon_greedy`` (context-free; ``epsilon``).
        seed: seed of the bandit's random choices.
    """

    def __init__(self, arms: Sequence[Sequence[float]] | None = None, *, num_experts: int | None = None,
                 num_objectives: int, num_features: int = 3, policy: str = "linucb", alpha: float = 1.0,
                 l2_lambda: float = 1.0, epsilon: float = 0.1, seed: int = 0):
        if arms is None:
            if num_experts is None:
                raise ValueError("give the arms (mixtures) or num_experts to use the simplex grid with step 0.25")
            arms = simplex_grid(num_experts, 0.25)
        if not arms:
            raise ValueError("arms is empty; give at least one mixture")
        n = len(arms[0])
        self.arms = [check_mixture(a, n, name=f"arm {i}").tolist() for i, a in enumerate(arms)]
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        for name, value in (("alpha", alpha), ("l2_lambda", l2_lambda)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, but got {value}")
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], but got {epsilon}")
        self.num_objectives, self.num_features = int(num_objectives), int(num_features)
        self.policy, self.alpha, self.l2_lambda, self.epsilon, self.seed = policy, alpha, l2_lambda, epsilon, seed
        self.contexts: list[list[float]] = []
        self.decisions: list[int] = []
        self.rewards: list[float] = []
        self._mab = None

    def __repr__(self) -> str:
        return (f"MixtureGate(arms={len(self.arms)}, policy={self.policy!r}, alpha={self.alpha}, "
                f"l2_lambda={self.l2_lambda}, observations={len(self.rewards)})")

    def _new_mab(self):
        from mabwiser.mab import MAB, LearningPolicy

        lp = {"linucb": lambda: LearningPolicy.LinUCB(alpha=self.alpha, l2_lambda=self.l2_lambda),
              "lints": lambda: LearningPolicy.LinTS(alpha=self.alpha, l2_lambda=self.l2_lambda),
              "epsilon_greedy": lambda: LearningPolicy.EpsilonGreedy(epsilon=self.epsilon)}[self.policy]()
        return MAB(arms=list(range(len(self.arms))), learning_policy=lp, seed=self.seed)

    def context(self, preference, features: Sequence[float] | None = None) -> np.ndarray:
        """``[1, features, preference]`` (the constant lets each arm learn a bias)."""
        p = check_mixture(preference, self.num_objectives, name="preference")
        f = np.zeros(self.num_features) if features is None else np.asarray(features, dtype=np.float64)
        if f.shape != (self.num_features,):
            raise ValueError(f"features has {f.size} entries but the gate was built with num_features="
                             f"{self.num_features}")
        return np.concatenate([[1.0], f, p])

    def choose(self, preference, features: Sequence[float] | None = None) -> int:
        """Index of the arm to play for this context (untried arms first, in order)."""
        tried = set(self.decisions)
        for a in range(len(self.arms)):
            if a not in tried:
                return a
        x = self.context(preference, features)[None, :]
        if self.policy == "epsilon_greedy":
            return int(self._mab.predict())
        return int(self._mab.predict(x))

    def mixture(self, arm: int) -> list[float]:
        return list(self.arms[arm])

    def update(self, arm: int, reward: float, preference, features: Sequence[float] | None = None) -> None:
        """Record one observation and update the bandit online."""
        if not 0 <= arm < len(self.arms):
            raise ValueError(f"arm {arm} out of range: the gate has {len(self.arms)} arms")
        if not np.isfinite(reward):
            raise ValueError(f"reward must be finite, but got {reward}")
        x = self.context(preference, features)
        self.contexts.append(x.tolist())
        self.decisions.append(int(arm))
        self.rewards.append(float(reward))
        if self._mab is None:
            self._refit()
        elif self.policy == "epsilon_greedy":
            self._mab.partial_fit([int(arm)], [float(reward)])
        else:
            self._mab.partial_fit([int(arm)], [float(reward)], x[None, :])

    def _refit(self) -> None:
        self._mab = self._new_mab()
        if not self.rewards:
            return
        if self.policy == "epsilon_greedy":
            self._mab.fit(self.decisions, self.rewards)
        else:
            self._mab.fit(self.decisions, self.rewards, np.asarray(self.contexts))

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": 1, "arms": self.arms, "num_objectives": self.num_objectives,
                "num_features": self.num_features, "policy": self.policy, "alpha": self.alpha,
                "l2_lambda": self.l2_lambda, "epsilon": self.epsilon, "seed": self.seed,
                "contexts": self.contexts, "decisions": self.decisions, "rewards": self.rewards}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> MixtureGate:
        keys = ("arms", "num_objectives", "num_features", "policy", "alpha", "l2_lambda", "epsilon", "seed")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"gate state lacks {missing}; it was not written by MixtureGate.save")
        gate = cls(state["arms"], **{k: state[k] for k in keys[1:]})
        gate.contexts, gate.decisions, gate.rewards = state["contexts"], state["decisions"], state["rewards"]
        if gate.rewards:
            gate._refit()
        return gate

    def save(self, path: str | Path) -> Path:
        from ..rundir import atomic_write_json

        atomic_write_json(path, self.state_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> MixtureGate:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no gate state at {p}; train one with `moalign meta-eval --train-gate`")
        return cls.from_state_dict(json.loads(p.read_text()))


def simulate(choose, update, mean_reward, contexts: np.ndarray, rng: np.random.Generator,
             noise: float = 0.05) -> np.ndarray:
    """Run a bandit on a simulated problem; returns the per-round regret against the best arm of each context.

    ``mean_reward(context) -> (arms,)`` gives the expected reward of every arm; the observed reward adds Gaussian
    noise of std ``noise``. ``choose(context) -> arm`` and ``update(arm, reward, context)`` drive the policy.
    """
    regret = np.zeros(len(contexts))
    for t, c in enumerate(contexts):
        mu = mean_reward(c)
        arm = int(choose(c))
        update(arm, float(mu[arm] + noise * rng.standard_normal()), c)
        regret[t] = mu.max() - mu[arm]
    return regret

"""Meta-policy MORL (arXiv 2509.21613 §4): per-objective experts, aggregation, a contextual-bandit gate.

Lower level: :mod:`.experts` trains one LoRA expert per objective with MOGRPOTrainer. Upper level:
:mod:`.aggregate` combines them by parameters, logits or hidden states behind one ``generate(prompts, mixture)``;
:mod:`.gate` picks the mixture per input and preference (contextual bandit); :mod:`.policy` serves preferences at
inference time; :mod:`.evaluate` sweeps preferences and compares with single-policy runs. See docs/meta_policy.md::

    from moalign.meta import load_experts, generate
    experts = load_experts("runs/experts")
    generate(experts, ["12+7-4=?"], preference=[0.6, 0.2, 0.2], aggregation="hidden").texts
"""

from .aggregate import Aggregator, Generation, build
from .experts import ExpertSet, ExpertsConfig, ExpertSpec, load_experts, load_experts_config, train_experts
from .gate import MixtureGate, simplex_grid
from .policy import generate, train_gate

__all__ = [
    "Aggregator",
    "ExpertSet",
    "ExpertSpec",
    "ExpertsConfig",
    "Generation",
    "MixtureGate",
    "build",
    "generate",
    "load_experts",
    "load_experts_config",
    "simplex_grid",
    "train_experts",
    "train_gate",
]

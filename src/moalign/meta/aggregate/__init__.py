"""Upper level of the meta-policy: combine the experts by parameters, logits or hidden states (arXiv 2509.21613 §4).

Every aggregation is an :class:`Aggregator` with the same call::

    from moalign.meta.aggregate import build
    agg = build("hidden", experts)            # or "logit", "parameter"
    agg.generate(["12+7-4=?"], mixture=[0.6, 0.2, 0.2]).texts
"""

from .base import Aggregator, Generation, available, build, check_mixture
from .hidden import HiddenAggregator
from .logit import LogitAggregator, mix_logprobs
from .parameter import ParameterAggregator

__all__ = [
    "Aggregator",
    "Generation",
    "HiddenAggregator",
    "LogitAggregator",
    "ParameterAggregator",
    "available",
    "build",
    "check_mixture",
    "mix_logprobs",
]

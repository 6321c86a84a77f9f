"""moalign: multi-objective online RL alignment of language models with dynamic reward weighting."""

__version__ = "0.1.0"

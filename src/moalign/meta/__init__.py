"""Meta-policy MORL (arXiv 2509.21613): per-objective experts, aggregation, a contextual-bandit gate."""

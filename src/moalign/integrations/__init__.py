"""Adapters that run moalign's multi-objective step inside other RL frameworks.

Each adapter lives in its own subpackage and imports its framework only when it is used, so that ``import moalign``
never pulls in a framework the user did not install. :mod:`moalign.integrations.verl` is the verl plugin
(docs/verl.md).
"""

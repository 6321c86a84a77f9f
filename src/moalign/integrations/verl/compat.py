"""verl 0.9.1 next to TRL 1.16: verl's FSDP engine build must not need TRL's removed value-head class.

verl's ``apply_monkey_patch`` (``verl/models/transformers/monkey_patch.py``), called whenever the FSDP engine
builds a model, imports ``AutoModelForCausalLMWithValueHead`` from ``trl.experimental.ppo`` or ``trl`` as soon as
``verl.utils.import_utils.is_trl_available()`` says TRL is installed, only to patch that class's ``state_dict``.
TRL 1.16 (moalign's TRL trainer) has the class in neither place, so every verl model build raised ImportError.

:func:`narrow_trl_check` makes verl's check mean what verl uses it for -- "TRL has the value-head model" -- in the
process it runs in. The plugin calls it at ``import verl`` (every verl process). Where the class exists (older TRL)
nothing changes; where it does not, verl behaves as without TRL, which is what its code would need anyway.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

__all__ = ["VERL_MODULES_WITH_TRL_CHECK", "narrow_trl_check", "trl_has_value_head"]

#: verl modules that bind ``is_trl_available`` at import (``from verl.utils.import_utils import is_trl_available``).
VERL_MODULES_WITH_TRL_CHECK = ("verl.utils.import_utils", "verl.models.transformers.monkey_patch", "verl.utils.model")


def trl_has_value_head() -> bool:
    """Whether TRL is installed and has ``AutoModelForCausalLMWithValueHead`` where verl looks for it.

    Read from TRL's files, not by importing TRL: this runs in every verl process, and importing TRL costs about half
    a second there and warns about ``trl.experimental``. The class lives in ``trl/experimental/ppo/`` (TRL 0.27 to
    1.12) or is exported by name from ``trl/__init__.py`` (older TRL)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return False
    for root in map(Path, spec.submodule_search_locations):
        if (root / "experimental" / "ppo" / "__init__.py").exists():
            return True
        init = root / "__init__.py"
        if init.exists() and "AutoModelForCausalLMWithValueHead" in init.read_text(errors="replace"):
            return True
    return False


def narrow_trl_check() -> bool:
    """Point verl's ``is_trl_available`` at :func:`trl_has_value_head` in the modules above (those already imported,
    and ``import_utils`` for the later ones). Returns whether TRL now counts as available to verl."""
    available = trl_has_value_head()
    if available:
        return True

    def is_trl_available() -> bool:
        return False

    importlib.import_module("verl.utils.import_utils")
    for name in VERL_MODULES_WITH_TRL_CHECK:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "is_trl_available"):
            module.is_trl_available = is_trl_available
    return False

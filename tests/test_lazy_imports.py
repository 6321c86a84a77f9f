"""``from moalign import MOGRPOTrainer, MOGRPOConfig`` works, and ``import moalign`` stays light (PEP 562)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_moalign_loads_no_framework():
    out = _run("import sys, moalign; print(sorted(m for m in ('torch', 'trl', 'transformers', 'accelerate', "
               "'numpy') if m in sys.modules))")
    assert out == "[]"


def test_trl_style_imports_resolve_to_the_trainer_and_config():
    out = _run("from moalign import MOGRPOTrainer, MOGRPOConfig; from moalign.trainer import MOGRPOTrainer as T; "
               "from moalign.mo_config import MOGRPOConfig as C; print(MOGRPOTrainer is T, MOGRPOConfig is C)")
    assert out == "True True"


def test_unknown_name_is_an_attribute_error():
    import moalign

    with pytest.raises(AttributeError, match="no attribute 'GRPOTrainer'"):
        moalign.GRPOTrainer  # noqa: B018
    assert {"MOGRPOTrainer", "MOGRPOConfig"} <= set(dir(moalign))

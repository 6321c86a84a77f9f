"""verl's FSDP engine builds in the verl environment (TRL 1.16 installed next to verl 0.9.1), and the pieces of
moalign.integrations.verl.cpu / .hf_rollout / .compat work on their own. Skipped without verl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pytest.importorskip("verl.protocol", reason="verl is not installed: pip install -e '.[verl]' (docs/verl.md)")

HERE = Path(__file__).resolve().parent


def build_engine(port: int, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1",
                   "VERL_USE_EXTERNAL_MODULES": "moalign.integrations.verl.cpu", **env}
    return subprocess.run([sys.executable, str(HERE / "_build_engine.py"), str(port)], env=environment,
                          capture_output=True, text=True, timeout=300)


def test_trl_installed_here_lacks_the_value_head_class_verl_imports():
    """The situation of issue 27: TRL is installed (moalign requires it), but not the class verl imports."""
    from moalign.integrations.verl import compat

    assert compat.trl_has_value_head() is False
    import trl  # noqa: F401  (installed)


def test_verl_builds_its_fsdp_engine_on_a_tiny_model():
    proc = build_engine(29613)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ENGINE FSDPEngineWithLMHead" in proc.stdout


def test_without_the_plugin_verls_model_build_fails_on_trl():
    """The mutant check of the test above: with verl's plugins off (so no compat.narrow_trl_check) the same build
    stops where issue 27 says, in verl's apply_monkey_patch."""
    proc = build_engine(29614, VERL_USE_EXTERNAL_PLUGINS="none")
    assert proc.returncode != 0
    assert "cannot import name 'AutoModelForCausalLMWithValueHead' from 'trl'" in proc.stderr


@pytest.mark.parametrize("layout,expected", [({"experimental/ppo/__init__.py": ""}, True),  # TRL 0.27 - 1.12
                                             ({"__init__.py": "'AutoModelForCausalLMWithValueHead',"}, True),
                                             ({"__init__.py": "'GRPOTrainer',"}, False)])  # TRL 1.16
def test_value_head_is_found_in_trls_files_without_importing_trl(tmp_path, monkeypatch, layout, expected):
    from importlib.machinery import ModuleSpec

    from moalign.integrations.verl import compat

    for name, text in layout.items():
        (tmp_path / "trl" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "trl" / name).write_text(text)
    spec = ModuleSpec("trl", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path / "trl")]
    monkeypatch.setattr(compat.importlib.util, "find_spec", lambda name: spec if name == "trl" else None)
    assert compat.trl_has_value_head() is expected


def test_narrowed_check_leaves_verl_alone_where_trl_has_the_class(monkeypatch):
    from verl.utils import import_utils

    from moalign.integrations.verl import compat

    before = import_utils.is_trl_available
    monkeypatch.setattr(compat, "trl_has_value_head", lambda: True)
    assert compat.narrow_trl_check() is True
    assert import_utils.is_trl_available is before


def test_request_seeds_repeat_for_the_same_request_and_differ_otherwise():
    from moalign.integrations.verl.hf_rollout import request_seed

    seed = request_seed(0, 2, [5, 6, 7], 0)
    assert seed == request_seed(0, 2, [5, 6, 7], 0) and 0 <= seed < 2**63
    others = {request_seed(1, 2, [5, 6, 7], 0), request_seed(0, 3, [5, 6, 7], 0), request_seed(0, 2, [5, 6], 0),
              request_seed(0, 2, [5, 6, 7], 1)}
    assert seed not in others and len(others) == 4


CPU_SCRIPT = """
import torch, verl
from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device
from verl.workers.engine import EngineRegistry
from verl.workers.rollout.base import get_rollout_class
from verl.workers.rollout.replica import get_rollout_replica_class
import moalign.integrations.verl.cpu as cpu
device = get_torch_device()
device.empty_cache(); device.synchronize()
free, total = device.mem_get_info()
assert 0 < free <= total
print(get_device_name(), get_nccl_backend(), EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__,
      get_rollout_class("hf", "async").__name__, get_rollout_replica_class("hf").__name__)
"""


def test_cpu_module_registers_platform_engine_and_the_hf_rollout():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VERL_USE_EXTERNAL_MODULES": "moalign.integrations.verl.cpu"}
    proc = subprocess.run([sys.executable, "-c", CPU_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split() == ["cpu", "gloo", "FSDPEngineWithLMHead", "HFServerAdapter", "HFReplica"]


ROOT = HERE.parents[1]


def test_gpu_check_dry_run_runs_verls_trainer_with_the_plugin():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--only-verl"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    result = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 0 and result["ok"], (result["errors"], proc.stderr[-4000:])
    verl = result["verl"]
    assert verl["status"] == "ran" and verl["steps"] == 2 and verl["rollout"] == "hf"
    assert all(t > 0 for t in verl["step_s"])
    assert all(abs(sum(w) - 1) < 1e-6 for w in verl["weights"])  # CTWA's weights, from verl's logger


def compose(*env_and_args: str, **env: str) -> str:
    proc = subprocess.run(["bash", str(ROOT / "examples" / "verl" / "run_math500.sh"), "--cfg", "job"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_example_script_composes_with_the_hf_rollout_and_on_cpu():
    import yaml

    from moalign.integrations.verl.cpu_config import cpu_overrides

    hf = yaml.safe_load(compose(ROLLOUT="hf"))
    assert hf["actor_rollout_ref"]["rollout"]["name"] == "hf" and hf["trainer"]["device"] == "cuda"
    cpu = yaml.safe_load(compose(DEVICE="cpu", MODEL_PATH="/nonexistent"))
    assert cpu["trainer"]["device"] == "cpu" and cpu["actor_rollout_ref"]["rollout"]["name"] == "hf"
    script = (ROOT / "examples" / "verl" / "run_math500.sh").read_text()
    for override in cpu_overrides():  # the script spells the package's list in shell (the rollout as ${ROLLOUT})
        if override.startswith("actor_rollout_ref.rollout.name="):
            continue
        assert override.replace("'", "") in script, override

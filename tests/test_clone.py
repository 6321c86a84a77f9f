"""The repository stands on its own: what a plain clone holds is enough to run an example end to end.

The clone is the repository's tracked files as they are in the working tree (what ``git clone`` gives once they are
committed): untracked and git-ignored files (run directories, caches, local data) are left behind. It goes into an
empty temporary directory with nothing beside it, and ``moalign`` runs from it with the clone's own ``src`` first on
the import path, so data and assets resolve inside the clone. A config, doc or test that reaches outside the
repository (a sibling data directory, an absolute path of this checkout) fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moalign.rundir import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/math500_tiny_fixed.yaml"


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. an unpacked sdist): nothing to clone")
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("plain_clone") / "moalign"
    for rel in _tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["moalign"]  # nothing beside it
    return dest


def _env(clone: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "HF_", "MOALIGN_"))}
    env.update(PYTHONPATH=str(clone / "src"), HF_HOME=str(tmp / "hf_home"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def test_clone_has_no_references_outside_the_repository(clone):
    """Text files of the clone name no path of this checkout or beside it (e.g. a sibling data folder)."""
    outside = [str(ROOT), str(ROOT.parent) + "/", "../" + ROOT.parent.name + "/"]
    inside = {p.name for p in ROOT.iterdir()}
    outside += ["../" + p.name + "/" for p in ROOT.parent.iterdir()  # sibling directories of the checkout
                if p.is_dir() and p != ROOT and p.name not in inside and len(p.name) > 2]
    hits = []
    for path in clone.rglob("*"):
        if not path.is_file() or path.suffix in {".png", ".parquet", ".safetensors"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(ref in line for ref in outside):
                hits.append(f"{path.relative_to(clone)}:{lineno}: {line.strip()}")
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_example_runs_end_to_end_from_a_plain_clone(clone, tmp_path):
    env = _env(clone, tmp_path)
    where = subprocess.run([sys.executable, "-c", "import moalign.data as d; print(d.MATH500_DIR)"], cwd=clone,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(clone), f"moalign was imported from {where}, not from the clone"

    # The example as written (its data by short name, its run directory relative to the clone); only shortened.
    proc = subprocess.run(
        [sys.executable, "-m", "moalign.cli", "train", EXAMPLE, "--max_steps", "2", "--max_completion_length", "16",
         "--mo_eval_size", "4"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run directory:" in proc.stdout

    run = clone / "runs" / "math500_tiny_fixed"
    assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == [1, 2]
    assert [e["step"] for e in read_jsonl(run / "evals.jsonl")] == [0, 2]
    assert (run / "checkpoints" / "checkpoint-2" / "moalign_state.json").is_file()
    assert (run / "final").is_dir() and (run / "initial_model").is_dir()
    meta = json.loads((run / "run.json").read_text())
    assert meta["data"]["dataset"] == "math500"
    assert sorted(p.name for p in clone.parent.iterdir()) == ["moalign"]

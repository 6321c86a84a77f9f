"""A reward model as objectives on two CPU processes (gloo, torchrun): each rank scores its own completions in one
forward, the gathered rewards equal a single-process scoring of all completions, and the calibrated map and the
strategy state are the same on both ranks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from test_reward_models import tiny_reward_model
from test_trainer_dist import _free_port

from moalign.objectives import build_objectives, prepare_reward_models


def test_each_rank_scores_its_own_completions(tmp_path):
    model, tok = tiny_reward_model(num_labels=2, seed=5)
    rm_dir = tmp_path / "rm"
    model.save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    script = Path(__file__).with_name("_reward_model_dist.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(script), str(tmp_path), str(rm_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks) and len(ranks[0]["steps"]) == 2
    heads = build_objectives([{"model": str(rm_dir), "heads": ["helpful", {"name": "verbose", "index": 1,
                                                                            "maximize": False}]}])
    prepare_reward_models(heads)
    for step0, step1 in zip(ranks[0]["steps"], ranks[1]["steps"]):
        assert step0["forwards"] == step1["forwards"] == 1  # each rank: one forward over its 4 completions
        assert step0["gathered"] == step1["gathered"]
        prompts, completions = step0["prompts"] + step1["prompts"], step0["completions"] + step1["completions"]
        assert len(completions) == 8 and step0["completions"] != step1["completions"]
        expected = torch.tensor([h(completions, prompts=prompts) for h in heads]).T  # rank 0's rows, then rank 1's
        torch.testing.assert_close(torch.tensor(step0["gathered"]), expected, rtol=0, atol=1e-5)
    assert ranks[0]["ranges"] == ranks[1]["ranges"] and None not in ranks[0]["ranges"].values()
    assert ranks[0]["weights"] == ranks[1]["weights"]
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["objectives"]
    assert [o["range"] for o in recorded] == [ranks[0]["ranges"]["helpful"], ranks[0]["ranges"]["verbose"]]

"""Accounted per-step cost of moalign's own code in MOGRPOTrainer(fixed), on bench_trainer.py's setup.

End-to-end step-time ratios need many rounds on a noisy machine; this measures the overhead directly: wall time spent
in MOGRPOTrainer's layer around TRL's generation-and-scoring (rl.step.weigh_step, advantages, bookkeeping), in the
objective guards (minus the objectives themselves, which TRL calls too) and in the callback (finish_step, logging,
steps.jsonl), per step, against the median step.

    python benchmarks/bench_overhead_account.py 12     # number of steps
"""
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_trainer as bt
import torch
from moalign import trainer as tr
from moalign.scoring import GuardedObjective
from trl import GRPOTrainer

logging.disable(logging.WARNING); warnings.filterwarnings("ignore"); torch.set_num_threads(1)
acc = {"outer_gen": 0.0, "super_gen": 0.0, "finish": 0.0, "guard": 0.0, "objective": 0.0, "callback": 0.0}
clock = time.perf_counter

def wrap(cls, name, key):
    orig = getattr(cls, name)
    def f(*a, **k):
        t = clock()
        try:
            return orig(*a, **k)
        finally:
            acc[key] += clock() - t
    setattr(cls, name, f)

wrap(tr.MOGRPOTrainer, "_generate_and_score_completions", "outer_gen")
wrap(GRPOTrainer, "_generate_and_score_completions", "super_gen")
wrap(tr.MOGRPOTrainer, "_finish_step", "finish")
wrap(GuardedObjective, "__call__", "guard")
for hook in ("on_step_end", "on_pre_optimizer_step", "on_optimizer_step", "on_save"):
    if hasattr(tr._MOCallback, hook):
        wrap(tr._MOCallback, hook, "callback")
orig_init = GuardedObjective.__init__
def init(self, objective):
    orig_init(self, objective)
    inner = self.objective
    def timed(*a, **k):
        t = clock()
        try:
            return inner(*a, **k)
        finally:
            acc["objective"] += clock() - t
    self.objective = timed
GuardedObjective.__init__ = init

class A: pass
args = A(); args.batch, args.generations, args.completion_length, args.hidden, args.layers = 16, 4, 48, 128, 6
args.steps = int(sys.argv[1]) if len(sys.argv) > 1 else 12
timer_times = bt.run_config(args, "fixed", "fixed", {}, 3, "grpo", False)
steps = args.steps
own_gen = acc["outer_gen"] - acc["super_gen"]
guard_overhead = acc["guard"] - acc["objective"]
callback_excl_finish = acc["callback"] - acc["finish"]
total = own_gen + guard_overhead + acc["callback"]
print(f"steps {steps}; median step {statistics.median(timer_times)*1e3:.1f} ms")
print(f"per step (ms): around generation (weigh_step etc.) {own_gen/steps*1e3:.2f}, guards {guard_overhead/steps*1e3:.2f}, "
      f"callbacks incl. finish_step+logging {acc['callback']/steps*1e3:.2f} (finish_step {acc['finish']/steps*1e3:.2f}); "
      f"total {total/steps*1e3:.2f} ms = {100*total/steps/statistics.median(timer_times):.2f} % of a step")

"""GPU check: one script, one GPU, at most 8 minutes, one JSON line on stdout (progress goes to stderr).

What it measures, on a random-init Qwen3-1.7B-shaped model built locally (no download):

- step time of ``MOGRPOTrainer`` with ``fixed`` weights vs TRL's plain ``GRPOTrainer`` on the same model, data and
  settings, and of ``gradient`` (the Gram probe) vs ``fixed``: the three run interleaved, ``--rounds`` rounds of one
  fresh trainer each, the order reversed every other round (A B C, C B A, A B C), ``--warmup`` steps of each run
  dropped; ratios from steps paired by round and position, with their median, IQR and min-max;
- the Gram probe's peak GPU memory (``torch.cuda.max_memory_allocated`` around ``GramProbe.accumulate``);
- one ``hypervolume`` step (validation points, evaluated at every step; ``--hypervolume-points train_batch`` for
  the batch's rewards instead);
- all of it under bf16 (bf16 weights, ``bf16=True``);
- where vLLM imports, one ``use_vllm: true, vllm_mode: colocate`` step, with each objective's mean reward;
- where verl imports, ``--verl-steps`` steps of verl's own trainer (``python -m verl.trainer.main_ppo``) with the
  moalign plugin (CTWA) on the same model and the synthetic task, through moalign's HF rollout
  (``--verl-rollout vllm`` for vLLM); in the dry run on CPU (moalign.integrations.verl.cpu). ``--only-verl`` skips
  the TRL parts (the verl environment's CI runs ``--dry-run --only-verl``).

    python benchmarks/gpu_check.py --json gpu_check.json   # one CUDA GPU; estimated 5-6 minutes (not yet run)
    python benchmarks/gpu_check.py --dry-run               # the same code on CPU, tiny model, fp32 (CI)
    python benchmarks/gpu_check.py --dry-run --only-verl   # the verl step alone, on CPU (CI, in .venv-verl)

Model: Qwen3-1.7B's published shape (hidden 2048, MLP 6144, 28 layers, 16 query / 8 KV heads of 128, tied
embeddings, vocabulary 151,936), random weights saved with ``save_pretrained`` to a temporary directory, and the
project's character tokenizer (``moalign.tiny.char_tokenizer``) with its vocabulary padded by filler tokens to the
model's, so that every id the random model samples decodes (the fillers never come out of encoding text). Memory
arithmetic (1.72 B parameters, bf16): weights 3.4 GB + gradients 3.4 GB + AdamW's two moments 6.9 GB = 13.8 GB
(12.8 GiB) of training state, plus activations of 16 completions x 128 tokens (activation checkpointing, TRL's
default): the logits of the 2,048 completion tokens over 151,936 entries are 0.6 GB in bf16 and 1.2 GB in fp32,
checkpointed layer inputs 0.3 GB, the KV cache while generating 0.3 GB; so about 15-17 GB at the peak, which the
JSON reports per run (``peak_memory_gib``) next to this estimate (``model.training_state_gib``).

Objectives: accuracy, conciseness and clarity (as every other benchmark) plus ``odd_length`` (1 when the completion
has an odd number of characters). Completions are forced to the full ``--completion-length`` in the timed runs (so
generation costs the same whatever the policy did), which makes conciseness 0 for every completion, and a random
model never writes ``\\boxed{}``, so accuracy and clarity are 0 too; ``odd_length`` varies, so advantages and the
Gram matrix are not all zero. The vLLM step does not force lengths.
"""

from __future__ import annotations

import time

_START = time.perf_counter()  # before the heavy imports: the time budget counts them

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

# Shared with bench_trainer.py: its per-step timer and its prompts (runs as a script, so benchmarks/ is on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trainer import _dataset  # noqa: E402
from step_timer import WholeStepTimer  # noqa: E402

# Qwen3-1.7B's config.json (Qwen/Qwen3-1.7B) minus what a random init does not need.
QWEN3_1_7B = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=4096,
                  rms_norm_eps=1e-6)
QWEN3_VOCAB = 151_936
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, tie_word_embeddings=True, max_position_embeddings=1024)
TINY_VOCAB = 512  # > the 105 characters, so the dry run pads the vocabulary too

GPU_DEFAULTS = dict(batch=16, generations=8, completion_length=128, rounds=3, warmup=1, steps=2, budget_s=460.0,
                    threads=None)
DRY_DEFAULTS = dict(batch=4, generations=2, completion_length=8, rounds=3, warmup=1, steps=2, budget_s=300.0,
                    threads=1)

COMPARED = ("grpo_trl", "mogrpo_fixed", "mogrpo_gradient")  # interleaved in this order, reversed every other round
RATIOS = {"fixed_vs_trl": ("mogrpo_fixed", "grpo_trl"), "gradient_vs_fixed": ("mogrpo_gradient", "mogrpo_fixed")}


def log(message: str) -> None:
    print(f"[gpu_check {time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def odd_length(completions, **_):
    """1 when the completion text has an odd number of characters: varies on a random model's output."""
    from moalign.objectives import completion_text

    return [float(len(completion_text(c)) % 2) for c in completions]


def objectives():
    """Fresh instances for every run (conciseness keeps a running mean)."""
    from moalign.objectives import Accuracy, Clarity, Conciseness, as_objective, available_objectives, \
        register_objective

    if "odd_length" not in available_objectives():  # MOGRPOConfig checks objective names against the registry
        register_objective("odd_length")(odd_length)
    return [Accuracy(), Conciseness(), Clarity(), as_objective(odd_length, name="odd_length")]


# ----------------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------------
def write_model(directory: Path, shape: dict, vocab_size: int, device: torch.device, dtype: torch.dtype) -> dict:
    """Random-init Qwen3 causal LM of ``shape`` plus the project's character tokenizer padded to ``vocab_size``,
    saved with ``save_pretrained`` into ``directory``; returns a description for the JSON."""
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    from moalign.tiny import char_tokenizer, tiny_config

    base = char_tokenizer()
    base.save_pretrained(directory)
    if vocab_size < len(base):
        raise ValueError(f"vocab_size {vocab_size} is below the character tokenizer's {len(base)} tokens")
    # Filler entries of the WordLevel vocabulary: decodable ids for the random model to sample; the character-level
    # pre-tokenizer never produces them from text.
    spec = json.loads((directory / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<t{i}>": i for i in range(len(vocab), vocab_size)})
    (directory / "tokenizer.json").write_text(json.dumps(spec))
    tok = AutoTokenizer.from_pretrained(directory)
    if len(tok) != vocab_size:
        raise RuntimeError(f"padded tokenizer has {len(tok)} tokens, expected {vocab_size}")

    config = tiny_config(vocab_size, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                         **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(config)
    model.to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(directory)
    params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    bytes_per = torch.finfo(dtype).bits // 8
    return {
        "shape": "Qwen3-1.7B" if shape is QWEN3_1_7B else "tiny",
        "parameters": params,
        "dtype": str(dtype).removeprefix("torch."),
        "vocab_size": vocab_size,
        "tokenizer_characters": len(base),
        **{k: shape[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                 "num_key_value_heads", "head_dim", "tie_word_embeddings")},
        # weights + gradients + AdamW's exp_avg and exp_avg_sq, all in the parameters' dtype
        "training_state_gib": 4 * params * bytes_per / 2**30,
    }


# ----------------------------------------------------------------------------------------------------------------
# instrumentation
# ----------------------------------------------------------------------------------------------------------------
class Memory:
    """Peak allocated GPU memory per step, and around every Gram probe pass (``GramProbe.accumulate``).

    The probe resets CUDA's peak counter, so the step's peak is carried across that reset. On CPU every figure is
    None (the process's peak RSS is reported once, separately)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.probes: list[dict] = []
        self._carry = 0

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def step_begin(self):
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats()
            self._carry = 0

    def step_peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        self.sync()
        return max(self._carry, torch.cuda.max_memory_allocated()) / 2**30

    @contextlib.contextmanager
    def probe(self):
        if not self.cuda:
            yield
            self.probes.append({"start_gib": None, "peak_gib": None, "extra_gib": None})
            return
        self.sync()
        self._carry = max(self._carry, torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        try:
            yield
        finally:
            self.sync()
            peak = torch.cuda.max_memory_allocated()
            self._carry = max(self._carry, peak)
            self.probes.append({"start_gib": start / 2**30, "peak_gib": peak / 2**30,
                                "extra_gib": (peak - start) / 2**30})

    @contextlib.contextmanager
    def watching_gram_probe(self):
        """Wraps ``GramProbe.accumulate`` (the probe's backward and Gram blocks) for the duration."""
        from moalign.rl.gram import GramProbe

        original = GramProbe.accumulate
        memory = self

        def accumulate(probe, *args, **kwargs):
            with memory.probe():
                return original(probe, *args, **kwargs)

        GramProbe.accumulate = accumulate
        try:
            yield
        finally:
            GramProbe.accumulate = original


class StepRecorder(WholeStepTimer):
    """The whole-step timer of step_timer.py, synchronised with the GPU at both ends, plus each step's peak memory and
    what the trainer logs per step: moalign's ``moalign_time/*`` phases, TRL's ``rewards/<objective>/mean`` and
    ``completions/mean_length``. Attached after the trainer's own callbacks (``attach``), so a step's time
    includes MOGRPOTrainer's end-of-step work (the strategy's ``after_update``, validation points, ``steps.jsonl``)."""

    def __init__(self, memory: Memory):
        super().__init__()
        self.memory = memory
        self.peaks: list[float | None] = []
        self.logs: list[dict] = []

    def on_step_begin(self, args, state, control, **kw):
        self.memory.step_begin()
        super().on_step_begin(args, state, control, **kw)

    def on_step_end(self, args, state, control, **kw):
        self.memory.sync()
        super().on_step_end(args, state, control, **kw)
        self.peaks.append(self.memory.step_peak_gib())

    def on_log(self, args, state, control, logs=None, **kw):
        if any(key.startswith("rewards/") for key in logs or {}):  # the per-step log, not the final summary
            self.logs.append(dict(logs))


# ----------------------------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------------------------
def trainer_kwargs(opts, out: str, steps: int, *, vllm: bool = False) -> dict:
    """GRPOConfig fields shared by every run (MOGRPOConfig adds the strategy's)."""
    k = len(objectives())
    kwargs = dict(
        output_dir=out, per_device_train_batch_size=opts.batch, num_generations=opts.generations,
        max_completion_length=opts.completion_length, max_steps=steps, learning_rate=1e-6, beta=0.0,
        reward_weights=[1.0 / k] * k,  # = MOGRPOTrainer's uniform fixed weights
        report_to="none", logging_steps=1, seed=0, save_strategy="no", disable_tqdm=True,
        use_cpu=not opts.cuda, bf16=opts.cuda,
        model_init_kwargs={"dtype": "bfloat16" if opts.cuda else "float32"},
        # TRL's default; the Gram probe needs the non-reentrant form, so every run uses it
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
        per_device_eval_batch_size=opts.batch,
    )
    if vllm:
        kwargs.update(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=opts.vllm_gpu_memory_utilization,
                      vllm_max_model_length=opts.completion_length + 256)
    else:
        # every completion exactly completion_length tokens: generation costs the same in every run
        kwargs["generation_kwargs"] = {"min_new_tokens": opts.completion_length}
    return kwargs


def build_trainer(kind: str, opts, out: str, steps: int):
    from trl import GRPOConfig, GRPOTrainer

    from moalign.trainer import MOGRPOConfig, MOGRPOTrainer

    objs = objectives()
    if kind == "grpo_trl":
        return GRPOTrainer(model=opts.model_dir, reward_funcs=objs, args=GRPOConfig(**trainer_kwargs(opts, out, steps)),
                           train_dataset=_dataset())
    strategy, params, extra = {
        "mogrpo_fixed": ("fixed", {}, {}),
        "mogrpo_gradient": ("gradient", {}, {}),
        # validation points (the paper's): the policy's greedy score on a validation split, here at every step
        "mogrpo_hypervolume": ("hypervolume", {"point_source": opts.hypervolume_points, "hv_eval_every": 1},
                               {"mo_validation_size": opts.batch}),
        "mogrpo_vllm": ("fixed", {}, {}),
    }[kind]
    cfg = MOGRPOConfig(objectives=[o.name for o in objs], strategy=strategy, strategy_params=params,
                       advantage_estimator="grpo", **extra,
                       **trainer_kwargs(opts, out, steps, vllm=kind == "mogrpo_vllm"))
    validation = _dataset(opts.batch) if kind == "mogrpo_hypervolume" and opts.hypervolume_points == "validation" \
        else None
    return MOGRPOTrainer(model=opts.model_dir, args=cfg, train_dataset=_dataset(), objectives=objs,
                         validation_dataset=validation)


def run(kind: str, opts, memory: Memory, steps: int) -> dict:
    """Builds a fresh trainer of ``kind``, trains ``steps`` steps; times, peaks and logs of the steps after warm-up."""
    t0 = time.perf_counter()
    recorder = StepRecorder(memory)
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(kind, opts, out, steps)
        recorder.attach(trainer)  # last: its step end comes after MOGRPOTrainer's
        build_s = time.perf_counter() - t0
        dtype = str(next(trainer.model.parameters()).dtype).removeprefix("torch.")
        with memory.watching_gram_probe():
            trainer.train()
        del trainer
        records = [json.loads(line) for line in (Path(out) / "steps.jsonl").read_text().splitlines()] \
            if (Path(out) / "steps.jsonl").is_file() else []
    gc.collect()
    leftover = None
    if opts.cuda:
        torch.cuda.empty_cache()
        leftover = torch.cuda.memory_allocated() / 2**30
    drop = min(opts.warmup, max(len(recorder.times) - 1, 0))
    logs = recorder.logs[drop:]
    rewards = sorted({key[len("rewards/"):-len("/mean")] for entry in logs for key in entry
                      if key.startswith("rewards/") and key.endswith("/mean")})
    phases = sorted({key.split("/", 1)[1] for entry in logs for key in entry if key.startswith("moalign_time/")})
    return {
        "times": recorder.times[drop:],
        "warmup_times": recorder.times[:drop],
        "peaks": [p for p in recorder.peaks[drop:] if p is not None],
        "build_s": build_s,
        "model_dtype": dtype,
        "reward_means": {name: _mean(e.get(f"rewards/{name}/mean") for e in logs) for name in rewards},
        "phases_s": {name: _median(e.get(f"moalign_time/{name}") for e in logs) for name in phases},
        "completion_length": _mean(e.get("completions/mean_length") for e in logs),
        "memory_allocated_after_gib": leftover,
        # MOGRPOTrainer's steps.jsonl: steps whose strategy kept its weights (e.g. a skipped Gram), final weights
        "skipped_steps": sum(1 for r in records if r.get("skip_reason")) if records else None,
        "final_weights": records[-1]["weights"] if records else None,
    }


def _mean(values):
    values = [float(v) for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _max(values):
    values = [float(v) for v in values if v is not None]
    return max(values) if values else None


def _median(values):
    values = [float(v) for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values) -> dict:
    """Median, quartiles (linear interpolation), min, max and count."""
    a = np.asarray(list(values), dtype=float)
    if a.size == 0:
        return {"median": None, "q1": None, "q3": None, "iqr": None, "min": None, "max": None, "n": 0}
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1), "min": float(a.min()),
            "max": float(a.max()), "n": int(a.size)}


def paired_ratio(rounds_a: list[list[float]], rounds_b: list[list[float]]) -> dict:
    """Ratio of A's step time to B's, each A step paired with the B step at the same position of the same round
    (adjacent in time, so slow phases of the machine hit both), plus the ratio of the pooled medians."""
    pairs = [a / b for ra, rb in zip(rounds_a, rounds_b) for a, b in zip(ra, rb) if b > 0]
    pooled_a = [t for r in rounds_a for t in r]
    pooled_b = [t for r in rounds_b for t in r]
    pooled = statistics.median(pooled_a) / statistics.median(pooled_b) if pooled_a and pooled_b else None
    return {**spread(pairs), "pooled_median_ratio": pooled, "pairs": pairs}


def summarise(results: list[dict]) -> dict:
    """One configuration's runs (one per round) as one JSON entry."""
    times = [t for r in results for t in r["times"]]
    peaks = [p for r in results for p in r["peaks"]]
    phases = sorted({k for r in results for k in r["phases_s"]})
    rewards = sorted({k for r in results for k in r["reward_means"]})
    return {
        "step_s": spread(times),
        "steps": times,
        "warmup_steps": [t for r in results for t in r["warmup_times"]],
        "runs": len(results),
        "build_s": _median(r["build_s"] for r in results),
        "model_dtype": sorted({r["model_dtype"] for r in results}),
        "peak_memory_gib": _max(peaks),
        "phases_s": {k: _median(r["phases_s"].get(k) for r in results) for k in phases},
        "reward_means": {k: _mean(r["reward_means"].get(k) for r in results) for k in rewards},
        "completion_length": _mean(r["completion_length"] for r in results),
        "memory_allocated_after_gib": _max(r["memory_allocated_after_gib"] for r in results),
        "skipped_steps": None if results[0]["skipped_steps"] is None else sum(r["skipped_steps"] for r in results),
        "final_weights": [r["final_weights"] for r in results] if results[0]["final_weights"] else None,
    }


# ----------------------------------------------------------------------------------------------------------------
# vLLM
# ----------------------------------------------------------------------------------------------------------------
def vllm_unavailable(cuda: bool) -> str | None:
    """Why the vLLM step cannot run here, or None."""
    if not cuda:
        return "no CUDA device (vLLM colocate needs a GPU; dry run on CPU)"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'trl[vllm]')"
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # a broken install says why here instead of inside TRL
        return f"vllm does not import: {type(exc).__name__}: {exc}"
    from trl.import_utils import is_vllm_available

    if not is_vllm_available():
        return "TRL does not find vllm (trl.import_utils.is_vllm_available() is False)"
    return None


# ----------------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model, fp32: the same code path, for CI")
    p.add_argument("--batch", type=int, help="completions per step (GPU 16, dry run 4)")
    p.add_argument("--generations", type=int, help="completions per prompt (GPU 8, dry run 2)")
    p.add_argument("--completion-length", type=int, help="tokens per completion (GPU 128, dry run 8)")
    p.add_argument("--rounds", type=int, help="rounds of TRL / fixed / gradient runs (3)")
    p.add_argument("--warmup", type=int, help="steps dropped at the start of every run (1)")
    p.add_argument("--steps", type=int, help="timed steps per run (2): rounds x steps timed steps per configuration")
    p.add_argument("--hypervolume-steps", type=int, default=1, help="timed hypervolume steps (0 skips)")
    p.add_argument("--hypervolume-points", choices=["validation", "train_batch"], default="validation",
                   help="validation: a greedy evaluation of --batch prompts at every step (the paper's points); "
                        "train_batch: the batch's mean rewards (no extra generation)")
    p.add_argument("--vllm-steps", type=int, default=1, help="vLLM colocate steps (0 skips)")
    p.add_argument("--vllm-gpu-memory-utilization", type=float, default=0.3, help="TRL's default")
    p.add_argument("--verl-steps", type=int, default=2, help="steps of verl's trainer with the plugin (0 skips)")
    p.add_argument("--verl-rollout", choices=["hf", "vllm"], default="hf", help="verl's rollout for the verl step")
    p.add_argument("--only-verl", action="store_true", help="only the verl step (no TRL runs)")
    p.add_argument("--budget-s", type=float,
                   help="seconds from the start (GPU 460): a round, the hypervolume run or the vLLM run that would "
                        "end later is not started (and said so in the JSON)")
    p.add_argument("--threads", type=int, help="torch CPU threads (dry run: 1)")
    p.add_argument("--json", default=None, help="also write the JSON here, after every phase (kept if killed)")
    opts = p.parse_args(argv)
    defaults = DRY_DEFAULTS if opts.dry_run else GPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    for key in ("batch", "generations", "completion_length", "rounds", "steps"):
        if getattr(opts, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1, got {getattr(opts, key)}")
    if opts.warmup < 0:
        p.error(f"--warmup must be >= 0, got {opts.warmup}")
    if opts.batch % opts.generations:
        p.error(f"--batch ({opts.batch}) must be a multiple of --generations ({opts.generations}): one step holds "
                "whole groups of completions of a prompt")
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    # One JSON line on stdout: everything else that writes to file descriptor 1 (libraries, vLLM's workers) goes to
    # stderr, and the JSON to a copy of the original stdout.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    result = {"schema": "moalign-gpu-check/1", "mode": "dry-run" if opts.dry_run else "gpu", "ok": False,
              "errors": [], "warnings": []}
    try:
        check(opts, result)
    except Exception as exc:
        traceback.print_exc()
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    result["host_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["elapsed_s"] = time.perf_counter() - _START
    result["ok"] = not result["errors"]
    save_partial(opts, result)
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return 0 if result["ok"] else 1


def save_partial(opts, result: dict) -> None:
    """The JSON so far to ``--json`` (so a run killed at its time limit still leaves what it measured)."""
    if opts.json:
        result["elapsed_s"] = time.perf_counter() - _START
        Path(opts.json).write_text(json.dumps(result) + "\n")


def fits(opts, seconds: float) -> bool:
    """Whether ``seconds`` more end within ``--budget-s`` of the start."""
    return time.perf_counter() - _START + seconds <= opts.budget_s


def check(opts, result: dict) -> None:
    import logging
    import warnings

    import transformers
    import trl

    logging.getLogger("moalign").setLevel(logging.ERROR)  # e.g. the gradient strategy's GRPO-linearity warning
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    cuda = torch.cuda.is_available() and not opts.dry_run
    if not cuda and not opts.dry_run:
        raise RuntimeError("no CUDA device: run on a machine with a GPU, or pass --dry-run for the CPU check")
    opts.cuda = cuda
    device = torch.device("cuda" if cuda else "cpu")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    result["device"] = {
        "type": device.type,
        "name": torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine()),
        "total_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
        "trl": trl.__version__,
    }
    if opts.only_verl:
        result["settings"] = {"only_verl": True}
        with tempfile.TemporaryDirectory() as model_dir:
            result["model"] = write_model(Path(model_dir), QWEN3_1_7B if cuda else TINY,
                                          QWEN3_VOCAB if cuda else TINY_VOCAB, device,
                                          torch.bfloat16 if cuda else torch.float32)
            verl_step(opts, Path(model_dir), result)
        return
    result["settings"] = {
        "completions_per_step": opts.batch, "num_generations": opts.generations,
        "completion_tokens": opts.completion_length, "rounds": opts.rounds, "warmup_steps_per_run": opts.warmup,
        "timed_steps_per_run": opts.steps, "bf16": cuda, "gradient_checkpointing": True,
        "objectives": [o.name for o in objectives()], "advantage_estimator": "grpo", "budget_s": opts.budget_s,
        "hypervolume_points": opts.hypervolume_points,
    }
    with tempfile.TemporaryDirectory() as model_dir:
        opts.model_dir = model_dir
        log(f"building the {'Qwen3-1.7B-shaped' if cuda else 'tiny'} random model in {model_dir}")
        result["model"] = write_model(Path(model_dir), QWEN3_1_7B if cuda else TINY,
                                      QWEN3_VOCAB if cuda else TINY_VOCAB, device,
                                      torch.bfloat16 if cuda else torch.float32)
        log(f"model: {result['model']['parameters'] / 1e9:.3f} B parameters, training state "
            f"{result['model']['training_state_gib']:.1f} GiB expected")
        memory = Memory(device)
        compare(opts, memory, result)
        save_partial(opts, result)
        hypervolume_step(opts, memory, result)
        save_partial(opts, result)
        vllm_step(opts, memory, result)
        save_partial(opts, result)
        verl_step(opts, Path(model_dir), result)
    for name, ratio in result["ratios"].items():
        if ratio.get("median") is None or not math.isfinite(ratio["median"]) or ratio["median"] <= 0:
            result["errors"].append(f"ratio {name} is {ratio.get('median')}, not a finite positive number")


def compare(opts, memory: Memory, result: dict) -> None:
    """TRL / fixed / gradient, interleaved round by round; a round that would end past the budget is not started."""
    per_kind: dict[str, list[dict]] = {k: [] for k in COMPARED}
    started = time.perf_counter()
    for r in range(opts.rounds):
        if r and not fits(opts, (time.perf_counter() - started) / r):
            result["warnings"].append(f"time budget: stopped after {r} of {opts.rounds} rounds (--budget-s "
                                      f"{opts.budget_s:.0f})")
            break
        for kind in COMPARED if r % 2 == 0 else COMPARED[::-1]:
            res = run(kind, opts, memory, opts.warmup + opts.steps)
            per_kind[kind].append(res)
            log(f"round {r + 1}/{opts.rounds} {kind}: steps {[round(t, 3) for t in res['times']]} s (warm-up "
                f"{[round(t, 3) for t in res['warmup_times']]}), peak {_max(res['peaks'])} GiB, "
                f"model {res['model_dtype']}")
    result["runs"] = {k: summarise(v) for k, v in per_kind.items()}
    result["ratios"] = {
        name: paired_ratio([r["times"] for r in per_kind[a]], [r["times"] for r in per_kind[b]])
        for name, (a, b) in RATIOS.items()
    }
    probes = memory.probes
    result["gram_probe"] = {
        "passes": len(probes),
        "peak_memory_gib": _max(p["peak_gib"] for p in probes),
        "extra_over_start_gib": _max(p["extra_gib"] for p in probes),
        "memory_at_start_gib": _max(p["start_gib"] for p in probes),
        "note": None if opts.cuda else "CPU: torch.cuda.max_memory_allocated does not apply; see host_peak_rss_mib",
    }


def hypervolume_step(opts, memory: Memory, result: dict) -> None:
    if opts.hypervolume_steps < 1:
        result["runs"]["mogrpo_hypervolume"] = {"skipped": "--hypervolume-steps 0"}
        return
    fixed = result["runs"]["mogrpo_fixed"]
    estimate = fixed["build_s"] + (opts.warmup + opts.hypervolume_steps) * 2 * fixed["step_s"]["median"]
    if not fits(opts, estimate):
        reason = f"time budget: ~{estimate:.0f} s more would pass --budget-s {opts.budget_s:.0f}"
        result["runs"]["mogrpo_hypervolume"] = {"skipped": reason}
        result["warnings"].append(f"hypervolume run skipped: {reason}")
        return
    res = run("mogrpo_hypervolume", opts, memory, opts.warmup + opts.hypervolume_steps)
    result["runs"]["mogrpo_hypervolume"] = summarise([res])
    result["ratios"]["hypervolume_vs_fixed"] = {
        **spread(t / fixed["step_s"]["median"] for t in res["times"]), "baseline": "median mogrpo_fixed step"}
    log(f"hypervolume: steps {[round(t, 3) for t in res['times']]} s")


def vllm_step(opts, memory: Memory, result: dict) -> None:
    reason = vllm_unavailable(opts.cuda) if opts.vllm_steps > 0 else "--vllm-steps 0"
    # engine start-up (weights, compilation, CUDA graphs) dominates; a vLLM step is cheaper than a generate() step
    estimate = 120 + opts.vllm_steps * 2 * result["runs"]["mogrpo_fixed"]["step_s"]["median"]
    if reason is None and not fits(opts, estimate):
        reason = f"time budget: ~{estimate:.0f} s more would pass --budget-s {opts.budget_s:.0f}"
        result["warnings"].append(f"vLLM run skipped: {reason}")
    if reason is not None:
        result["vllm"] = {"status": "skipped", "reason": reason}
        log(f"vLLM step skipped: {reason}")
        return
    try:
        res = run("mogrpo_vllm", opts, memory, opts.vllm_steps)
    except Exception as exc:
        traceback.print_exc()
        result["vllm"] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        result["errors"].append(f"vllm step: {type(exc).__name__}: {exc}")
        return
    import vllm

    result["vllm"] = {"status": "ran", "version": vllm.__version__, "mode": "colocate",
                      "step_s": res["warmup_times"] + res["times"], "reward_means": res["reward_means"],
                      "completion_length": res["completion_length"], "peak_memory_gib": _max(res["peaks"]),
                      "build_s": res["build_s"], "model_dtype": res["model_dtype"]}
    log(f"vLLM colocate: {result['vllm']}")



def verl_step(opts, model_dir: Path, result: dict) -> None:
    """``--verl-steps`` steps of ``python -m verl.trainer.main_ppo`` with the moalign plugin (CTWA), the synthetic
    task as verl parquet and the check's model; its step times and moalign's logged weights into the JSON."""
    if opts.verl_steps <= 0 or importlib.util.find_spec("verl") is None:
        reason = "--verl-steps 0" if opts.verl_steps <= 0 else "verl is not installed (pip install -e '.[verl]')"
        result["verl"] = {"status": "skipped", "reason": reason}
        log(f"verl step skipped: {reason}")
        return
    import subprocess

    from moalign.integrations.verl.cpu_config import CPU_ENV, cpu_overrides, write_synthetic_parquet

    estimate = 150 + 30 * opts.verl_steps
    if not fits(opts, estimate):
        result["verl"] = {"status": "skipped", "reason": f"needs about {estimate} s, past --budget-s"}
        return
    prompts = max(1, opts.batch // opts.generations)
    with tempfile.TemporaryDirectory() as work:
        data = write_synthetic_parquet(Path(work) / "data", n_train=prompts * opts.verl_steps, n_val=prompts)
        log_path = Path(work) / "metrics.jsonl"
        overrides = [
            "algorithm.adv_estimator=moalign", "trainer.v1.trainer_mode=moalign", "reward.reward_manager.name=moalign",
            "+algorithm.moalign.objectives=[accuracy,conciseness,clarity]", "+algorithm.moalign.strategy=ctwa",
            "algorithm.use_kl_in_reward=False", "actor_rollout_ref.actor.use_kl_loss=False",
            f"data.train_files={data}/train.parquet", f"data.val_files={data}/val.parquet",
            f"data.train_batch_size={prompts}", f"data.max_prompt_length={64}",
            f"data.max_response_length={opts.completion_length}", f"actor_rollout_ref.model.path={model_dir}",
            f"actor_rollout_ref.rollout.n={opts.generations}", f"actor_rollout_ref.rollout.name={opts.verl_rollout}",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={opts.batch}",
            f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={opts.batch}",
            "trainer.logger=[console,file]", "trainer.project_name=gpu_check", "trainer.experiment_name=verl",
            f"trainer.default_local_dir={work}/checkpoints", f"trainer.total_training_steps={opts.verl_steps}",
            "trainer.total_epochs=1", "trainer.save_freq=-1", "trainer.test_freq=-1",
            "trainer.val_before_train=False", "trainer.resume_mode=disable",
        ]
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(log_path), "TOKENIZERS_PARALLELISM": "false"}
        if not opts.cuda:
            env.update(CPU_ENV, OMP_NUM_THREADS="1")
            overrides += [o for o in cpu_overrides() if not o.startswith("actor_rollout_ref.rollout.name=")]
        log(f"verl: {opts.verl_steps} steps of main_ppo ({opts.verl_rollout} rollout, "
            f"{'cuda' if opts.cuda else 'cpu'})")
        start = time.perf_counter()
        # its own session, so that a timeout stops Ray's processes too
        proc = subprocess.Popen([sys.executable, "-m", "verl.trainer.main_ppo", *overrides], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=max(60.0, opts.budget_s - (time.perf_counter() - _START)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            _, stderr = proc.communicate()
        records = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    steps = [r["data"] for r in records if "moalign/weights/accuracy" in r["data"]]
    entry = {"status": "ran" if proc.returncode == 0 else "failed", "returncode": proc.returncode,
             "rollout": opts.verl_rollout, "wall_s": time.perf_counter() - start, "steps": len(steps),
             "step_s": [d.get("timing_s/step") for d in steps],
             "weights": [[d[f"moalign/weights/{n}"] for n in ("accuracy", "conciseness", "clarity")] for d in steps],
             "reward_means": [{k.split("/")[-1]: v for k, v in d.items() if k.startswith("moalign/reward/")}
                              for d in steps]}
    result["verl"] = entry
    if proc.returncode != 0 or len(steps) != opts.verl_steps:
        print(stderr[-8000:], file=sys.stderr)
        result["errors"].append(f"verl step: main_ppo exited {proc.returncode} after {len(steps)} of "
                                f"{opts.verl_steps} steps (its stderr above)")
    log(f"verl: {entry['status']}, {len(steps)} steps, step_s {entry['step_s']}")


if __name__ == "__main__":
    sys.exit(main())

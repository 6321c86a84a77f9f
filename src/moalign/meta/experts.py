"""Lower level of the meta-policy: one LoRA expert per objective on one base model, trained by MOGRPOTrainer.

*Multi-objective reinforcement learning for large language model optimization: visionary perspective*
(arXiv 2509.21613, §4 "meta-policy MORL"): a bi-level scheme whose lower level trains one expert policy per objective
and whose upper level combines the experts at inference time (see :mod:`moalign.meta.aggregate` and
:mod:`moalign.meta.gate`). The paper proposes a multi-gradient method (MGDA) at the lower level so that an expert does
not collapse the objectives it does not emphasise; here every expert takes any registered weighting strategy
(``strategy: mgda`` included), and the default is the fixed strategy with an *emphasis* vector, e.g. accuracy expert
``[0.6, 0.2, 0.2]``: the other objectives keep a weight, which plays the same role cheaply.

Experts are PEFT/LoRA adapters of one frozen base, so K experts cost K adapters (a few % of the base each) and can be
batched in one forward pass (PEFT's mixed-adapter batches), which is what the logit and hidden-state aggregations use.

Run directory (``moalign experts train CONFIG``)::

    <out>/
      experts.json          manifest: base model, objectives, each expert's emphasis, strategy, steps, paths
      <expert>/             the expert's MOGRPOTrainer run directory (run.json, steps.jsonl, evals.jsonl)
      <expert>/adapter/     the PEFT adapter (adapter_config.json, adapter_model.safetensors)

>>> cfg = ExpertsConfig(quick=True)
>>> [e.name for e in cfg.experts], cfg.experts[1].weights
(['accuracy', 'conciseness', 'clarity'], [0.2, 0.6, 0.2])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ExpertSet",
    "ExpertSpec",
    "ExpertsConfig",
    "load_experts",
    "load_experts_config",
    "load_splits",
    "save_experts",
    "train_experts",
]

logger = logging.getLogger(__name__)

MANIFEST = "experts.json"
WARMSTART = "warmstart"
"""``base_model`` value meaning the shipped warm start of the CPU demo (:func:`moalign.warmstart.warm_start`)."""


@dataclass
class ExpertSpec:
    """One expert: a name, its objective emphasis and the strategy that trains it."""

    name: str
    """Adapter name (also the sub-directory of the run)."""
    weights: list[float] | None = None
    """Objective emphasis, one weight per objective (the fixed strategy's weights); None for strategies without."""
    strategy: str = "fixed"
    """Any registered weighting strategy (``moalign.weighting.available()``); ``mgda`` as arXiv 2509.21613 suggests."""
    strategy_params: dict[str, Any] = field(default_factory=dict)
    """Strategy parameters; ``weights`` above is added for ``fixed`` when not given here."""
    advantage_estimator: str = "grpo"
    """grpo | rloo | reinforce."""


def _spec_json(spec: Any) -> Any:
    from ..objectives import objective_spec_json

    return objective_spec_json(spec)


def _default_experts(objectives: list[str], emphasis: float) -> list[ExpertSpec]:
    k = len(objectives)
    rest = (1.0 - emphasis) / (k - 1) if k > 1 else 0.0
    out = []
    for i, name in enumerate(objectives):
        w = [round(emphasis if j == i else rest, 6) for j in range(k)]
        out.append(ExpertSpec(name=name, weights=w))
    return out


@dataclass
class ExpertsConfig:
    """Everything ``moalign experts train`` needs; a YAML file sets any field (unknown keys are errors)."""

    base_model: str = WARMSTART
    """``warmstart`` (the shipped tiny SFT model of the demo), a local directory or a Hub id."""
    objectives: list[Any] = field(default_factory=lambda: ["accuracy", "conciseness", "clarity"])
    """Objectives entries, in weight order, as in ``moalign train`` configs: registry names, ``module:callable``
    paths, ``{name: ..., <parameter>: ...}`` or reward models (``{model: PATH, heads: [...]}`` gives one objective
    per head). Reward models need ``range: [lo, hi]`` here: the gate scores completions in the normalised space."""
    experts: list[ExpertSpec] = field(default_factory=list)
    """The experts; empty = one per objective with ``emphasis`` on it and the rest split evenly."""
    emphasis: float = 0.6
    """Weight of an expert's own objective in the default experts."""
    dataset: str = "synthetic"
    """``synthetic`` (embedded task) or any ``moalign train`` dataset."""
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    out: str = "runs/experts"
    steps: int = 30
    """RL steps per expert."""
    prompts_per_step: int = 4
    generations: int = 8
    max_completion_length: int = 64
    learning_rate: float = 5e-4
    """LoRA learning rate: above the demo's full-model 1e-4 (LoRA needs more); 1e-3 hurt accuracy within 2 steps."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_target_modules: list[str] | str = "all-linear"
    eval_every: int = 10
    eval_size: int = 32
    seed: int = 0
    quick: bool = False
    """Smoke size: 4 steps per expert, 4 generations, 16 evaluation rows."""

    @property
    def objective_names(self) -> list[str]:
        """The objectives' names, in weight order (a reward model's ``heads`` give one name each); building them
        checks every entry and that the names are distinct."""
        from ..objectives import build_objectives

        return [o.name for o in build_objectives(list(self.objectives))]

    def __post_init__(self) -> None:
        self.experts = [ExpertSpec(**e) if isinstance(e, dict) else e for e in self.experts]
        if self.quick:
            self.steps = min(self.steps, 4)
            self.generations = min(self.generations, 4)
            self.eval_size = min(self.eval_size, 16)
            self.eval_every = 2
        if not self.objectives:
            raise ValueError("objectives is empty; name at least one, e.g. [accuracy, conciseness, clarity]")
        if not 0.0 < self.emphasis <= 1.0:
            raise ValueError(f"emphasis must be in (0, 1], but got {self.emphasis}")
        names = self.objective_names
        if not self.experts:
            self.experts = _default_experts(names, self.emphasis)
        expert_names = [e.name for e in self.experts]
        if len(set(expert_names)) != len(expert_names):
            raise ValueError(f"expert names must be unique, got {expert_names}")
        for e in self.experts:
            if e.weights is not None and len(e.weights) != len(names):
                raise ValueError(
                    f"expert {e.name!r} has {len(e.weights)} weights but objectives has {len(names)} "
                    f"({', '.join(names)}); give one weight per objective, in that order"
                )
            if e.strategy == "fixed" and e.weights is None and not e.strategy_params:
                raise ValueError(f"expert {e.name!r} uses the fixed strategy but has no weights; set weights: [...]")
        for name in ("steps", "prompts_per_step", "generations", "max_completion_length", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, but got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_experts_config(path: str | Path | None, **overrides: Any) -> ExpertsConfig:
    """Read an :class:`ExpertsConfig` from YAML (None: defaults); keyword overrides win; unknown keys are errors."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} does not exist")
        raw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{p} must hold a YAML mapping of settings, but holds a {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    valid = {f.name for f in dataclasses.fields(ExpertsConfig)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ValueError(f"unknown experts config key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
    return ExpertsConfig(**raw)


def resolve_base_model(base_model: str) -> str:
    """The directory or Hub id of the base model (``warmstart`` -> the shipped warm-start directory)."""
    if base_model == WARMSTART:
        from ..warmstart import warm_start

        return str(warm_start(progress=False))
    return base_model


def load_splits(dataset: str, dataset_kwargs: dict[str, Any] | None = None):
    """The dataset's splits (``synthetic``: the embedded task with seed 0, as the demo)."""
    if dataset == "synthetic":
        from ..data.synthetic import load_synthetic

        return load_synthetic(**{"seed": 0, **(dataset_kwargs or {})})
    from ..data import load_math_dataset

    return load_math_dataset(dataset, **(dataset_kwargs or {}))


def _train_one(spec: ExpertSpec, cfg: ExpertsConfig, base_dir: str, splits, run_dir: Path) -> dict[str, Any]:
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from ..trainer import MOGRPOConfig, MOGRPOTrainer

    import torch

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    params = dict(spec.strategy_params)
    if spec.weights is not None and spec.strategy == "fixed":
        params.setdefault("weights", list(spec.weights))
    eval_split = "test" if "test" in splits else None
    args = MOGRPOConfig(
        output_dir=str(run_dir / "checkpoints"),
        run_dir=str(run_dir),
        objectives=list(cfg.objectives),
        strategy=spec.strategy,
        strategy_params=params,
        advantage_estimator=spec.advantage_estimator,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.generations,
        num_generations=cfg.generations,
        max_completion_length=cfg.max_completion_length,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        temperature=1.0,
        beta=0.0,
        mo_eval_steps=cfg.eval_every if eval_split else 0,
        mo_eval_size=cfg.eval_size,
        per_device_eval_batch_size=cfg.eval_size,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),  # the tiny demo model on CPU; a real model on the GPU if present
        seed=cfg.seed,
        disable_tqdm=True,
    )
    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules,
                             lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = MOGRPOTrainer(model=model, args=args, train_dataset=splits["train"],
                            eval_dataset=splits[eval_split] if eval_split else None, processing_class=tok,
                            peft_config=peft_config, eval_split_name=eval_split or "eval")
    trainer.remove_callback(PrinterCallback)
    trainer.extra_run_info = {"name": spec.name, "method": f"expert:{spec.name}", "expert": dataclasses.asdict(spec)}
    started = time.perf_counter()
    trainer.train()
    adapter_dir = run_dir / "adapter"
    trainer.model.save_pretrained(str(adapter_dir))
    return {**dataclasses.asdict(spec), "run_dir": spec.name, "adapter": f"{spec.name}/adapter",
            "steps": int(trainer.state.global_step), "train_seconds": round(time.perf_counter() - started, 2)}


def train_experts(cfg: ExpertsConfig, progress: bool = True) -> Path:
    """Train every expert of ``cfg`` as a LoRA adapter of one base; returns the run directory (``cfg.out``)."""
    import warnings

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    warnings.filterwarnings("ignore")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = resolve_base_model(cfg.base_model)
    splits = load_splits(cfg.dataset, cfg.dataset_kwargs)
    records = []
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("experts", total=len(cfg.experts))
        for spec in cfg.experts:
            bar.update(task, description=f"expert: {spec.name}")
            records.append(_train_one(spec, cfg, base_dir, splits, out / spec.name))
            bar.advance(task)
    manifest = {
        "format_version": 1,
        "base_model": cfg.base_model,
        "base_model_path": base_dir,
        "objectives": cfg.objective_names,
        "objective_specs": [_spec_json(o) for o in cfg.objectives],
        "experts": records,
        "training_steps": sum(r["steps"] for r in records),
        "config": cfg.to_dict(),
    }
    from ..rundir import atomic_write_json

    atomic_write_json(out / MANIFEST, manifest)
    return out


@dataclass
class ExpertSet:
    """K LoRA experts on one base: a ``peft.PeftModel`` holding every adapter, its tokenizer and the manifest.

    ``names[i]`` is the adapter of mixture coordinate ``i``; ``emphasis`` is ``(n_experts, n_objectives)``.
    """

    model: Any
    tokenizer: Any
    names: list[str]
    objectives: list[str]
    emphasis: Any = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import numpy as np

        if not self.names:
            raise ValueError("an ExpertSet needs at least one expert")
        missing = [n for n in self.names if n not in getattr(self.model, "peft_config", {})]
        if missing:
            raise ValueError(f"adapters {missing} are not loaded in the model; loaded: {list(self.model.peft_config)}")
        if self.emphasis is None:
            k = len(self.objectives)
            self.emphasis = np.eye(len(self.names), k) if len(self.names) == k else np.full((len(self.names), k), 1 / k)
        self.emphasis = np.asarray(self.emphasis, dtype=np.float64)
        self.model.eval()

    @property
    def num_experts(self) -> int:
        return len(self.names)

    def mixture_for(self, preference) -> Any:
        """Map a preference over objectives to a mixture over experts (no gate).

        Each expert gets the preference-weighted share of its emphasis, ``m ∝ E p`` with E the row-normalised
        emphasis matrix, then the map is sharpened so that a one-hot preference on objective i selects the expert that
        emphasises i most: ``m_j = Σ_i p_i [j = argmax_j' E_j'i]`` (ties split evenly). With one expert per objective
        (the default) this is the identity: the mixture is the preference itself.
        """
        import numpy as np

        from .aggregate.base import check_mixture

        p = check_mixture(preference, len(self.objectives), name="preference")
        m = np.zeros(self.num_experts)
        for i, pi in enumerate(p):
            col = self.emphasis[:, i]
            best = np.flatnonzero(np.isclose(col, col.max()))
            m[best] += pi / len(best)
        return m / m.sum()


def load_experts(run_dir: str | Path, device: str | None = None) -> ExpertSet:
    """Load the base model of an experts run with every adapter (PEFT), ready for :mod:`moalign.meta.aggregate`."""
    import numpy as np
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not an experts run (no {MANIFEST}); train one with `moalign experts train`"
        )
    manifest = json.loads(path.read_text())
    base = manifest["base_model_path"]
    if manifest.get("base_model") == WARMSTART or not Path(base).exists():
        base = resolve_base_model(manifest["base_model"])
    model = AutoModelForCausalLM.from_pretrained(base)
    if device:
        model = model.to(device)
    tok = AutoTokenizer.from_pretrained(base)
    experts = manifest["experts"]
    peft_model = None
    for e in experts:
        adapter = run_dir / e["adapter"]
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(model, str(adapter), adapter_name=e["name"])
        else:
            peft_model.load_adapter(str(adapter), adapter_name=e["name"])
    k = len(manifest["objectives"])
    emphasis = [e["weights"] if e.get("weights") else [1.0 / k] * k for e in experts]
    return ExpertSet(model=peft_model, tokenizer=tok, names=[e["name"] for e in experts],
                     objectives=list(manifest["objectives"]), emphasis=np.asarray(emphasis), manifest=manifest)


def save_experts(experts: ExpertSet, run_dir: str | Path, base_model: str, *, config: dict[str, Any] | None = None,
                 training_steps: int = 0) -> Path:
    """Write an :class:`ExpertSet` built elsewhere (e.g. from existing adapters) as an experts run directory.

    ``base_model`` is what :func:`load_experts` loads the base from (``warmstart``, a directory or a Hub id);
    adapters go to ``<run_dir>/adapters/<name>/``.
    """
    from ..rundir import atomic_write_json

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for name, weights in zip(experts.names, experts.emphasis.tolist()):
        experts.model.save_pretrained(str(run_dir / "adapters"), selected_adapters=[name])
        records.append({"name": name, "weights": weights, "strategy": "external", "adapter": f"adapters/{name}",
                        "steps": 0})
    atomic_write_json(run_dir / MANIFEST, {
        "format_version": 1, "base_model": base_model, "base_model_path": resolve_base_model(base_model),
        "objectives": list(experts.objectives), "experts": records, "training_steps": int(training_steps),
        "config": config or {"dataset": "synthetic", "dataset_kwargs": {}},
    })
    return run_dir

"""Reward models as objectives: a scalar sequence classifier as in TRL, or one multi-attribute model as K objectives.

A :class:`RewardModel` holds one model (a path, a Hub id or a loaded module) and its tokenizer, and scores a batch of
(prompt, completion) pairs in **one** forward, whatever the number of heads read from it. Each
:class:`RewardModelObjective` is one head of it: a full objective with its own name, direction, weight, logs and
evaluation metric. The heads of one model share its last batch's scores, so K heads cost one forward per batch.

Scoring is TRL's ``GRPOTrainer._calculate_rewards`` (TRL 1.16), step for step:

* conversational prompts: ``tokenizer.apply_chat_template(prompt + completion, tools=None, tokenize=False,
  **chat_template_kwargs)``; plain prompts: ``prompt + completion``;
* ``tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)``,
  moved to the model's device;
* under ``torch.inference_mode()``, ``model(**inputs).logits[:, index]`` (TRL reads index 0), or a named field of the
  output (``output: rewards`` for ArmoRM-style models, whose ``rewards`` hold one score per attribute);
* a tokenizer without a pad token pads with its EOS, and the model's ``pad_token_id`` is set to the tokenizer's (a
  sequence classifier reads the last non-pad token).

Models given as a path or id are loaded with ``AutoModelForSequenceClassification`` (``num_labels=1`` for a scalar
entry, as TRL; the saved ``num_labels`` for ``heads``), in the policy's dtype, ``trust_remote_code`` only when the
entry sets it. Loading, placement and a one-row check forward happen in :meth:`RewardModel.prepare`, which
``MOGRPOTrainer`` calls when it is built: a model of the wrong class, a tokenizer that does not match or a head that
the output does not have is an error there, never an objective left unscored while training goes on.

Normalised space (docs/design.md): a reward model's scores are unbounded, so each head maps its evaluation metric
``v`` into [0, 1] with the affine map of its range ``[lo, hi]``: ``(v − lo)/(hi − lo)`` (``(hi − v)/(hi − lo)``
when minimised), clipped to [0, 1]. The range is the entry's ``range: [lo, hi]`` or, without one, calibrated once
from the initial policy's evaluation (:meth:`RewardModelObjective.calibrate`: ``mean ± 2·std`` of the per-completion
scores) and frozen in ``run.json`` and ``moalign_state.json``.

This module imports torch only; transformers is imported when a model is loaded from a path or id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .protocol import Objective

__all__ = [
    "CALIBRATION_WIDTH",
    "RewardModel",
    "RewardModelObjective",
    "is_model_object",
    "is_reward_model_spec",
    "looks_like_model_path",
    "normalise_in_range",
    "prepare_reward_models",
    "reward_model_objectives",
]

#: Half-width, in standard deviations of the initial policy's per-completion scores, of a calibrated range.
CALIBRATION_WIDTH = 2.0

_ENTRY_KEYS = ("name", "model", "tokenizer", "heads", "index", "maximize", "range", "output", "batch_size", "offload",
               "trust_remote_code")
_HEAD_KEYS = ("name", "index", "maximize", "range")


def is_model_object(obj: Any) -> bool:
    """True for a ``torch.nn.Module`` (a ``PreTrainedModel`` or a compiled one), which TRL treats as a reward model."""
    import torch

    return isinstance(obj, torch.nn.Module)


def is_reward_model_spec(spec: Any) -> bool:
    """True for a config entry that names a reward model: a mapping with ``model``, or a model object."""
    return (isinstance(spec, Mapping) and "model" in spec) or is_model_object(spec)


def looks_like_model_path(text: str) -> bool:
    """How a plain string that is not a registry name is read: an existing directory, or anything with a ``/``
    (``org/name`` on the Hub, ``./rm``), is a reward model; anything else is a ``module:callable`` path.

    >>> looks_like_model_path("OpenAssistant/reward-model-deberta-v3-large-v2"), looks_like_model_path("pkg.mod:fn")
    (True, False)
    """
    return "/" in text or "\\" in text or Path(text).is_dir()


class RewardModel:
    """One reward model and its tokenizer; scores a batch once for all the heads read from it.

    Args:
        model: a path or Hub id (loaded in :meth:`prepare`), or a loaded ``torch.nn.Module``.
        tokenizer: the reward model's own tokenizer (TRL's ``reward_processing_class``), a path, or None: loaded
            from the model's path (or its ``config._name_or_path``).
        output: ``"logits"`` (sequence-classification heads) or the name of another output field (``rewards``).
        batch_size: rows per forward (None: the whole batch in one forward, as TRL).
        offload: keep the model on CPU between scoring calls (moved to the device for each call).
        trust_remote_code: passed to ``from_pretrained`` (only when set: remote code runs on this machine).
        num_labels: forced when loading from a path (1 for a scalar entry, as TRL); None keeps the saved value.
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, output: str = "logits", batch_size: int | None = None,
                 offload: bool = False, trust_remote_code: bool = False, num_labels: int | None = None):
        if not (isinstance(model, (str, Path)) or is_model_object(model)):
            raise ValueError(f"a reward model must be a path, a Hub id or a torch module, but got {model!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"reward model batch_size must be a positive integer or null, but got {batch_size!r}")
        if not isinstance(output, str) or not output:
            raise ValueError(f"reward model output must be the name of an output field, e.g. logits, got {output!r}")
        self.source = str(model) if isinstance(model, (str, Path)) else None
        self.model = None if self.source is not None else model
        self.tokenizer = tokenizer
        self.output, self.batch_size, self.offload = output, batch_size, bool(offload)
        self.trust_remote_code, self.num_labels = bool(trust_remote_code), num_labels
        self.chat_template_kwargs: dict[str, Any] = {}
        self.device = None
        self.forward_count = 0  # model calls so far (one per scored batch, or per batch_size chunk)
        self.max_index = 0  # the highest head index read from this model (checked in prepare)
        self._cache: tuple[tuple[str, ...], Any] | None = None

    @property
    def label(self) -> str:
        """The model's id as TRL names it: the last component of its path or ``config._name_or_path``."""
        source = self.source or str(getattr(getattr(self.model, "config", None), "_name_or_path", "") or "")
        return source.rstrip("/").replace("\\", "/").split("/")[-1] or type(self.model).__name__

    @property
    def prepared(self) -> bool:
        return self.device is not None

    # -- loading and placement -------------------------------------------------------------------------------------
    def prepare(self, device: Any = "cpu", dtype: Any = None, place=None, trust_remote_code: bool | None = None
                ) -> RewardModel:
        """Load (from a path), check and place the model; idempotent.

        ``dtype`` is the dtype a model loaded from a path gets (the policy's); a model object keeps its own.
        ``place(model) -> model`` puts it where the trainer wants it (TRL: ``accelerator.prepare_model(model,
        evaluation_mode=True)`` or DeepSpeed's ``prepare_deepspeed``); default: ``model.to(device)``. With ``offload``
        the model stays on CPU and is moved to ``device`` for each call.
        """
        if self.prepared:
            return self
        import torch

        remote = self.trust_remote_code or bool(trust_remote_code)
        if self.model is None:
            self.model = _load_model(self.source, dtype, remote, self.num_labels)
        if isinstance(self.tokenizer, (str, Path)) or self.tokenizer is None:
            self.tokenizer = _load_tokenizer(self.tokenizer, self.source, self.model, remote)
        self._check_model_class()
        if self.tokenizer.pad_token_id is None:  # as TRL: pad with EOS
            self.tokenizer.pad_token = self.tokenizer.eos_token
        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        text_config.pad_token_id = self.tokenizer.pad_token_id  # the classifier reads the last non-pad token
        self._check_tokenizer()
        self.model.eval()
        self.device = torch.device(device)
        if self.offload:
            self.model.to("cpu")
        elif place is not None:
            self.model = place(self.model)
        else:
            self.model.to(self.device)
        self._check_output()
        return self

    def _check_model_class(self) -> None:
        name = type(self.model).__name__
        if name.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
            raise ValueError(
                f"reward model {self.label!r} is a {name}, a language model, not a reward model: its logits are "
                "(batch, tokens, vocabulary). Give a sequence-classification model (AutoModelForSequenceClassification,"
                " e.g. one saved by TRL's RewardTrainer), or pass a reward function instead"
            )

    def _check_tokenizer(self) -> None:
        embeddings = getattr(self.model, "get_input_embeddings", lambda: None)()
        size = getattr(embeddings, "num_embeddings", None)
        if size is not None and len(self.tokenizer) > size:
            raise ValueError(
                f"the tokenizer given for reward model {self.label!r} has {len(self.tokenizer)} tokens but the model "
                f"embeds {size}: it is not the model's tokenizer. Pass the reward model's own tokenizer "
                "(reward_processing_classes=[...] or tokenizer: PATH in the objectives entry), not the policy's"
            )

    def _check_output(self) -> None:
        """One one-row forward: the output field exists and is (batch, >max_index) numbers."""
        values = self._forward(["moalign reward model check"])
        self.forward_count -= 1
        if values.dim() != 2 or values.shape[0] != 1:
            raise ValueError(
                f"reward model {self.label!r}: output {self.output!r} has shape {tuple(values.shape)} for one text, "
                "not (1, heads); a reward model returns one score per head and sequence "
                "(AutoModelForSequenceClassification)"
            )
        if values.shape[1] <= self.max_index:
            raise ValueError(
                f"reward model {self.label!r}: output {self.output!r} has {values.shape[1]} column(s) but head index "
                f"{self.max_index} is read; give indexes below {values.shape[1]} (heads: [...] in the order of the "
                "model's labels, or index: i), or load a model with more labels"
            )

    # -- scoring ---------------------------------------------------------------------------------------------------
    def render(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[str]:
        """The texts TRL's reward-model path feeds the model (module docstring)."""
        if len(prompts) != len(completions):
            raise ValueError(f"reward model {self.label!r} got {len(prompts)} prompts for {len(completions)} "
                             "completions; pass one prompt per completion")
        if prompts and _is_conversational(prompts[0]):
            return [self.tokenizer.apply_chat_template(list(p) + list(c), tools=None, tokenize=False,
                                                       **self.chat_template_kwargs)
                    for p, c in zip(prompts, completions)]
        return [p + c for p, c in zip(prompts, completions)]

    def scores(self, prompts: Sequence[Any], completions: Sequence[Any]):
        """``(N, heads)`` float32 CPU tensor of every column of the output; the last batch is cached, so the heads
        of one model called on the same batch share one forward."""
        self.prepare()
        texts = tuple(self.render(prompts, completions))
        if self._cache is not None and self._cache[0] == texts:
            return self._cache[1]
        size = self.batch_size or max(len(texts), 1)
        if self.offload:
            self.model.to(self.device)
        try:
            import torch

            parts = [self._forward(list(texts[i : i + size])) for i in range(0, len(texts), size)]
            values = torch.cat(parts) if parts else torch.zeros(0, 1)
        finally:
            if self.offload:
                self.model.to("cpu")
        self._cache = (texts, values)
        return values

    def _forward(self, texts: list[str]):
        import torch

        inputs = self.tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="right",
                                add_special_tokens=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
            self.forward_count += 1
            values = out[self.output] if isinstance(out, Mapping) or hasattr(out, "keys") else getattr(out, self.output)
        if values is None:
            raise ValueError(f"reward model {self.label!r} returned no {self.output!r} output; set output: to the "
                             "field holding its scores (logits for a sequence classifier, rewards for ArmoRM)")
        values = values.float()
        return (values.unsqueeze(1) if values.dim() == 1 else values).cpu()

    def __repr__(self) -> str:
        return f"RewardModel({self.label!r}, output={self.output!r})"


def _is_conversational(prompt: Any) -> bool:
    return (isinstance(prompt, (list, tuple)) and bool(prompt) and isinstance(prompt[0], Mapping)
            and "role" in prompt[0])


def _load_model(source: str, dtype: Any, trust_remote_code: bool, num_labels: int | None):
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        hint = ("; a model whose code is on the Hub (ArmoRM) needs trust_remote_code: true in its entry"
                if not trust_remote_code else "")
        heads = "; to read several labels of a multi-label model, list them under heads: [...]" if num_labels else ""
        raise ValueError(f"cannot load reward model {source!r} as a sequence classifier ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}){hint}{heads}") from exc


def _load_tokenizer(tokenizer: str | Path | None, source: str | None, model, trust_remote_code: bool):
    from transformers import AutoTokenizer

    where = tokenizer or source or getattr(model.config, "_name_or_path", None)
    if not where:
        raise ValueError("a reward model passed as an object needs its tokenizer: pass reward_processing_classes="
                         "[tokenizer] to MOGRPOTrainer (as in TRL) or RewardModelObjective(model, tokenizer=...)")
    try:
        return AutoTokenizer.from_pretrained(str(where), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the reward model's tokenizer from {str(where)!r} ({exc}); pass it with "
                         "reward_processing_classes=[...] or tokenizer: PATH in the objectives entry") from exc


class RewardModelObjective(Objective):
    """One head of a :class:`RewardModel` as an objective: ``scores[:, index]``.

    Args:
        reward_model: the shared :class:`RewardModel` (or a path/module, wrapped in one).
        name: objective name (default: the model's id, as TRL names a reward model).
        index: the output column read (TRL reads 0).
        maximize: direction.
        score_range: ``[lo, hi]`` of the affine map into the normalised space (None: calibrated from the initial
            policy's evaluation).
        tokenizer: the reward model's tokenizer, when ``reward_model`` is a path or module.
    """

    def __init__(self, reward_model: Any, name: str | None = None, index: int = 0, maximize: bool = True,
                 score_range: Sequence[float] | None = None, tokenizer: Any = None):
        super().__init__()
        self.reward_model = reward_model if isinstance(reward_model, RewardModel) else RewardModel(reward_model,
                                                                                                     tokenizer)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"reward model head index must be a non-negative integer, but got {index!r}")
        self.index = index
        self.reward_model.max_index = max(self.reward_model.max_index, index)
        self.name = str(name or self.reward_model.label)
        if not isinstance(maximize, bool):
            raise ValueError(f"objective {self.name!r}: maximize must be true or false, but got {maximize!r}")
        self.maximize = maximize
        self.score_range = _check_range(score_range, self.name)
        self.range_source = "config" if self.score_range is not None else None

    def __call__(self, completions: list, prompts: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
        if prompts is None:
            raise ValueError(f"reward model objective {self.name!r} scores prompt + completion; pass prompts=[...]")
        values = self.reward_model.scores(prompts, completions)
        return values[:, self.index].tolist()

    def calibrate(self, scores: Sequence[float | None]) -> list[float]:
        """Freeze the range from the initial policy's per-completion scores: ``mean ± CALIBRATION_WIDTH·std``
        (a zero spread gets a width of 1 around the mean). A range set in the config or already frozen is kept."""
        if self.score_range is None:
            values = [float(s) for s in scores if s is not None and math.isfinite(float(s))]
            if not values:
                raise ValueError(f"objective {self.name!r}: no finite score to calibrate its range from; set range: "
                                 "[lo, hi] in its objectives entry")
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            half = CALIBRATION_WIDTH * std if std > 0 else 0.5
            self.score_range = [mean - half, mean + half]
            self.range_source = "calibrated"
        return list(self.score_range)

    def normalise(self, value: float) -> float:
        """``value`` (a mean score) in the normalised space: the affine map of :attr:`score_range`, clipped."""
        if self.score_range is None:
            raise ValueError(f"objective {self.name!r} has no normalisation range yet; set range: [lo, hi] in its "
                             "entry, or evaluate the initial policy first (mo_eval_steps > 0) to calibrate it")
        return normalise_in_range(value, self.score_range, self.maximize)

    def state_dict(self) -> dict[str, Any]:
        return {"range": list(self.score_range)} if self.range_source == "calibrated" else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("range") is not None:
            self.score_range = _check_range(state["range"], self.name)
            self.range_source = "calibrated"

    def __repr__(self) -> str:
        return f"RewardModelObjective({self.name!r}, model={self.reward_model.label!r}, index={self.index})"


def normalise_in_range(value: float, score_range: Sequence[float], maximize: bool = True) -> float:
    """The affine map of a range into [0, 1], 1 = better, clipped.

    >>> normalise_in_range(1.5, [1.0, 3.0]), normalise_in_range(1.5, [1.0, 3.0], maximize=False)
    (0.25, 0.75)
    """
    lo, hi = float(score_range[0]), float(score_range[1])
    share = (float(value) - lo) / (hi - lo)
    return min(1.0, max(0.0, share if maximize else 1.0 - share))


def _check_range(value: Any, name: str) -> list[float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"objective {name!r}: range must be [lo, hi], two numbers, but got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"objective {name!r}: range must be [lo, hi] with finite lo < hi, but got {value!r}")
    return [lo, hi]


def reward_model_objectives(spec: Any, tokenizer: Any = None) -> list[RewardModelObjective]:
    """The objectives of one reward-model entry: a model object, or a mapping ``{model: PATH_OR_ID, ...}``.

    Scalar: ``{name: helpful, model: PATH, index: 0, maximize: true, range: [lo, hi]}``. Several heads of one model:
    ``{model: PATH, heads: [helpfulness, correctness, {name: verbosity, index: 4, maximize: false}]}`` (a plain
    head name takes its position as index). Shared keys: ``tokenizer``, ``output`` (``logits`` or a field such as
    ``rewards``), ``batch_size``, ``offload``, ``trust_remote_code``. The model is not loaded here.

    >>> [o.name for o in reward_model_objectives({"model": "org/rm", "heads": ["a", {"name": "b", "index": 4}]})]
    ['a', 'b']
    """
    if not isinstance(spec, Mapping):
        return [RewardModelObjective(RewardModel(spec, tokenizer))]
    unknown = sorted(str(k) for k in spec if k not in _ENTRY_KEYS)
    if unknown:
        raise ValueError(f"reward model entry {dict(spec)!r} has unknown key(s) {unknown}; its keys are: "
                         f"{', '.join(_ENTRY_KEYS)}")
    heads = spec.get("heads")
    if heads is not None and any(k in spec for k in ("name", "index", "maximize", "range")):
        raise ValueError("a reward model entry with heads names each objective in heads: move name/index/maximize/"
                         f"range into the head entries, e.g. heads: [{{name: x, index: 0}}]; got {dict(spec)!r}")
    if heads is not None and (not isinstance(heads, (list, tuple)) or not heads):
        raise ValueError(f"heads must be a non-empty list of head names or {{name, index, maximize, range}} "
                         f"mappings, but got {heads!r}")
    model = RewardModel(
        spec["model"], spec.get("tokenizer", tokenizer), output=spec.get("output", "logits"),
        batch_size=spec.get("batch_size"), offload=bool(spec.get("offload", False)),
        trust_remote_code=bool(spec.get("trust_remote_code", False)),
        num_labels=1 if heads is None and spec.get("output", "logits") == "logits" and not spec.get("index") else None,
    )
    if heads is None:
        return [RewardModelObjective(model, spec.get("name"), spec.get("index", 0), spec.get("maximize", True),
                                     spec.get("range"))]
    objectives = []
    for position, head in enumerate(heads):
        if isinstance(head, str):
            head = {"name": head}
        if not isinstance(head, Mapping) or "name" not in head:
            raise ValueError(f"heads[{position}] must be a name or a mapping with a name, but got {head!r}")
        bad = sorted(str(k) for k in head if k not in _HEAD_KEYS)
        if bad:
            raise ValueError(f"heads[{position}] ({head['name']!r}) has unknown key(s) {bad}; a head takes: "
                             f"{', '.join(_HEAD_KEYS)}")
        objectives.append(RewardModelObjective(model, head["name"], head.get("index", position),
                                               head.get("maximize", True), head.get("range")))
    return objectives


def prepare_reward_models(objectives: Sequence[Any], device: Any = "cpu", dtype: Any = None, place=None,
                          trust_remote_code: bool | None = None, chat_template_kwargs: dict[str, Any] | None = None
                          ) -> list[RewardModel]:
    """Load, check and place every distinct :class:`RewardModel` behind ``objectives`` (each once); returns them."""
    models: list[RewardModel] = []
    for obj in objectives:
        rm = getattr(obj, "reward_model", None)
        if isinstance(rm, RewardModel) and all(rm is not m for m in models):
            models.append(rm)
    for rm in models:
        if chat_template_kwargs:
            rm.chat_template_kwargs = dict(chat_template_kwargs)
        try:
            rm.prepare(device, dtype, place, trust_remote_code)
        except ValueError as exc:
            names = [o.name for o in objectives if getattr(o, "reward_model", None) is rm]
            raise ValueError(f"objective(s) {names}: {exc}") from exc
    return models

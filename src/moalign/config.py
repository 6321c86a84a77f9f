"""YAML configs for ``moalign train``, parsed the way TRL's own CLI (``TrlParser``) does.

* The YAML file sets the defaults, ``--key value`` flags override them (values are parsed as YAML, so
  ``--strategy_params '{preset: balanced}'`` and ``--learning_rate 1e-6`` work; ``--strategy_params.mu 1e-4`` sets
  one nested key).
* An ``env:`` mapping sets environment variables before anything is loaded.
* ``objectives`` entries are registry names, ``module:callable`` paths or ``{name: ..., <parameter>: ...}``
  mappings; every entry is built while the config is checked, so an unknown name or parameter is reported before
  any model is loaded.
* Keys are split between :class:`DataArguments`, TRL's ``ModelConfig`` (model id, dtype, LoRA) and
  :class:`~moalign.mo_config.MOGRPOConfig` (every ``GRPOConfig`` field plus moalign's); an unknown key is an error
  that lists it with the closest valid names.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .loading import DataArguments

__all__ = ["DataArguments", "load_config", "parse_overrides"]

logger = logging.getLogger(__name__)


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce_numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-6`` (no dot) as a string; turn such strings into floats, recursively."""
    if isinstance(value, dict):
        return {k: _coerce_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_numbers(v) for v in value]
    if isinstance(value, str) and _FLOAT.match(value):
        return float(value)
    return value


def _set_nested(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = target
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--{dotted}: '{key}' is not a mapping in the config, so it has no sub-keys")
    node[keys[-1]] = value


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--lr", "1e-6", "--flag", "--a.b=3"]`` -> ``{"lr": 1e-6, "flag": True, "a": {"b": 3}}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected argument {arg!r}; overrides look like --key value or --key=value")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:
            raw = "true"
            i += 1
        value = _coerce_numbers(yaml.safe_load(raw)) if raw != "" else ""
        key = key.replace("-", "_")
        if key.endswith("_strategy") and isinstance(value, bool):
            value = raw  # `--save_strategy no` is TRL's own spelling; YAML would read it as False
        _set_nested(out, key, value)
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_types(raw: dict[str, Any], cls, keys: set[str]) -> None:
    """Reject values of the wrong kind for numeric and boolean fields, naming the field, before anything loads."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.init}
    for key in sorted(keys & set(raw)):
        value, default = raw[key], defaults.get(key)
        if value is None or default is None or default is dataclasses.MISSING:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            kind = "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            kind = "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            kind = "a number"
        elif key.endswith("_strategy") and isinstance(value, bool):
            # YAML 1.1 reads unquoted no/off/yes/on as booleans: `save_strategy: no` arrives as False. (Other
            # string fields, e.g. scale_rewards, accept booleans on purpose.)
            word = "no" if value is False else "yes"
            raise ValueError(f"{key} must be a string, but YAML read {value!r} (unquoted yes/no/on/off are "
                             f"booleans in YAML); quote it: {key}: \"{word}\"")
        else:
            continue
        if not ok:
            raise ValueError(f"{key} must be {kind}, but got {value!r}")


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _device_defaults(train_kwargs: dict[str, Any]) -> None:
    """Without an accelerator, train on CPU (``use_cpu: true``) unless the config chose. The precision (bf16 or not)
    is decided when ``MOGRPOConfig`` is built, by :mod:`moalign.precision`, for every path alike."""
    from .precision import has_accelerator

    if "use_cpu" not in train_kwargs and not has_accelerator():
        train_kwargs["use_cpu"] = True
        logger.info("no accelerator found: training on CPU (use_cpu: true); set use_cpu in the config to choose")


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None):
    """Read a YAML config and flag overrides into ``(DataArguments, ModelConfig, MOGRPOConfig)``.

    Raises ``ValueError`` naming unknown keys (with suggestions) and invalid values (via the dataclasses' checks).
    """
    from trl import ModelConfig

    from .mo_config import DEFAULT_OBJECTIVES, MOGRPOConfig

    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"{p} must hold a YAML mapping of settings, but holds a {type(loaded).__name__}")
        raw = _coerce_numbers(loaded)
    raw = _merge(raw, parse_overrides(overrides or []))

    env = raw.pop("env", {}) or {}
    if not isinstance(env, dict):
        raise ValueError("env: must be a mapping of environment variables")
    for key, value in env.items():
        os.environ[str(key)] = str(value)

    if "model" in raw:  # friendlier alias
        raw.setdefault("model_name_or_path", raw.pop("model"))
    data_keys, model_keys, train_keys = _field_names(DataArguments), _field_names(ModelConfig), _field_names(MOGRPOConfig)
    unknown = sorted(set(raw) - data_keys - model_keys - train_keys)
    if unknown:
        valid = data_keys | model_keys | train_keys
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=3)
            hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ValueError(
            f"unknown config key(s): {'; '.join(hints)}. Valid keys are DataArguments, trl.ModelConfig and "
            "MOGRPOConfig/GRPOConfig fields (see docs/configuration.md)"
        )
    data_args = DataArguments(**{k: v for k, v in raw.items() if k in data_keys})
    model_args = ModelConfig(**{k: v for k, v in raw.items() if k in model_keys and k not in train_keys})
    _check_types(raw, MOGRPOConfig, train_keys)
    train_kwargs = {k: v for k, v in raw.items() if k in train_keys}
    train_kwargs.setdefault("output_dir", "runs/moalign")
    train_kwargs.setdefault("objectives", list(DEFAULT_OBJECTIVES))  # so the objective names are checked now
    _device_defaults(train_kwargs)
    try:
        train_args = MOGRPOConfig(**train_kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid config: {exc}") from exc
    from . import weighting

    if "validation" in weighting.needs_for(train_args.strategy, train_args.strategy_params) \
            and not data_args.dataset_eval_split:
        raise ValueError(
            f"strategy {train_args.strategy!r} takes its Pareto points from greedy evaluations of an eval_dataset, "
            "but dataset_eval_split is null; set dataset_eval_split (e.g. val) or strategy_params.point_source: "
            "train_batch"
        )
    if not model_args.model_name_or_path:
        raise ValueError("config has no model: set `model: tiny` (built-in test model) or a Hub id / local path")
    return data_args, model_args, train_args

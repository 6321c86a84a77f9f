"""Experts for the meta-policy tests, built in seconds on CPU on top of the shipped warm start.

* :func:`random_experts`: LoRA adapters with random (small) A and B, different per expert -- enough to check that
  the aggregations compute what they claim.
* :func:`style_experts`: adapters fitted for a few supervised steps to one solution style of the synthetic task
  (``steps``: long, clear, accurate; ``direct``: short), so a preference has a known expected effect on the outputs.
"""

from __future__ import annotations

import functools

import torch

OBJECTIVES = ["accuracy", "conciseness", "clarity"]
PROMPTS = [
    [{"role": "user", "content": "12+7-4=?"}],
    [{"role": "user", "content": "3+5+19-2=?"}],
    [{"role": "user", "content": "9-1+6=?"}],
]


@functools.lru_cache(maxsize=1)
def _base_dir():
    from moalign.warmstart import warm_start

    return warm_start(progress=False)


def base_model_and_tokenizer():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = _base_dir()
    return AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)


def lora_config(r: int = 4, alpha: int = 8, random_init: bool = False):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM",
                      init_lora_weights=not random_init)


def random_experts(names=tuple(OBJECTIVES), scale: float = 0.05, ranks=None):
    """An ExpertSet of adapters with random factors (B scaled by ``scale`` so the experts stay near the base)."""
    from peft import get_peft_model

    from moalign.meta.experts import ExpertSet

    base, tok = base_model_and_tokenizer()
    model = None
    for i, name in enumerate(names):
        r = ranks[i] if ranks else 4
        torch.manual_seed(100 + i)
        cfg = lora_config(r=r, alpha=2 * r, random_init=True)
        if model is None:
            model = get_peft_model(base, cfg, adapter_name=name)
        else:
            model.add_adapter(name, cfg)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_B" in pname:
                p.mul_(scale)
    return ExpertSet(model=model, tokenizer=tok, names=list(names), objectives=list(OBJECTIVES)[: len(names)])


def _fit_steps_style(model, tok, name: str, steps: int, batch_size: int = 8, lr: float = 2e-2) -> None:
    """A few supervised steps of adapter ``name`` towards the ``steps`` style (reference ``solution`` column)."""
    from moalign.data.synthetic import load_synthetic

    rows = load_synthetic(seed=0, n_train=steps * batch_size, n_val=1, n_test=1)["train"]
    model.set_adapter(name)
    model.train()
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if f".{name}." in n], lr=lr)
    for s in range(steps):
        batch = rows.select(range(s * batch_size, (s + 1) * batch_size))
        prompts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in batch]
        targets = [r["solution"] + tok.eos_token for r in batch]
        tok.padding_side = "right"
        enc = tok([p + t for p, t in zip(prompts, targets)], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        labels = enc["input_ids"].clone()
        for i, p in enumerate(prompts):
            labels[i, : len(tok(p, add_special_tokens=False)["input_ids"])] = -100
        labels[enc["attention_mask"] == 0] = -100
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok.padding_side = "left"
    model.eval()


def style_experts(steps: int = 8):
    """accuracy and clarity -> the long, clear ``steps`` style; conciseness -> the warm start's short ``direct`` style.

    The warm start answers greedily in the ``direct`` style, so the conciseness expert is a zero-initialised adapter
    (the base itself); one adapter is fitted to ``steps`` and copied into the accuracy and clarity experts.
    """
    from peft import get_peft_model

    from moalign.meta.experts import ExpertSet

    torch.manual_seed(0)
    base, tok = base_model_and_tokenizer()
    model = get_peft_model(base, lora_config(), adapter_name="accuracy")
    model.add_adapter("conciseness", lora_config())
    model.add_adapter("clarity", lora_config())
    _fit_steps_style(model, tok, "accuracy", steps)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n, p in params.items():
            if ".clarity." in n:
                p.copy_(params[n.replace(".clarity.", ".accuracy.")])
    return ExpertSet(model=model, tokenizer=tok, names=["accuracy", "conciseness", "clarity"],
                     objectives=list(OBJECTIVES))


def hf_greedy(experts, adapter: str, prompts, max_new_tokens: int):
    """Reference: PEFT model with one active adapter, ``model.generate`` greedy, ids cut after EOS."""
    tok, model = experts.tokenizer, experts.model
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    previous = model.active_adapter
    model.set_adapter(adapter)
    try:
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                             temperature=None, top_p=None, top_k=None)
    finally:
        model.set_adapter(previous)
    seqs = out[:, enc["input_ids"].shape[1]:].tolist()
    eos = tok.eos_token_id
    return [s[: s.index(eos) + 1] if eos in s else s for s in seqs]

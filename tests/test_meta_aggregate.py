"""Meta-policy aggregations (arXiv 2509.21613 §4): parameter, logit and hidden-state mixing of LoRA experts.

Each property is checked against an independent computation: Hugging Face ``generate`` with one adapter active, the
experts' distributions computed one by one and mixed by hand, PEFT's own ``add_weighted_adapter`` and the LoRA
update ``Σ_k m_k s_k B_k A_k`` written out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _meta_helpers import OBJECTIVES, PROMPTS, hf_greedy, random_experts, style_experts
from moalign.meta.aggregate import available, build, check_mixture, mix_logprobs

AGGREGATIONS = ["parameter", "logit", "hidden"]
MAX_NEW = 24


@pytest.fixture(scope="module")
def experts():
    return random_experts()


def test_registry_names():
    assert available() == ["hidden", "logit", "parameter"]
    with pytest.raises(ValueError, match="unknown aggregation 'soup'; choose from hidden, logit, parameter"):
        build("soup", None)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_one_hot_mixture_is_the_single_expert(experts, aggregation):
    agg = build(aggregation, experts)
    for i, name in enumerate(experts.names):
        mixture = [0.0] * len(experts.names)
        mixture[i] = 1.0
        out = agg.generate(PROMPTS, mixture, max_new_tokens=MAX_NEW)
        assert out.token_ids == hf_greedy(experts, name, PROMPTS, MAX_NEW), (aggregation, name)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_mixing_copies_of_one_expert_is_that_expert(aggregation):
    """Runs the multi-expert code path (batched adapters, hooks, merging) where the answer is known exactly."""
    ex = random_experts(names=("e1", "e2"))
    with torch.no_grad():
        params = dict(ex.model.named_parameters())
        for n, p in params.items():
            if ".e2." in n:
                p.copy_(params[n.replace(".e2.", ".e1.")])
    agg = build(aggregation, ex)
    out = agg.generate(PROMPTS, [0.3, 0.7], max_new_tokens=MAX_NEW)
    assert out.token_ids == hf_greedy(ex, "e1", PROMPTS, MAX_NEW)
    assert out.extra["active_experts"] == 2


@pytest.mark.parametrize("space", ["prob", "logprob"])
def test_logit_mixing_equals_hand_computed_mixture(experts, space):
    mixture = np.array([0.5, 0.3, 0.2])
    got = build("logit", experts, space=space).next_token_logprobs(PROMPTS, mixture)
    tok, model = experts.tokenizer, experts.model
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in PROMPTS]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    probs = []
    with torch.no_grad():
        for name in experts.names:
            model.set_adapter(name)
            logits = model(**enc, position_ids=pos).logits[:, -1].double()
            probs.append(torch.softmax(logits, -1))
    if space == "prob":
        expected = sum(w * p for w, p in zip(mixture, probs))
    else:
        expected = torch.softmax(sum(w * torch.log(p) for w, p in zip(mixture, probs)), -1)
    torch.testing.assert_close(got.double().exp(), expected, atol=1e-6, rtol=1e-5)
    # the experts really differ, so the check is not vacuous
    assert (probs[0] - probs[1]).abs().max() > 1e-3


def test_mix_logprobs_rejects_unknown_space():
    with pytest.raises(ValueError, match="space must be 'prob' or 'logprob'"):
        mix_logprobs(torch.zeros(2, 1, 3), [0.5, 0.5], space="geometric")


def test_parameter_merge_equals_peft_and_the_lora_sum():
    ex = random_experts(names=("e1", "e2", "e3"), ranks=[2, 4, 3])
    mixture = [0.5, 0.3, 0.2]
    agg = build("parameter", ex)
    out = agg.generate(PROMPTS, mixture, max_new_tokens=MAX_NEW)
    merged = agg.merged_adapter(["e1", "e2", "e3"], np.array(mixture))
    # (1) the merged update is Σ_k m_k s_k B_k A_k in every adapted layer, written out by hand
    from peft.tuners.lora import LoraLayer

    layers = [m for m in ex.model.modules() if isinstance(m, LoraLayer) and merged in m.lora_A]
    assert layers
    for layer in layers:
        expected = sum(w * layer.scaling[n] * (layer.lora_B[n].weight @ layer.lora_A[n].weight)
                       for n, w in zip(["e1", "e2", "e3"], mixture))
        got = layer.scaling[merged] * (layer.lora_B[merged].weight @ layer.lora_A[merged].weight)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # (2) generation equals PEFT's own merge done by hand
    ex.model.add_weighted_adapter(["e1", "e2", "e3"], mixture, "by-hand", combination_type="cat")
    assert out.token_ids == hf_greedy(ex, "by-hand", PROMPTS, MAX_NEW)
    # (3) a second call reuses the cached merge
    assert agg.merged_adapter(["e1", "e2", "e3"], np.array(mixture)) == merged


def test_parameter_merge_cache_is_bounded(experts):
    agg = build("parameter", experts, cache_size=1)
    first = agg.merged_adapter(experts.names, np.array([0.2, 0.3, 0.5]))
    agg.merged_adapter(experts.names, np.array([0.5, 0.3, 0.2]))
    assert first not in experts.model.peft_config


def test_hidden_layers_checked(experts):
    with pytest.raises(ValueError, match="out of range: the model has 4 decoder layers"):
        build("hidden", experts, layers=[7])
    assert build("hidden", experts, layers=[0]).layers == [0, 3]  # the last layer is always mixed


@pytest.mark.parametrize(
    ("mixture", "message"),
    [
        ([0.5, 0.5], "has 2 entries but there are 3"),
        ([0.5, 0.7, -0.2], "must be finite and non-negative"),
        ([0.5, 0.5, 0.5], "sums to 1.5, not 1; normalise it"),
        ([0, 0, 0], "sums to 0"),
        ("0.6,x,0.2", "must be comma-separated numbers"),
    ],
)
def test_bad_mixture_is_a_clear_error(mixture, message):
    with pytest.raises(ValueError, match=message):
        check_mixture(mixture, 3)


def test_sampling_is_reproducible_with_a_seed(experts):
    agg = build("logit", experts)
    a = agg.generate(PROMPTS, [0.4, 0.3, 0.3], max_new_tokens=8, do_sample=True, seed=3)
    b = agg.generate(PROMPTS, [0.4, 0.3, 0.3], max_new_tokens=8, do_sample=True, seed=3)
    assert a.token_ids == b.token_ids


def test_preference_maps_to_mixture(experts):
    np.testing.assert_allclose(experts.mixture_for([0.6, 0.2, 0.2]), [0.6, 0.2, 0.2])
    with pytest.raises(ValueError, match="preference has 2 entries"):
        experts.mixture_for([0.5, 0.5])


@pytest.fixture(scope="module")
def styled():
    return style_experts()


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_preference_moves_outputs_in_the_expected_direction(styled, aggregation):
    """Weight moved from the clarity expert (steps style) to the conciseness expert (direct style): shorter, less
    clear answers. The first tokens decide the style, so 16 tokens tell them apart."""
    agg = build(aggregation, styled)
    lengths, steps_share = [], []
    for pref in ([0.0, 0.0, 1.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0]):
        out = agg.generate(PROMPTS[:2], styled.mixture_for(pref), max_new_tokens=16)
        lengths.append(np.mean([len(t) for t in out.token_ids]))
        steps_share.append(np.mean([t.startswith("First") for t in out.texts]))
    assert lengths[0] >= lengths[1] >= lengths[2] and lengths[0] > lengths[2], lengths
    assert steps_share[0] == 1.0 and steps_share[2] == 0.0, steps_share
    assert OBJECTIVES == styled.objectives

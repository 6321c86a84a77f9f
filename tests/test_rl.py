"""Advantage estimators, covariance diagnostic and the Gram probe against plain-loop / brute-force computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.rl.advantages import compute_advantages, is_linear
from moalign.rl.covariance import within_group_covariance
from moalign.rl.gram import GramProbe, per_objective_losses, select_parameters


def _loop_grpo(r, g, scale):
    out = []
    groups = [r[i : i + g] for i in range(0, len(r), g)]
    batch = [x for x in r if not math.isnan(x)]
    bmean = sum(batch) / len(batch)
    bstd = math.sqrt(sum((x - bmean) ** 2 for x in batch) / (len(batch) - 1))
    for grp in groups:
        vals = [x for x in grp if not math.isnan(x)]
        m = sum(vals) / len(vals) if vals else math.nan
        s = math.sqrt(sum((x - m) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else math.nan
        for x in grp:
            a = x - m
            if scale == "group":
                a = a / (s + 1e-4)
            elif scale == "batch":
                a = a / (bstd + 1e-4)
            out.append(0.0 if math.isnan(a) else a)
    return out


def _loop_rloo(r, g):
    out = []
    for i in range(0, len(r), g):
        grp = r[i : i + g]
        for j, x in enumerate(grp):
            others = [y for k, y in enumerate(grp) if k != j and not math.isnan(y)]
            out.append(0.0 if math.isnan(x) or not others else x - sum(others) / len(others))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_matches_loop(seed, scale):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 3, size=12).astype(float)
    r[rng.random(12) < 0.15] = np.nan
    got = compute_advantages(torch.tensor(r), "grpo", 4, scale).tolist()
    np.testing.assert_allclose(got, _loop_grpo(r.tolist(), 4, scale), atol=1e-5, err_msg=f"seed={seed}")


@pytest.mark.parametrize("seed", range(5))
def test_rloo_matches_loop(seed):
    rng = np.random.default_rng(seed)
    r = rng.random(12)
    r[rng.random(12) < 0.2] = np.nan
    got = compute_advantages(torch.tensor(r), "rloo", 3).tolist()
    np.testing.assert_allclose(got, _loop_rloo(r.tolist(), 3), atol=1e-6, err_msg=f"seed={seed}")


def test_reinforce_batch_whitening():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    a = compute_advantages(r, "reinforce", 3, "batch")
    mean, std = r.mean(), r.std()
    torch.testing.assert_close(a, (r - mean) / (std + 1e-4))
    torch.testing.assert_close(compute_advantages(r, "reinforce", 3, "none"), r - mean)


def test_per_objective_columns_match_scalar_calls():
    r = torch.tensor(np.random.default_rng(0).random((8, 3)), dtype=torch.float32)
    for est in ("grpo", "rloo", "reinforce"):
        full = compute_advantages(r, est, 4, "group")
        for k in range(3):
            torch.testing.assert_close(full[:, k], compute_advantages(r[:, k], est, 4, "group"))


@pytest.mark.parametrize("est,scale", [("rloo", "group"), ("grpo", "none"), ("reinforce", "none")])
def test_linear_estimators_commute_with_scalarization(est, scale):
    assert is_linear(est, scale)
    r = torch.tensor(np.random.default_rng(1).random((8, 3)), dtype=torch.float64)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    lhs = compute_advantages(r @ w, est, 4, scale)
    rhs = compute_advantages(r, est, 4, scale).double() @ w
    torch.testing.assert_close(lhs.double(), rhs.double(), atol=1e-5, rtol=1e-5)


def test_grpo_with_std_is_not_linear():
    assert not is_linear("grpo", "group")
    r = torch.tensor(np.random.default_rng(2).random((8, 3)))
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    lhs = compute_advantages(r @ w, "grpo", 4, "group").double()
    rhs = compute_advantages(r, "grpo", 4, "group").double() @ w
    assert not torch.allclose(lhs, rhs, atol=1e-3)


def test_unknown_estimator_names_valid_ones():
    with pytest.raises(ValueError, match="grpo, reinforce, rloo"):
        compute_advantages(torch.zeros(4), "ppo", 2)


def test_covariance_matches_numpy_per_group():
    rng = np.random.default_rng(3)
    r = rng.integers(0, 2, size=(12, 2)).astype(float)
    s = rng.normal(size=12)
    gid = np.repeat(np.arange(3), 4)
    expected = []
    for k in range(2):
        covs = [np.cov(r[gid == g, k], s[gid == g], bias=True)[0, 1] for g in range(3)]
        expected.append(np.mean(covs))
    np.testing.assert_allclose(within_group_covariance(r, s, gid), expected)


# ---------------------------------------------------------------------------------------------------------------
# Gram probe vs brute-force torch.autograd.grad
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from moalign.tiny import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer(seed=0, num_hidden_layers=3)
    return model


def _logps(model, ids, n_prompt):
    logits = model(input_ids=ids).logits[:, n_prompt - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, ids[:, n_prompt:].unsqueeze(-1)).squeeze(-1)


def test_default_selection_is_middle_third(tiny):
    names = [n for n, _ in select_parameters(tiny)]
    assert names and all(".layers.1." in n for n in names)
    assert [n for n, _ in select_parameters(tiny, layers="0,2")][0].startswith("model.layers.0.")
    with pytest.raises(ValueError, match="outside the model's 3 decoder layers"):
        select_parameters(tiny, layers="5")
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        select_parameters(tiny, regex="nope")


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_gram_matches_brute_force(tiny, loss_type):
    torch.manual_seed(0)
    params = [p for _, p in select_parameters(tiny)]
    ids = torch.randint(5, 60, (6, 12))
    mask = torch.ones(6, 8)
    mask[0, 6:] = 0
    adv = torch.randn(6, 3)
    micro = [slice(0, 3), slice(3, 6)]

    probe = GramProbe(tiny, select_parameters(tiny), 3)
    probe.reset(len(micro))
    for sl in micro:
        with probe.capture():
            lp = _logps(tiny, ids[sl], 4)
        m = mask[sl]
        probe.accumulate(lp, lambda x, a, m=m: per_objective_losses(x, None, a[:, None], m, loss_type)[0], adv[sl],
                         scale=0.5)
    gram, _ = probe.finish()

    # brute force: full gradient of each objective's summed loss, then dot products
    grads = []
    for k in range(3):
        total = 0
        for sl in micro:
            lp = _logps(tiny, ids[sl], 4)
            ratio = torch.exp(lp - lp.detach())
            per_tok = -ratio * adv[sl, k : k + 1] * mask[sl]
            if loss_type == "grpo":
                loss = (per_tok.sum(1) / mask[sl].sum(1)).mean()
            else:
                loss = per_tok.sum() / mask[sl].sum()
            total = total + 0.5 * loss
        g = torch.autograd.grad(total, params)
        grads.append(torch.cat([x.reshape(-1) for x in g]).double())
    v = torch.stack(grads)
    torch.testing.assert_close(gram, v @ v.T, rtol=1e-4, atol=1e-9)
    assert torch.all(torch.linalg.eigvalsh(gram) > -1e-9)

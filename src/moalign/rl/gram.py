"""Per-objective policy-gradient statistics: the K×K Gram matrix ``G_ij = <∇J_i, ∇J_j>`` over a parameter subset.

The gradient-level strategies (``gradient``, ``mgda``, ``nash_mtl``, ``gradnorm``) only need inner products between
the K per-objective gradients ``g_k = ∇_θ L(A_k)``, where ``L(A)`` is the trainer's own policy loss (TRL's
``_compute_loss``: its ``loss_type`` normalisation, masks, importance ratios, clipping) evaluated with objective k's
advantages ``A_k`` instead of the scalarized ones. The probe computes them exactly, at a cost that does not grow with
K, from three facts:

1. **Sign-wise linearity of the loss in the advantages.** For every TRL loss type the per-token gradient of ``L``
   w.r.t. the log-probabilities is, for sequence b, ``|A[b]|`` times a direction that depends only on the sign of
   ``A[b]`` (clipping, the off-policy mask and SAPO/VESPO coefficients depend on the sign, never on the magnitude;
   the normalisers are constants). So two cheap evaluations of TRL's loss on a detached leaf, with ``A ≡ +1`` and
   ``A ≡ -1``, give the directions ``d±`` (B, T) and the per-sequence loss terms; objective k's coefficient is
   ``c_k[b] = |A_k[b]| · d^{sign A_k[b]}[b]`` (:func:`loss_directions`). When ``d- = -d+`` (on-policy, no active
   clip) one direction suffices. ``tests/test_rl.py`` checks this against autograd of TRL's own loss per loss type.
2. **Sequences are independent in a decoder.** One backward pass per direction (one or two, never K) from the
   log-probabilities to the outputs of the probed modules gives per-sequence output gradients ``δ_j[b]``; objective
   k's output gradient is ``Σ_j α[k, j, b] δ_j[b]``.
3. **A module's parameter gradient is a local function of its input and output gradient.** For ``nn.Linear``
   ``∇W = δᵀx``, for ``nn.Embedding`` a scatter-add; any other module (norms) is re-run locally on its captured
   input and differentiated w.r.t. its own parameters. So the K per-objective gradients of each probed tensor are
   K small matmuls on captured activations, formed one tensor at a time.

Each tensor's ``(K, numel)`` block is added into ``G`` and dropped (streaming): no ``K × probed-parameters`` buffer
when each rank's generation batch is one micro-batch. Under data parallelism (DDP, or FSDP2, whose modules see
unsharded parameters during forward) each block is all-reduced (mean over ranks) before it enters ``G``, so ``G`` is
the Gram of the **global** gradient — exact, at a communication cost of K × (probed parameters) per step. With several
micro-batches per rank the blocks must be summed before the Gram (cross-micro-batch terms), so the probe keeps one
float32 ``(K, numel)`` accumulator per probed tensor (documented in ``docs/trainer.md``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "GramProbe",
    "GramSkipped",
    "decoder_layers",
    "gram_setup_problem",
    "loss_directions",
    "per_objective_losses",
    "select_parameters",
]


class GramSkipped(RuntimeError):
    """The step's Gram matrix cannot be used; ``reason`` says why (recorded as the step's ``skip_reason``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The model's stack of decoder layers (the longest ``ModuleList`` named ``layers``/``h``/``blocks``)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            if best is None or len(module) > len(best):
                best = module
    return best


def _layers_from_lowest_probed(model: nn.Module, probed: set[int]) -> list[nn.Module]:
    """The decoder layers from the lowest one that holds a probed module up to the top: those the probe's
    backward from the log-probabilities passes through (empty when no probed module is in a decoder layer)."""
    stack = decoder_layers(model)
    if stack is None:
        return []
    holding = [i for i, layer in enumerate(stack) if any(id(m) in probed for m in layer.modules())]
    return list(stack[min(holding):]) if holding else []


def _parse_layers(spec: str | Sequence[int], n_layers: int) -> list[int]:
    if isinstance(spec, str):
        ids: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.extend(range(lo, hi + 1))
            elif part:
                ids.append(int(part))
    else:
        ids = [int(i) for i in spec]
    bad = [i for i in ids if not 0 <= i < n_layers]
    if bad or not ids:
        raise ValueError(
            f"gram_layers={spec!r} selects layer ids {bad or '(none)'} outside the model's {n_layers} decoder layers; "
            f"use ids in 0..{n_layers - 1}, e.g. '{n_layers // 3}-{2 * n_layers // 3 - 1}'"
        )
    return sorted(set(ids))


def select_parameters(
    model: nn.Module, layers: str | Sequence[int] | None = None, regex: str | None = None
) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters the Gram matrix is computed over.

    Priority: ``regex`` (matched with ``re.search`` against parameter names) > ``layers`` (decoder layer ids,
    ``"10-25"`` or a list) > default. Default: all trainable parameters when the model has frozen ones (PEFT/LoRA),
    else the middle third of the decoder layers.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters, so per-objective gradients cannot be computed")
    if regex is not None:
        pattern = re.compile(regex)
        chosen = [(n, p) for n, p in trainable if pattern.search(n)]
        if not chosen:
            raise ValueError(f"gram_param_regex={regex!r} matches no trainable parameter (e.g. {trainable[0][0]!r})")
        return chosen
    frozen = any(not p.requires_grad for p in model.parameters())
    if layers is None and frozen:
        return trainable
    stack = decoder_layers(model)
    if stack is None:
        if layers is not None:
            raise ValueError("gram_layers is set but the model has no decoder layer stack; use gram_param_regex")
        return trainable
    n = len(stack)
    ids = _parse_layers(layers, n) if layers is not None else list(range(n // 3, max(n // 3 + 1, 2 * n // 3)))
    wanted = {id(p) for i in ids for p in stack[i].parameters()}
    chosen = [(name, p) for name, p in trainable if id(p) in wanted]
    if not chosen:
        raise ValueError(f"decoder layers {ids} have no trainable parameters; set gram_param_regex instead")
    return chosen


def gram_setup_problem(
    *,
    zero_stage: int | None = None,
    fsdp_version: int | None = None,
    gradient_checkpointing: bool = False,
    use_reentrant: bool | None = None,
) -> str | None:
    """Why the Gram probe cannot run on this parallel setup (with what to change), or None when it can.

    The probe captures the probed modules' inputs and output gradients during forward/backward, so it needs the
    modules to run on full (unsharded) weights inside one autograd graph: DDP, ZeRO-1/2, FSDP2 and non-reentrant
    checkpointing qualify; FSDP1 (flat parameters), ZeRO-3 (parameters partitioned outside autograd) and reentrant
    checkpointing (the forward runs under ``no_grad`` and is replayed in a separate graph) do not.
    """
    if zero_stage == 3:
        return ("DeepSpeed ZeRO-3 partitions parameters outside autograd, which the per-objective Gram probe cannot "
                "follow; use ZeRO-2 (zero_stage: 2) or FSDP2 (fsdp_version: 2), or a strategy without 'gram' needs")
    if fsdp_version is not None and fsdp_version != 2:
        return ("FSDP1 flattens parameters, which the per-objective Gram probe does not support; use FSDP2 "
                "(fsdp_config: {fsdp_version: 2}) or DDP, or a strategy without 'gram' needs")
    if gradient_checkpointing and use_reentrant is not False:
        return ("reentrant gradient checkpointing replays the forward outside the autograd graph the Gram probe "
                "differentiates; set gradient_checkpointing_kwargs: {use_reentrant: false}")
    return None


def loss_directions(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logps: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-token gradient directions of a policy loss that is linear in ``|A|`` on each advantage sign.

    ``loss_fn(logps, advantages)`` returns the scalar loss for ``(B, T)`` log-probabilities and ``(B,)``
    advantages. Returns ``(directions, per_seq_pos, per_seq_neg)``: ``directions`` is ``[d+]`` when
    ``d- == -d+`` else ``[d+, d-]`` — each ``(B, T)`` with ``d± = ∂L/∂logps`` at ``A ≡ ±1`` — and ``per_seq_±``
    ``(B,)`` are ``∂L/∂A`` at ``A ≡ ±1``, so ``L(A) = Σ_b A[b] · per_seq_{sign A[b]}[b]``.
    """
    b = logps.shape[0]
    out = []
    for sign in (1.0, -1.0):
        leaf = logps.detach().requires_grad_(True)
        adv = torch.full((b,), sign, dtype=logps.dtype, device=logps.device, requires_grad=True)
        with torch.enable_grad():
            loss = loss_fn(leaf, adv)
            if not loss.requires_grad:
                d, s = torch.zeros_like(leaf), torch.zeros_like(adv)
            else:
                d, s = torch.autograd.grad(loss, (leaf, adv), allow_unused=True)
                d = torch.zeros_like(leaf) if d is None else d
                s = torch.zeros_like(adv) if s is None else s
        out.append((d.detach(), s.detach()))
    (d_pos, s_pos), (d_neg, s_neg) = out
    if torch.equal(d_neg, -d_pos):
        return [d_pos], s_pos, s_neg
    return [d_pos, d_neg], s_pos, s_neg


def _coefficients(advantages: torch.Tensor, num_directions: int) -> torch.Tensor:
    """``(K, D, B)`` weights of the directions in each objective's per-sequence output gradient."""
    a = advantages.T.to(torch.float32)  # (K, B)
    if num_directions == 1:
        return a.unsqueeze(1)
    return torch.stack([a.clamp(min=0), (-a).clamp(min=0)], dim=1)  # |A|·d+ where A > 0, |A|·d- where A < 0


def per_objective_losses(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """``(K,)`` unclipped surrogate losses ``L_k = agg(-A_k · ρ)`` aggregated like TRL's ``loss_type``.

    A framework-free reference (used by tests and by callers without a TRL trainer); the trainer itself evaluates
    TRL's own loss through :func:`loss_directions`. Shapes: ``per_token_logps``/``mask`` ``(B, T)``, ``advantages``
    ``(B, K)``.
    """
    old = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps
    ratio = torch.exp(per_token_logps - old)  # (B, T)
    mask = mask.to(ratio.dtype)
    per_token = -ratio.unsqueeze(-1) * advantages.to(ratio.dtype).unsqueeze(1)  # (B, T, K)
    masked = per_token * mask.unsqueeze(-1)
    if loss_type in ("grpo", "sapo"):
        return (masked.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)).mean(0)
    if loss_type == "luspo":
        return masked.sum(1).mean(0)
    if loss_type == "dr_grpo" and max_completion_length:
        return masked.sum((0, 1)) / (mask.shape[0] * max_completion_length)
    return masked.sum((0, 1)) / mask.sum().clamp(min=1.0)  # bnpo, dapo, cispo, vespo: token-level mean


@dataclass
class _Call:
    """One forward call of a probed module: its (detached) inputs, its output (on the graph), cloned params."""

    module: nn.Module
    args: tuple
    kwargs: dict
    output: torch.Tensor
    params: dict[str, torch.Tensor] | None = None


class GramProbe:
    """Exact K×K Gram matrix of per-objective gradients, streamed one parameter tensor at a time.

    Usage per step::

        probe.reset(num_micro_batches)
        for each micro-batch:
            with probe.capture():
                logps = forward(...)                 # the probed modules' calls are recorded
            probe.accumulate(logps, loss_fn, advantages, scale)
        gram, losses = probe.finish()               # all-reduced over ranks when ``all_reduce`` is given

    ``params`` are ``(name, parameter)`` pairs of ``model`` (e.g. from :func:`select_parameters`); the probe hooks
    the modules that own them directly, so it keeps working when a wrapper (DDP, FSDP2) swaps the parameter
    tensors after construction. ``all_reduce(t)`` must average ``t`` over ranks in place-or-not and return it.
    ``keep_activations``: see :meth:`capture` (activation checkpointing only).
    """

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[tuple[str, nn.Parameter]],
        num_objectives: int,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        keep_activations: bool = False,
    ):
        wanted = {id(p): name for name, p in params if p.requires_grad}
        if not wanted:
            raise ValueError("GramProbe needs at least one trainable parameter")
        self.num_objectives = int(num_objectives)
        self.all_reduce = all_reduce
        self.modules: list[tuple[nn.Module, list[str]]] = []  # (module, attribute names of its probed params)
        self.param_names: list[str] = []
        owner: dict[int, str] = {}
        for mod_name, module in model.named_modules():
            own = [n for n, p in module.named_parameters(recurse=False) if id(p) in wanted]
            for n in own:
                pid = id(getattr(module, n))
                full = f"{mod_name}.{n}" if mod_name else n
                if pid in owner:
                    raise ValueError(
                        f"parameter {wanted[pid]!r} is used by several modules ({owner[pid]!r} and {full!r}, e.g. "
                        "tied embeddings); leave it out of the Gram subset (gram_layers / gram_param_regex)")
                owner[pid] = full
            if own:
                self.modules.append((module, own))
                self.param_names.extend(wanted[id(getattr(module, n))] for n in own)
        missing = set(wanted) - set(owner)
        if missing:
            raise ValueError(f"parameters {sorted(wanted[i] for i in missing)[:3]} are not parameters of the model")
        self.numel = sum(_full_numel(getattr(m, n)) for m, names in self.modules for n in names)
        probed = {id(m) for m, _ in self.modules}
        self._upper_layers = _layers_from_lowest_probed(model, probed) if keep_activations else []
        self._capturing = False
        self._calls: list[_Call] = []
        self._handles: list = []
        self.reset()

    # -------------------------------------------------------------------------------------------------------------
    def reset(self, num_micro_batches: int = 1) -> None:
        """Starts a step whose gradient is the sum of ``num_micro_batches`` micro-batches' (scaled) gradients."""
        self._gram = torch.zeros(self.num_objectives, self.num_objectives, dtype=torch.float64)
        self._losses = torch.zeros(self.num_objectives, dtype=torch.float64)
        self._buffers: dict[tuple[int, str], torch.Tensor] | None = {} if num_micro_batches > 1 else None
        self._calls = []
        self.peak_block_bytes = 0

    @contextlib.contextmanager
    def capture(self):
        """Records the probed modules' calls during the forward pass run inside this context."""
        if not self._handles:
            for module, _ in self.modules:
                self._handles.append(module.register_forward_hook(self._hook, with_kwargs=True))
        # Under activation checkpointing the probe's backward (log-probs -> probed modules) recomputes every
        # checkpointed layer above the probed ones, and the update's backward, on the same forward, recomputes them
        # again. With keep_activations this forward keeps those layers' activations instead, so both backwards share
        # them and only the layers below are recomputed (once, by the update); the cost is their activation memory
        # until the update's backward frees it (docs/trainer.md, "Gram probe under activation checkpointing").
        unchecked = [layer for layer in self._upper_layers if getattr(layer, "gradient_checkpointing", False)]
        for layer in unchecked:
            layer.gradient_checkpointing = False
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False
            for layer in unchecked:
                layer.gradient_checkpointing = True

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, module, args, kwargs, output):
        if not self._capturing or not torch.is_grad_enabled():
            return None
        out = output[0] if isinstance(output, tuple) else output
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return None
        detach = lambda v: v.detach() if isinstance(v, torch.Tensor) else v  # noqa: E731
        call = _Call(module, tuple(detach(a) for a in args), {k: detach(v) for k, v in kwargs.items()}, out)
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            # Re-run locally at backward time; FSDP2 frees unsharded weights after forward, so keep a copy
            # (only for such modules — norms — whose parameters are small).
            call.params = {n: p.detach().clone() for n, p in module.named_parameters(recurse=False)}
        self._calls.append(call)
        return None

    # -------------------------------------------------------------------------------------------------------------
    def accumulate(
        self,
        logps: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        advantages: torch.Tensor,
        scale: float = 1.0,
        retain_graph: bool = False,
    ) -> None:
        """Adds one micro-batch: ``logps`` (B, T) on the graph recorded by :meth:`capture`, ``advantages`` (B, K)."""
        calls, self._calls = self._calls, []
        k = self.num_objectives
        if advantages.shape != (logps.shape[0], k):
            raise ValueError(f"expected advantages of shape {(logps.shape[0], k)}, got {tuple(advantages.shape)}")
        directions, s_pos, s_neg = loss_directions(loss_fn, logps)
        adv = advantages.detach().to(s_pos.dtype)
        losses = (adv.clamp(min=0) * s_pos.unsqueeze(1) + adv.clamp(max=0) * s_neg.unsqueeze(1)).sum(0)
        self._losses += losses.double().cpu() * scale
        alpha = _coefficients(adv, len(directions)).to(logps.device) * scale  # (K, D, B)
        if not calls:
            raise GramSkipped("no probed module ran with gradients enabled in the forward pass; the probed "
                              "parameters are not on the loss's autograd graph")
        outputs = [c.output for c in calls]
        deltas = []  # per direction: the output gradient of every call
        for j, d in enumerate(directions):
            keep = retain_graph or j < len(directions) - 1
            grads = torch.autograd.grad(logps, outputs, grad_outputs=d.to(logps.dtype), retain_graph=keep,
                                        allow_unused=True)
            deltas.append(list(grads))
        del outputs
        by_module: dict[int, list[int]] = {}  # a module may run several times in one forward
        for i, c in enumerate(calls):
            by_module.setdefault(id(c.module), []).append(i)
        for module, names in self.modules:
            blocks: dict[str, torch.Tensor] = {}
            for i in by_module.get(id(module), []):
                ds = [deltas[j][i] for j in range(len(directions))]
                for j in range(len(directions)):
                    deltas[j][i] = None
                if all(d is None for d in ds):
                    continue
                for name, block in self._module_blocks(calls[i], names, ds, alpha).items():
                    blocks[name] = block if name not in blocks else blocks[name] + block
                calls[i] = None
            for name in names:
                self._add_block(module, name, blocks.pop(name, None), logps.device)

    def _module_blocks(self, call: _Call, names: list[str], ds: list, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{param name: (K, numel) float32}`` per-objective gradients of one module call (each row in a fixed
        layout per parameter, not necessarily the parameter's own: only inner products are used)."""
        module, k = call.module, self.num_objectives
        deltas = [d.float() if d is not None else None for d in ds]
        ref = next(d for d in deltas if d is not None)
        b = ref.shape[0]

        def objective_delta(i):  # (B, ..., out) output gradient of objective i
            total = torch.zeros_like(ref)
            for j, d in enumerate(deltas):
                if d is not None:
                    total += alpha[i, j].view(b, *([1] * (d.dim() - 1))) * d
            return total

        out: dict[str, torch.Tensor] = {}
        if isinstance(module, nn.Linear):
            # ∇W_k = Σ_n (Σ_j α[k,j,b(n)] δ_j[n]) x[n]ᵀ: per direction one GEMM δ_jᵀ [α_1 x | … | α_K x].
            x = call.args[0].float().reshape(b, -1, module.in_features)
            n_in, n_out = module.in_features, module.out_features
            w_acc, b_acc = None, None
            for j, d in enumerate(deltas):
                if d is None:
                    continue
                d = d.reshape(b, -1, n_out)
                a = alpha[:, j].view(k, b, 1, 1)
                if "weight" in names:
                    xk = (a * x.unsqueeze(0)).permute(1, 2, 0, 3).reshape(-1, k * n_in)  # (B·T, K·in)
                    g = xk.T @ d.reshape(-1, n_out)  # (K·in, out): row k is ∇W_kᵀ, contiguous (no copy below)
                    w_acc = g if w_acc is None else w_acc.add_(g)
                if "bias" in names:
                    g = (a.view(k, b, 1) * d.sum(1).unsqueeze(0)).sum(1)  # (K, out)
                    b_acc = g if b_acc is None else b_acc + g
            if w_acc is not None:  # ∇Wᵀ flattened: the same permutation of every row leaves the Gram unchanged
                out["weight"] = w_acc.view(k, -1)
            if b_acc is not None:
                out["bias"] = b_acc
            return out
        if isinstance(module, nn.Embedding):
            ids = call.args[0].reshape(-1)
            rows = []
            for i in range(k):
                dk = objective_delta(i).reshape(-1, module.embedding_dim)
                g = torch.zeros(module.num_embeddings, module.embedding_dim, device=dk.device, dtype=torch.float32)
                g.index_add_(0, ids, dk)
                if module.padding_idx is not None:
                    g[module.padding_idx] = 0
                rows.append(g.reshape(-1))
            return {"weight": torch.stack(rows)}
        # Any other module: re-run it on its captured input with its captured parameters and differentiate.
        params = {n: (p.float().requires_grad_(n in names)) for n, p in call.params.items()}
        with torch.enable_grad():
            args = tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in call.args)
            y = torch.func.functional_call(module, params, args, call.kwargs)
            y = y[0] if isinstance(y, tuple) else y
            targets = [params[n] for n in names]
            stacked = torch.stack([objective_delta(i).to(y.dtype) for i in range(k)])
            grads = torch.autograd.grad(y, targets, grad_outputs=stacked, is_grads_batched=True, allow_unused=True)
            rows = {n: (g if g is not None else torch.zeros(k, *p.shape)).reshape(k, -1).float()
                    for n, g, p in zip(names, grads, targets)}
        return rows

    def _zeros(self, module: nn.Module, name: str, device) -> torch.Tensor:
        ref = dict(module.named_parameters(recurse=False))[name]
        return torch.zeros(self.num_objectives, _full_numel(ref), dtype=torch.float32, device=device)

    def _add_block(self, module: nn.Module, name: str, block: torch.Tensor | None, device) -> None:
        if block is not None:
            self.peak_block_bytes = max(self.peak_block_bytes, block.numel() * block.element_size())
        if self._buffers is not None:  # several micro-batches: sum before the Gram (cross-micro-batch terms)
            if block is not None:
                key = (id(module), name)
                buf = self._buffers.get(key)
                self._buffers[key] = block if buf is None else buf.add_(block)
            return
        if block is None:
            if self.all_reduce is None:
                return  # the module did not run (e.g. an unused expert): contributes nothing
            block = self._zeros(module, name, device)  # every rank must take part in every all-reduce
        self._gram_add(block)

    def _gram_add(self, block: torch.Tensor) -> None:
        if self.all_reduce is not None:
            block = self.all_reduce(block)
        gram = torch.zeros_like(self._gram, device=block.device)
        for start in range(0, block.shape[1], _GRAM_CHUNK):  # float64 products without a float64 copy of the block
            v = block[:, start : start + _GRAM_CHUNK].double()
            gram += v @ v.T
        self._gram += gram.cpu()

    def finish(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gram (K, K), losses (K,))`` float64 of the step's (global, when ``all_reduce`` is set) gradient."""
        if self._buffers is not None:
            buffers, self._buffers = self._buffers, {}
            for module, names in self.modules:  # same order on every rank
                for name in names:
                    block = buffers.pop((id(module), name), None)
                    if block is None and self.all_reduce is not None:
                        block = self._zeros(module, name, device)
                    if block is not None:
                        self._gram_add(block)
        losses = self._losses.clone()
        if self.all_reduce is not None:
            losses = self.all_reduce(losses).cpu()
        return self.gram(), losses

    def gram(self) -> torch.Tensor:
        """The ``(K, K)`` Gram matrix accumulated so far (float64)."""
        return self._gram.clone()

    def losses(self) -> torch.Tensor:
        """``(K,)`` per-objective losses accumulated so far (float64, local to this rank)."""
        return self._losses.clone()


_GRAM_CHUNK = 1 << 22  # columns per float64 slice of a (K, numel) block: K × 32 MiB


def _full_numel(p: torch.Tensor) -> int:
    """Number of elements of the full (unsharded) parameter, also for DTensors."""
    return int(torch.Size(p.shape).numel())

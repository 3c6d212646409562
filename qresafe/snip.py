"""Safety-critical weights (paper §3.2): SNIP scores -> a per-layer mask M_Q -> LoRA mask pair (M_A, M_B).

    scores = safety_scores(model, batches, layers, full_precision_weights, loss="dpo", beta=0.01)
    mask_q = top_fraction(scores[name], tau)            # M_Q: which weights may change
    mask_a, mask_b = decompose(mask_q, scores[name], r)  # where the LoRA factors may change

Scores. I(W_ij) = |W_ij * dL/dQ_ij|, averaged over the patch set (Lee et al.'s SNIP connection
sensitivity with the safety loss L): W is the full-precision weight, the gradient is taken through
the *dequantized* weight Q of the model being patched. Q's gradient is never materialised as a
parameter gradient: for a linear layer y = Q_eff x, dL/dQ_eff = sum over tokens of (dL/dy)^T x, so a
forward hook keeps x and a hook on y's gradient forms the outer product. This works the same for a
dense, a compressed-tensors (decompressed), a bitsandbytes 4-bit, an AQLM or an adapted layer (for a LoRA
layer y = (Q + s B A) x, the gradient with respect to the effective weight, which is what the paper's
re-identification during training differentiates). L is the DPO loss of the pair (reference: the model
with its adapter disabled, or the model itself when it has none, or -- for qlora, whose quantized model
carries its own adapter -- that adapter alone, PEFT adapter "ref", bases.py) or the NLL of y_w.

Masks. M_Q keeps the top `tau` fraction of each layer's entries by score (ties broken by position).

Decomposition. A LoRA update is Delta = s * B A (B: out x r, A: r x in). An arbitrary sparse M_Q is not
expressible on the factors, so we choose a structured one: row i of B is trainable when row i of the
layer is among the top-tau rows by its safety mass sum_j M_Q_ij * I_ij, and column j of A when column j
is among the top-tau columns by sum_i M_Q_ij * I_ij. Why this one: (1) each factor trains exactly a tau
fraction of its entries, the paper's parameter budget; (2) the update then lives in the rows x columns
block where M_Q's mass concentrates, once A's frozen columns start at zero (trainer.py zeroes them at the
first identification; B starts at zero anyway), so Delta = M * Delta with M = rows x columns, which is
what the merge adds (Q = Q0 + Quant(M * BA)) -- no discrepancy between what was trained and what is
saved; (3) tau = 1 gives all-ones masks (plain LoRA-DPO) and tau = 0 all-zero masks (nothing changes).
`block_coverage` reports how much of M_Q's score mass the block holds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F


# --- the loss the scores differentiate -----------------------------------------------------------------
def sequence_logps(model, batch: dict) -> torch.Tensor:
    """Sum of log p(completion token) per row of a preference batch (chosen rows, then rejected rows)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = logps.gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)


def safety_loss(model, batch: dict, *, loss: str, beta: float) -> torch.Tensor:
    """DPO loss of the pairs in `batch` (reference: the "ref" adapter, adapter disabled, or the model itself),
    or NLL of y_w."""
    if loss == "nll":
        chosen_rows = batch["input_ids"].shape[0] // 2
        half = {k: v[:chosen_rows] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return -sequence_logps(model, half).sum() / half["completion_mask"][:, 1:].sum().clamp(min=1)
    policy = sequence_logps(model, batch)
    with torch.no_grad(), _reference(model):
        reference = sequence_logps(model, batch)
    chosen, rejected = (policy - reference).chunk(2)
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


@contextmanager
def _reference(model) -> Iterator[None]:
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        # the quantized model carries its own adapter (qlora, bases.py): the reference is that adapter alone,
        # selected as TRL's DPOTrainer selects it
        from trl.trainer.utils import use_adapter

        with use_adapter(model, adapter_name="ref"):
            yield
        return
    disable = getattr(model, "disable_adapter", None)
    if disable is not None and hasattr(model, "peft_config"):
        with disable():
            yield
    else:
        yield


# --- scores ------------------------------------------------------------------------------------------
def safety_scores(model, batches: Iterable[dict], layers: dict[str, torch.nn.Module],
                  full_precision: Mapping[str, torch.Tensor], *, loss: str = "dpo",
                  beta: float = 0.01) -> dict[str, torch.Tensor]:
    """Mean over batches of |W * dL/dQ| for each named layer (fp32, on the device the gradients are on).

    `layers` maps a name to the module whose output is y = Q x (a Linear, or a LoRA-wrapped Linear);
    `full_precision` maps the same names to W (any dtype, any device; read once per layer, at the end).

    Memory: one fp32 buffer per layer, sum over batches of |dL/dQ|, formed in the backward as each layer's
    gradient arrives; since |W * g| = |W| * |g| elementwise, W multiplies the sum once at the end, one layer at
    a time, and the buffer becomes the score in place. So beside the model the scores hold 4 bytes per adapted
    weight plus one layer's transient, and only one layer's W is widened to fp32 at a time
    (`load_full_precision` reads W from the checkpoint per layer, so it is never held whole).
    """
    totals = _GradientTotals()
    handles = [module.register_forward_hook(totals.hook(name)) for name, module in layers.items()]
    # The model's mode is left as the caller set it: dropout must already be off (TRL's DPOTrainer turns
    # it off; keep_critical.py scores in eval mode), and a bitsandbytes 4-bit model must stay in training
    # mode, or the no-grad reference forward repacks its weights for CPU inference (qlora.py's trap).
    inputs_need_grad = _ensure_inputs_require_grad(model)
    count = 0
    try:
        with torch.enable_grad():
            for batch in batches:
                value = safety_loss(model, batch, loss=loss, beta=beta)
                totals.in_backward = True
                value.backward()
                totals.end_batch()
                count += 1
        model.zero_grad(set_to_none=True)  # the backward also reached trainable parameters; scoring is no step
    finally:
        for handle in handles:
            handle.remove()
        if inputs_need_grad is not None:
            inputs_need_grad.remove()
    if count == 0:
        raise ValueError("no batches to score")
    scores = totals.totals
    missing = [name for name in layers if name not in scores]
    if missing:  # a layer the loss never reached would get an all-zero score and a mask chosen by position
        raise RuntimeError(f"no gradient reached {len(missing)} scored layer(s), e.g. {missing[0]}: the SNIP scores "
                           "would be zeros")
    for name, total in scores.items():
        # |W| * sum|g| = sum |W * g| up to fp32 rounding (exactly equal for one batch); in place: no second buffer
        weight = full_precision[name].to(total.device, torch.float32)
        total.mul_(weight).abs_().div_(count)
        del weight
    zero = [name for name, total in scores.items() if not torch.any(total)]
    if zero:
        raise RuntimeError(f"{len(zero)} scored layer(s) got all-zero SNIP scores, e.g. {zero[0]}: their gradients "
                           "vanished, and a mask would be chosen by position")
    return {name: scores[name] for name in layers}  # the layers' order, not the backward's


class _GradientTotals:
    """Per layer, the sum over batches of |dL/dQ|, with dL/dQ = g^T x formed from a forward hook (x) and a hook
    on the layer output's gradient (g).

    Within a batch dL/dQ sums over every use of the layer before |.| is taken; a layer's gradient is added to
    its total as soon as its last pending use has delivered it, so normally no more than one layer's dL/dQ
    exists at a time. Under gradient checkpointing the layer runs again inside the backward: with reentrant
    checkpointing the first forward ran without grad and only the recomputed output's hook fires; with
    non-reentrant checkpointing the original output's hook fires and the recomputed output is never
    differentiated, so a recompute of a layer already hooked in this batch's forward is ignored.
    """

    def __init__(self) -> None:
        self.totals: dict[str, torch.Tensor] = {}
        self.in_backward = False
        self._pending: dict[str, torch.Tensor] = {}  # this batch's dL/dQ of a layer with uses still to come
        self._waiting: dict[str, int] = {}  # per layer, output hooks registered this batch that have not fired
        self._hooked_in_forward: set[str] = set()

    def hook(self, name: str):
        def forward_hook(_module, args, output) -> None:
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return
            if self.in_backward and name in self._hooked_in_forward:
                return  # a non-reentrant recompute: the original output's hook delivers this gradient
            if not self.in_backward:
                self._hooked_in_forward.add(name)
            self._waiting[name] = self._waiting.get(name, 0) + 1
            x = args[0].detach()

            def on_grad(grad_output: torch.Tensor) -> None:
                g = grad_output.reshape(-1, grad_output.shape[-1]).float()
                dq = g.T @ x.reshape(-1, x.shape[-1]).float()
                if name in self._pending:
                    dq = self._pending.pop(name).add_(dq)
                self._waiting[name] -= 1
                if self._waiting[name] > 0:
                    self._pending[name] = dq
                else:
                    self._add(name, dq)

            output.register_hook(on_grad)

        return forward_hook

    def end_batch(self) -> None:
        """Add what is still pending (a use whose output never got a gradient) and reset the batch state."""
        for name, dq in self._pending.items():
            self._add(name, dq)
        self._pending.clear()
        self._waiting.clear()
        self._hooked_in_forward.clear()
        self.in_backward = False

    def _add(self, name: str, dq: torch.Tensor) -> None:
        total = self.totals.get(name)
        if total is None:
            self.totals[name] = dq.abs_()
        else:
            total.add_(dq.abs_())


def _ensure_inputs_require_grad(model):
    """Make the embeddings' output require grad, so every layer output does even when no parameter is
    trainable (scoring a frozen full-precision model). Returns the hook handle to remove, or None."""
    if any(p.requires_grad for p in model.parameters()):
        return None
    embeddings = model.get_input_embeddings()
    return embeddings.register_forward_hook(lambda _m, _a, out: out.requires_grad_(True))


# --- masks -------------------------------------------------------------------------------------------
def top_fraction(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the `fraction` highest-scoring entries (round to nearest count; stable ties)."""
    count = int(round(fraction * scores.numel()))
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        order = torch.argsort(scores.flatten(), descending=True, stable=True)
        mask[order[:count]] = True
    return mask.view_as(scores)


def decompose(mask_q: torch.Tensor, scores: torch.Tensor, rank: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(M_A, M_B) for factors A (r x in) and B (out x r): top-tau columns and rows by M_Q's score mass."""
    masked = torch.where(mask_q, scores, torch.zeros_like(scores))
    rows = top_fraction(masked.sum(dim=1), tau)  # (out,)
    cols = top_fraction(masked.sum(dim=0), tau)  # (in,)
    mask_b = rows.unsqueeze(1).expand(-1, rank).contiguous()
    mask_a = cols.unsqueeze(0).expand(rank, -1).contiguous()
    return mask_a, mask_b


def block_coverage(mask_q: torch.Tensor, scores: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> float:
    """Share of M_Q's score mass inside the rows x columns block the factor masks allow."""
    block = mask_b[:, :1] & mask_a[:1, :]
    total = torch.where(mask_q, scores, torch.zeros_like(scores)).sum()
    inside = torch.where(mask_q & block, scores, torch.zeros_like(scores)).sum()
    return float(inside / total) if total > 0 else math.nan


# --- where W comes from ------------------------------------------------------------------------------
class LazyWeights(Mapping[str, torch.Tensor]):
    """Name -> W, each produced by its loader when asked for and not kept: the scores read each layer's W
    once per identification, so the full-precision model never has to be in memory at once."""

    def __init__(self, loaders: Mapping[str, Callable[[], torch.Tensor]]) -> None:
        self._loaders = dict(loaders)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._loaders[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def load_full_precision(base_dir: Path, names: Iterable[str]) -> LazyWeights:
    """`<name>.weight` for each layer name from the full-precision checkpoint (sharded or not), read from its
    safetensors file on each access, in the checkpoint's dtype. Missing names fail here, before any scoring."""
    from safetensors import safe_open

    wanted = {f"{name}.weight": name for name in names}
    found: dict[str, Callable[[], torch.Tensor]] = {}
    for path in sorted(Path(base_dir).glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                if key in wanted:
                    found[wanted[key]] = functools.partial(_read_tensor, path, key)
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise ValueError(f"full-precision weights not found in {base_dir}: {', '.join(missing[:3])}")
    return LazyWeights(found)


def _read_tensor(path: Path, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.get_tensor(key)


def adapted_layers(model, target_modules: Iterable[str]) -> dict[str, torch.nn.Module]:
    """The target linear layers of a (possibly PEFT-wrapped) model, by checkpoint name (no PEFT prefix)."""
    targets = set(target_modules)
    layers = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        # `codebooks`: aqlm.QuantizedLinear, which stores codes, codebooks and scales instead of a weight
        if leaf in targets and any(hasattr(module, k) for k in ("weight", "base_layer", "codebooks")):
            layers[checkpoint_name(name)] = module
    return layers


def checkpoint_name(module_name: str) -> str:
    """`base_model.model.model.layers.0.q_proj` (PEFT) -> `model.layers.0.q_proj` (checkpoint)."""
    return module_name.removeprefix("base_model.model.")

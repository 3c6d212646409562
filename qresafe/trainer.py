"""`MaskedDPOTrainer`: TRL's DPOTrainer with the Q-resafe update rule (paper Algorithm 1).

    trainer = MaskedDPOTrainer(model=quantized, args=QResafeConfig(tau=0.6, reidentify_every=1000, ...),
                               train_dataset=pairs, processing_class=tokenizer, peft_config=LoraConfig(...),
                               full_precision=weights)
    trainer.train()

Algorithm 1, as this class runs it:

    for t = 0, 1, ..., T-1:
        if t % K == 0:                                  # identify_masks()
            I   = mean over pairs |W * dL_DPO/dQ|        #   snip.safety_scores
            M_Q = top-tau(I) per layer                   #   snip.top_fraction
            (M_A, M_B) = decompose(M_Q)                  #   snip.decompose
        loss = L_DPO(Q + s B A ; reference Q, beta)       # DPOTrainer.compute_loss (adapter off = reference)
        A <- M_A * (A - eta grad_A) + (1 - M_A) * A       # gradient hook (mask) + post-step restore
        B <- M_B * (B - eta grad_B) + (1 - M_B) * B

What is composed, not forked: the DPO loss, the reference (the same model with the adapter disabled: no
second copy in memory), batching, the optimizer and the schedule are DPOTrainer's. This class adds
three things: the mask identification at steps 0, K, 2K, ... (`training_step`), a gradient hook on each
LoRA factor that multiplies its gradient by the mask (so gradient clipping and the AdamW moments only
see the safety-critical entries), and an optimizer post-step hook that writes the frozen entries back
(AdamW's decoupled weight decay, and momentum left over from before a re-identification, would
otherwise still move them). Masked-out entries are therefore bit-identical to their values at the
identification that froze them, whatever the optimizer does; tests check it with torch.equal.

At the first identification the frozen columns of A are set to zero (B starts at zero anyway), so the
update B A lives in the rows x columns block the masks allow (snip.py, "Decomposition"); with tau = 1
nothing is zeroed and the trainer is plain LoRA-DPO, step for step (tested).

With `mask="exact"` the same identifications run, but M_Q is kept as it is (one bool per entry and layer, on
the CPU) instead of being decomposed: the factors train unmasked (plain LoRA-DPO, whatever tau is) and the
merge adds M_Q * s B A (merge.masked_delta), the paper's Q0 + Quant(M_Q * BA) entry for entry. Only an
integer grid can take that sparse update, so only those formats offer it (config.check_mask_format).

Precision and memory: on CUDA the config trains with bf16 autocast (where the GPU supports bf16; the LoRA
factors stay fp32 master weights) and with non-reentrant gradient checkpointing, whatever the caller passed;
on CPU the caller's settings stand (fp32 in patch.py). `effective_precision` reports what a trainer ran with.

Multi-GPU: this is a transformers Trainer, so `accelerate launch -m qresafe_bench.harness.cli.app patch ...`
runs it data-parallel; the masks are computed on each rank from the same pairs in the same order, so
they agree without communication.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

from . import snip
from .config import SCORE_LOSSES, PatchError
from .resume import OwnAdapterResume, ResumeError


@dataclass
class QResafeConfig(DPOConfig):
    r"""Configuration for `MaskedDPOTrainer` (qresafe/trainer.py): TRL's `DPOConfig` plus Algorithm 1's knobs.

    Parameters:
        > Safety-critical weights (SNIP, paper §3.2)
        tau (`float`, defaults to `0.6`):
            Fraction of each adapted layer's weights marked safety-critical (top-tau by SNIP score) and so
            allowed to change. 0 freezes everything (the patch is a no-op), 1 is plain LoRA-DPO. In [0, 1].
        reidentify_every (`int`, defaults to `1000`):
            K: recompute the SNIP scores and the masks every K optimizer steps (and at step 0), because
            which weights matter for safety moves as the model does. Positive.
        score_loss (`str`, defaults to `"dpo"`):
            What the SNIP scores differentiate: `"dpo"` (the DPO loss on the pair, the paper's choice) or
            `"nll"` (negative log-likelihood of the full-precision response y_w).
        mask (`str`, defaults to `"block"`):
            Where M_Q acts: `"block"` (rows x columns of the LoRA factors, snip.decompose) or `"exact"` (the
            factors train unmasked; M_Q multiplies the merged update, `MaskedDPOTrainer.update_masks_at`).
        snip_batch_size (`int`, defaults to `1`):
            Pairs per SNIP backward. 1 gives the exact per-pair average of |W * dL/dQ|; larger batches
            average the gradient inside a batch before taking |.| (faster, slightly different scores).
        > Overridden DPO defaults
        beta (`float`, defaults to `0.01`): the paper's DPO temperature (TRL's default is 0.1).
        learning_rate (`float`, defaults to `5e-4`): LoRA learning rate (TRL's 1e-6 is for full fine-tunes).
        gradient_checkpointing (`bool`, defaults to `False`): a memory measure that changes nothing learned;
            off on CPU so the small models here train fast; on CUDA it is switched on (with bf16 autocast where
            the GPU has bf16), see `device_precision`.
    """

    tau: float = field(default=0.6, metadata={"help": "Fraction of each layer's weights that may change."})
    reidentify_every: int = field(default=1000, metadata={"help": "K: re-identify the masks every K steps."})
    score_loss: str = field(default="dpo", metadata={"help": "Loss the SNIP scores differentiate: dpo or nll."})
    mask: str = field(default="block", metadata={"help": "Where M_Q acts: block (LoRA factors) or exact (merge)."})
    snip_batch_size: int = field(default=1, metadata={"help": "Pairs per SNIP backward (1 = exact per-pair average)."})
    beta: float = field(default=0.01, metadata={"help": "DPO temperature (paper: 0.01)."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Adapter learning rate."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations (memory measure)."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau <= 1.0:
            raise PatchError(f"--tau must be in [0, 1], got {self.tau}")
        if self.reidentify_every < 1:
            raise PatchError(f"--reidentify-every must be a positive number of steps, got {self.reidentify_every}")
        if self.score_loss not in SCORE_LOSSES:
            raise PatchError(f"--score-loss must be one of {', '.join(SCORE_LOSSES)}, got {self.score_loss!r}")
        if self.mask not in ("block", "exact"):
            raise PatchError(f"--mask must be block or exact, got {self.mask!r}")
        if self.snip_batch_size < 1:
            raise PatchError(f"snip_batch_size must be positive, got {self.snip_batch_size}")
        if self.beta <= 0:
            raise PatchError(f"--beta must be positive, got {self.beta}")
        self._apply_device_precision()
        super().__post_init__()

    def _apply_device_precision(self) -> None:
        """On CUDA, `device_precision`'s choice replaces the caller's bf16/fp16/checkpointing flags (patch.py
        passes bf16=False for every device, for the CPU's sake); elsewhere they stand. Runs before
        `super().__post_init__()`, which checks bf16 against the GPU."""
        if self.use_cpu or not torch.cuda.is_available():
            return
        plan = device_precision("cuda", torch.cuda.is_bf16_supported(including_emulation=False))
        self.bf16, self.fp16 = plan.autocast_dtype == torch.bfloat16, False
        self.gradient_checkpointing = plan.gradient_checkpointing
        kwargs = self.gradient_checkpointing_kwargs
        if kwargs is None or isinstance(kwargs, dict):  # a caller's own use_reentrant wins
            self.gradient_checkpointing_kwargs = {"use_reentrant": False, **(kwargs or {})}


@dataclass(frozen=True)
class DevicePrecision:
    """How the patch trains on a device: the autocast dtype of the forward and backward (None: no autocast,
    the weights' own dtype) and whether activations are recomputed in the backward instead of kept."""

    autocast_dtype: torch.dtype | None
    gradient_checkpointing: bool


def device_precision(device_type: str, bf16_supported: bool) -> DevicePrecision:
    """CUDA: bf16 autocast where the GPU supports it, and gradient checkpointing: together they keep a 7B
    model's activations (halved by bf16, then kept only at layer boundaries) small beside its weights on one
    GPU. Without bf16 (pre-Ampere) the GPU computes in fp32: fp16 autocast would need a gradient scaler,
    which this path does not set up. Other devices (CPU): fp32 and no checkpointing, since recomputing
    activations only costs time on the small models trained there."""
    if device_type != "cuda":
        return DevicePrecision(autocast_dtype=None, gradient_checkpointing=False)
    return DevicePrecision(autocast_dtype=torch.bfloat16 if bf16_supported else None, gradient_checkpointing=True)


def effective_precision(trainer) -> dict[str, Any]:
    """What a (DPO) trainer trains with, as the report records it: `train_dtype`, the dtype the forward and
    backward compute in (the autocast dtype, else the model's own), and `gradient_checkpointing`, whether the
    model recomputes activations (transformers enables it on the model when training starts)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(trainer.accelerator.mixed_precision))
    dtype = autocast or getattr(base, "dtype", torch.float32)
    return {"train_dtype": str(dtype).removeprefix("torch."),
            "gradient_checkpointing": bool(getattr(base, "is_gradient_checkpointing", False))}



class ResumableDPOTrainer(OwnAdapterResume, DPOTrainer):
    """TRL's DPOTrainer (the unmasked LoRA baselines), resumable from a patch checkpoint (resume.py)."""


class MaskedDPOTrainer(OwnAdapterResume, DPOTrainer):
    """DPO on a LoRA adapter whose factors change only on the safety-critical entries (Algorithm 1)."""

    _tag_names = ["trl", "dpo", "q-resafe"]

    def __init__(self, *args, full_precision: Mapping[str, torch.Tensor] | None = None,
                 base_adapter: str | None = None, base_rank: int = 0,
                 patch_targets: tuple[str, ...] | None = None, keep_mask_history: bool = False, **kwargs) -> None:
        """`base_adapter`, `base_rank`: the quantized model carries its own LoRA (qlora, bases.py): the
        adapter from `peft_config` is the concatenation [base | patch], its first `base_rank` slots hold the
        base adapter and are never trained, and the base adapter alone (PEFT adapter "ref") is the DPO
        reference. `patch_targets`: module names whose patch slots may train (None: every adapted layer).
        `keep_mask_history` (mask="exact"): keep every identification's M_Q, not only the latest, because held-out
        checks may keep a checkpoint from before a re-identification, and its merge needs the M_Q of its time."""
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, QResafeConfig):
            raise PatchError("MaskedDPOTrainer needs a QResafeConfig (tau, reidentify_every, score_loss)")
        if not hasattr(self.model, "peft_config"):
            raise PatchError("MaskedDPOTrainer trains a LoRA adapter: pass peft_config (LoRA)")
        self.factors = lora_factors(self.model)
        if not self.factors:
            raise PatchError("the LoRA adapter adapts none of the model's layers (check target_modules)")
        if self.args.mask == "exact" and base_adapter is not None:
            raise PatchError("--mask exact applies M_Q in an integer grid's merge; a stacked adapter has none")
        # TRL casts adapters on bitsandbytes bases to bf16 (QLoRA paper); qlora.py keeps them fp32, and so
        # does this trainer, so the 4-bit and the integer-grid patches learn with the same precision.
        for factor in self.factors.values():
            factor.a.data, factor.b.data = factor.a.data.float(), factor.b.data.float()
        self.base_rank = base_rank if base_adapter is not None else 0
        self.patch_targets = set(patch_targets) if patch_targets is not None else None
        if base_adapter is not None:
            from . import bases

            # written after the fp32 cast above, so the qlora values are exact (TRL rounds trainable
            # adapters on quantized bases to bf16 in its __init__)
            bases.write_base_slots(self.factors, base_adapter, self.base_rank)
            self.model.load_adapter(str(base_adapter), adapter_name=bases.REFERENCE_ADAPTER, is_trainable=False)
            self.model.set_adapter("default")  # the trained forward: [base | patch]; "ref" only as the reference
            self.model.train()  # load_adapter left it in eval mode (see identify_masks)
        # W for the SNIP scores: the full-precision weights when given (the paper), else the layers' own,
        # dequantized one layer at a time when the scores ask (the base weights never train, so reading them
        # late gives the same W, and no fp32 copy of the whole model is kept)
        self.full_precision = full_precision or snip.LazyWeights(
            {name: functools.partial(dense_weight, f.module) for name, f in self.factors.items()})
        self.masks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (M_A, M_B)
        self.frozen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # values the masked-out entries keep
        self.coverage: dict[str, float] = {}
        self.identified_at: list[int] = []
        # mask="exact": M_Q per layer (bool, CPU: the merge reads it there, and it stays off the accelerator),
        # the latest identification's, and (step, M_Q) of the identifications kept for `update_masks_at`
        self.update_masks: dict[str, torch.Tensor] = {}
        self.update_mask_history: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.keep_mask_history = keep_mask_history
        self._gradient_hooks = []
        self.add_callback(_LoraGradientGuard(self))

    # -- Algorithm 1, line "if t % K == 0" ----------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        if step % self.args.reidentify_every == 0 and (not self.identified_at or self.identified_at[-1] != step):
            self.identify_masks()
        return super().training_step(model, inputs, num_items_in_batch)

    @torch.no_grad()
    def identify_masks(self) -> None:
        """SNIP scores on the patch set -> M_Q per layer -> (M_A, M_B); freeze the masked-out entries."""
        layers = {name: f.module for name, f in self.factors.items()}
        # training mode (TRL has switched dropout off): a no-grad forward in eval mode would let bitsandbytes
        # repack 4-bit weights for CPU inference and lose the gradients (qlora.py's trap); PEFT's load_adapter
        # of a frozen "ref" adapter puts the model in eval mode
        self.model.train()
        with torch.enable_grad():
            scores = snip.safety_scores(self.model, self._snip_batches(), layers, self.full_precision,
                                        loss=self.args.score_loss, beta=self.args.beta)
        first = not self.masks
        exact = self.args.mask == "exact"
        update_masks: dict[str, torch.Tensor] = {}
        for name, factor in self.factors.items():
            score = scores.pop(name)  # each layer's buffer is freed once its masks are made
            mask_q = snip.top_fraction(score, self.args.tau)
            if exact:  # the factors train unmasked (all-ones factor masks); M_Q waits for the merge
                update_masks[name] = mask_q.cpu()
                self.masks[name] = (torch.ones_like(factor.a, dtype=torch.bool),
                                    torch.ones_like(factor.b, dtype=torch.bool))
                continue
            mask_a, mask_b = snip.decompose(mask_q, score, factor.rank, self.args.tau)
            mask_a, mask_b = mask_a.to(factor.a.device), mask_b.to(factor.b.device)
            if self.patch_targets is not None and name.rsplit(".", 1)[-1] not in self.patch_targets:
                mask_a, mask_b = torch.zeros_like(mask_a), torch.zeros_like(mask_b)  # a base-adapter-only layer
            mask_a[: self.base_rank], mask_b[:, : self.base_rank] = False, False  # the base adapter's slots
            if first:
                zero = ~mask_a
                zero[: self.base_rank] = False
                factor.a.masked_fill_(zero, 0.0)  # the update then lives in the allowed block (docstring)
            self.masks[name] = (mask_a, mask_b)
            self.frozen[name] = (factor.a.detach().clone(), factor.b.detach().clone())
            self.coverage[name] = snip.block_coverage(mask_q, score, mask_a[self.base_rank:].to(score.device),
                                                      mask_b[:, self.base_rank:].to(score.device))
        if exact:
            self.update_masks = update_masks
            if not self.keep_mask_history:
                self.update_mask_history.clear()
            self.update_mask_history.append((self.state.global_step, update_masks))
        elif first:
            self._register_gradient_masks()  # exact: nothing to mask, and no hook costs a step
        self.identified_at.append(self.state.global_step)

    def update_masks_at(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """M_Q (mask="exact") in effect for the LoRA state after `step` optimizer steps (None: the latest): the
        identification at the last t < step, since the one at t runs inside step t + 1, after the held-out check
        at t. At step 0 B is still zero, so the update is zero under any mask: the first is returned."""
        if not self.update_mask_history:
            raise PatchError("no M_Q was identified (mask exact needs at least one training step)")
        if step is None:
            return self.update_masks
        if step == 0:
            return self.update_mask_history[0][1]
        earlier = [masks for t, masks in self.update_mask_history if t < step]
        if not earlier:  # only the latest is kept unless keep_mask_history
            raise PatchError(f"the M_Q in effect at step {step} was not kept (keep_mask_history)")
        return earlier[-1]

    def _snip_batches(self) -> Iterator[dict]:
        """The patch set in order, collated like the training batches, `snip_batch_size` pairs at a time."""
        from torch.utils.data import DataLoader

        columns = ["prompt_ids", "chosen_ids", "rejected_ids"]
        loader = DataLoader(self.train_dataset.select_columns(columns), batch_size=self.args.snip_batch_size,
                            shuffle=False, collate_fn=self.data_collator)
        device = self.factors[next(iter(self.factors))].a.device
        for batch in loader:
            yield {k: v.to(device) for k, v in batch.items()}

    # -- Algorithm 1, the masked update ----------------------------------------------------------------
    def _register_gradient_masks(self) -> None:
        for name, factor in self.factors.items():
            for index, param in ((0, factor.a), (1, factor.b)):
                hook = param.register_hook(lambda grad, name=name, index=index: grad * self.masks[name][index])
                self._gradient_hooks.append(hook)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        optimizer.register_step_post_hook(lambda *_: self.restore_frozen())
        return optimizer

    @torch.no_grad()
    def restore_frozen(self) -> None:
        """Write back the masked-out entries: weight decay and momentum must not move them either."""
        if self.args.mask == "exact":
            return  # nothing is masked out of the factors
        for name, (mask_a, mask_b) in self.masks.items():
            factor = self.factors[name]
            frozen_a, frozen_b = self.frozen[name]
            factor.a.copy_(torch.where(mask_a, factor.a, frozen_a))
            factor.b.copy_(torch.where(mask_b, factor.b, frozen_b))

    def resume_state(self) -> dict:
        """What a patch checkpoint keeps of Algorithm 1 (resume.py): the masks, the values the masked-out
        entries keep, the identifications so far and, for mask="exact", the M_Q kept."""
        def cpu(pairs: dict) -> dict:
            return {name: (a.detach().cpu(), b.detach().cpu()) for name, (a, b) in pairs.items()}

        return {"masks": cpu(self.masks), "frozen": cpu(self.frozen), "coverage": dict(self.coverage),
                "identified_at": list(self.identified_at),
                "update_mask_history": [(step, dict(masks)) for step, masks in self.update_mask_history]}

    def load_resume_state(self, state: dict) -> None:
        """Put `resume_state`'s values back before training resumes; the gradient masks are hooked again."""
        if state["masks"] and set(state["masks"]) != set(self.factors):
            raise ResumeError("the patch checkpoint's masks are for other LoRA layers; remove the checkpoint "
                              "directory to start over")

        def on_device(pairs: dict) -> dict:
            return {name: (a.to(self.factors[name].a.device), b.to(self.factors[name].b.device))
                    for name, (a, b) in pairs.items()}

        self.masks, self.frozen = on_device(state["masks"]), on_device(state["frozen"])
        self.coverage, self.identified_at = dict(state["coverage"]), list(state["identified_at"])
        self.update_mask_history = [(step, dict(masks)) for step, masks in state["update_mask_history"]]
        self.update_masks = self.update_mask_history[-1][1] if self.update_mask_history else {}
        if self.masks and self.args.mask != "exact" and not self._gradient_hooks:
            self._register_gradient_masks()

    def mask_summary(self) -> dict:
        """Trainable share of the LoRA factors and of M_Q's score mass inside the allowed blocks, and the
        precision the masks were learned with (`effective_precision`)."""
        allowed = sum(int(a.sum()) + int(b.sum()) for a, b in self.masks.values())
        # entries of the patch's own slots (a base adapter's slots are not the patch's parameters)
        total = sum(a[self.base_rank:].numel() + b[:, self.base_rank:].numel() for a, b in self.masks.values())
        coverage = [c for c in self.coverage.values() if c == c]
        summary = {"mask": self.args.mask, "lora_entries_trainable": allowed, "lora_entries": total,
                   "trainable_fraction": allowed / total if total else 0.0,
                   "mean_block_coverage": sum(coverage) / len(coverage) if coverage else None,
                   "identified_at_steps": list(self.identified_at), **effective_precision(self)}
        if self.args.mask == "exact":
            held = [m for _step, masks in self.update_mask_history for m in masks.values()]
            summary.update(update_mask_entries=sum(int(m.sum()) for m in self.update_masks.values()),
                           update_mask_size=sum(m.numel() for m in self.update_masks.values()),
                           update_masks_held=len(self.update_mask_history),
                           update_mask_bytes=sum(m.numel() * m.element_size() for m in held))
        return summary


class LoraFactor:
    """One adapted layer: the LoRA wrapper module and its A (r x in) and B (out x r) weights."""

    def __init__(self, module, adapter: str = "default") -> None:
        self.module = module
        self.a: torch.nn.Parameter = module.lora_A[adapter].weight
        self.b: torch.nn.Parameter = module.lora_B[adapter].weight
        self.scaling: float = float(module.scaling[adapter])

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def delta(self) -> torch.Tensor:
        """s * B A: what the adapter adds to the layer's weight (fp32)."""
        return self.scaling * (self.b.detach().float() @ self.a.detach().float())


def lora_factors(model, adapter: str = "default") -> dict[str, LoraFactor]:
    """The adapted layers of a PEFT model, keyed by checkpoint name (`model.layers.0.self_attn.q_proj`)."""
    factors = {}
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, torch.nn.ModuleDict) and adapter in lora_a:
            factors[snip.checkpoint_name(name)] = LoraFactor(module, adapter)
    return factors


def dense_weight(module) -> torch.Tensor:
    """The (dequantized) weight of a LoRA-wrapped layer's base, fp32 (bitsandbytes 4-bit included)."""
    base = getattr(module, "base_layer", module)
    weight = base.weight
    state = getattr(weight, "quant_state", None)
    if state is not None:
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, state).float()
    if getattr(weight, "CB", None) is not None or weight.dtype == torch.int8:  # LLM.int8()
        import bitsandbytes.functional as bnbf

        return bnbf.int8_vectorwise_dequant(weight.data, base.state.SCB).float()
    return weight.detach().float()


class _LoraGradientGuard(TrainerCallback):
    """The bitsandbytes zero-gradient trap (harness/quantize/qlora.py): refuse 4-bit weights already
    repacked for CPU inference before the first step, and check the first step's LoRA B gradients."""

    def __init__(self, trainer: MaskedDPOTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        from ..harness.quantize.qlora import check_not_repacked

        check_not_repacked(self.trainer.model)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        from ..harness.quantize.qlora import check_lora_gradients

        anything_trainable = any(bool(mask_b.any()) for _a, mask_b in self.trainer.masks.values())
        if state.global_step == 0 and anything_trainable and self.trainer.args.tau > 0:
            check_lora_gradients(self.trainer.model)

"""One patch run, end to end: patch set -> training -> saved variant `<quantized variant>+<patch label>`.

    outcome = run_patch(PatchRequest(spec=VariantSpec("ref-tiny", "rtn", 4), recipe=PatchRecipe()), home=home)
    # then: qresafe-bench eval --model ref-tiny --quant rtn --bits 4 --patch qresafe

Methods (the paper's method and the baselines it is compared with, all on the same pairs):

| method        | what trains                                   | loss            | result saved as                |
|---------------|-----------------------------------------------|-----------------|--------------------------------|
| qresafe       | LoRA factors, masked to safety-critical (tau) | DPO, ref = Q    | merged into Q's grid / adapter |
| lora-dpo      | LoRA factors, no mask (tau = 1)               | DPO, ref = Q    | merged / adapter               |
| sft           | LoRA factors, no mask                         | NLL of y_w      | merged / adapter               |
| dpo-full      | every weight of the dequantized model          | DPO, ref = Q    | merged into Q's grid           |
| keep-critical | nothing: SNIP on the full-precision model      | -               | dense Q with W kept            |

"Merged" is for integer grids (rtn, gptq, awq, llm-qat); bitsandbytes and aqlm keep the patch as an adapter;
qlora keeps one adapter, its own concatenated with the patch, trained against the qlora adapter alone as the
reference (bases.py). dpo-full and keep-critical need an integer grid.

The variant is written into a temporary sibling directory and renamed into place when complete, so an
interrupted run leaves nothing that looks finished; the pair generations before it are in the run
store and are reused by the next run. `qresafe_report.json` beside the weights records what it cost:
wall time and peak memory of the training, trainable parameters, pairs used and dropped.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..harness.core import interrupt
from ..harness.core.spec import VariantSpec
from ..harness.generation.backends import BackendSettings
from ..harness.models.registry import ResolvedModel, resolve, resolve_base
from ..harness.models.variants import building, is_complete, prompts_from, variant_dir
from ..harness.store import atomic_write_json, atomic_write_text, read_json
from .config import (
    ADAPTER_METHODS,
    STACKED_ADAPTER_METHODS,
    UNIFORM_GRID_METHODS,
    PatchError,
    PatchRecipe,
    PatchRefused,
    auto_lora_rank,
    check_mask_format,
)
from .pairs import PreferencePair, build_pairs, generate_responses, patch_prompts

if TYPE_CHECKING:
    from .trainer import QResafeConfig


@dataclass(frozen=True)
class PatchRequest:
    spec: VariantSpec  # the quantized variant to patch (patch = "none")
    recipe: PatchRecipe = field(default_factory=PatchRecipe)
    data_dir: str | None = None
    models_file: str | None = None
    backend: BackendSettings = field(default_factory=BackendSettings)  # generation of y_w / y_l
    device: str = "cpu"  # training device (cpu, cuda)

    @property
    def patched_spec(self) -> VariantSpec:
        return replace(self.spec, patch=self.recipe.label)


@dataclass
class PatchOutcome:
    spec: VariantSpec
    path: Path
    report: dict
    from_store: bool


def check_request(request: PatchRequest) -> None:
    """Everything that can be refused before any model is loaded or anything is written."""
    spec, method = request.spec, request.recipe.method
    if spec.patch != "none":
        raise PatchError(f"{spec.slug} is already patched; patch the quantized variant itself")
    if spec.quant == "none":
        raise PatchError("patching needs a quantized model: add --quant METHOD --bits B (the full-precision model "
                         "is what the patch restores the quantized one towards)")
    if method == "dpo-full" and spec.quant not in UNIFORM_GRID_METHODS:
        raise PatchError(f"--method {method} needs an integer-grid format ({', '.join(UNIFORM_GRID_METHODS)}); "
                         f"{spec.quant} weights cannot take dense updates without requantizing, so its patch is "
                         "a LoRA adapter: use --method qresafe, lora-dpo or sft")
    if method == "keep-critical":
        from .keep_critical import check_keep_critical

        check_keep_critical(spec.quant)  # before any pair is generated
    check_mask_format(request.recipe, spec.quant)
    if spec.quant not in UNIFORM_GRID_METHODS + ADAPTER_METHODS + STACKED_ADAPTER_METHODS:
        raise PatchError(f"patching {spec.quant} variants is not supported (merged into integer grids: "
                         f"{', '.join(UNIFORM_GRID_METHODS)}; adapter on: "
                         f"{', '.join(ADAPTER_METHODS + STACKED_ADAPTER_METHODS)})")


def run_patch(request: PatchRequest, *, home: Path, log: Callable[[str], None] = print,
              on_generated: Callable[[], None] | None = None) -> PatchOutcome:
    """Build (or find in the store) the patched variant of `request.spec`."""
    check_request(request)
    base = resolve_base(request.spec.model, cache_root=home, data_dir=request.data_dir,
                        models_file=request.models_file, log=log)
    target = request.patched_spec
    path = variant_dir(home, target, base)
    if is_complete(path) and (path / "qresafe_report.json").is_file():
        return PatchOutcome(target, path, read_json(path / "qresafe_report.json"), from_store=True)
    refusal = refusal_record(path)
    if refusal.is_file():
        log(f"{target.slug}: refused before, for the same stored generations ({refusal}; delete it to try again)")
        raise PatchRefused(read_json(refusal)["reason"])
    quantized = resolve(request.spec, cache_root=home, data_dir=request.data_dir, models_file=request.models_file,
                        log=log)
    from .bases import refuse_packed_base

    refuse_packed_base(quantized)  # a publisher's GPTQ/AWQ packing: before any pair is generated

    try:
        pairs, dropped, n_prompts = preference_pairs(request, base, quantized, home=home, log=log,
                                                     on_item=on_generated)
    except PatchRefused as exc:
        atomic_write_json(refusal, {"reason": str(exc), "spec": target.canonical(), "variant_id": target.id})
        raise
    log(f"patch set: {len(pairs)} pairs ({dropped} of {n_prompts} dropped: y_w == y_l)")

    checkpoints = checkpoint_dir(request, path, base, quantized, pairs)
    with building(path) as tmp:
        with contextlib.redirect_stdout(sys.stderr):  # trainers print logs; stdout is for results
            if request.recipe.method == "keep-critical":
                from .keep_critical import build_keep_critical

                report = build_keep_critical(request, base, quantized, pairs, tmp, log=log)
            else:
                report = train_and_save(request, base, quantized, pairs, tmp, log=log, checkpoints=checkpoints)
        report.setdefault("hyperparameters", request.recipe.model_dump(mode="json"))
        report.update({"spec": target.canonical(), "variant_id": target.id, "label": request.recipe.label,
                       "pairs": len(pairs), "pairs_dropped_equal": dropped, "prompts": n_prompts,
                       "quantized_variant": quantized.location, "base": base.location})
        atomic_write_text(tmp / "qresafe_patch.yaml", request.recipe.to_yaml())
        atomic_write_json(tmp / "qresafe_report.json", report)
        _write_pairs(tmp / "pairs.jsonl", pairs)
        if not (tmp / "qresafe_recipe.yaml").exists():
            shutil.copy2(Path(quantized.location) / "qresafe_recipe.yaml", tmp / "qresafe_recipe.yaml")
    if checkpoints is not None:  # only now: a kill before the variant is in place still resumes
        from .resume import remove

        remove(checkpoints)
    return PatchOutcome(target, path, report, from_store=False)


def checkpoint_dir(request: PatchRequest, path: Path, base: ResolvedModel, quantized: ResolvedModel,
                   pairs: list[PreferencePair]) -> Path | None:
    """Where the training of a LoRA patch keeps its checkpoints (resume.py), keyed by everything it depends
    on; None for the methods without an adapter (dpo-full trains every weight, keep-critical trains nothing)."""
    if request.recipe.method in ("dpo-full", "keep-critical"):
        return None
    from .resume import resume_dir_for

    return resume_dir_for(path, [request.patched_spec.id, request.recipe.to_yaml(), quantized.location,
                                 base.location, request.data_dir, request.device,
                                 [p.as_example() for p in pairs]])


def refusal_record(path: Path) -> Path:
    """Where a stored refusal of the variant at `path` lives: beside it, so its key is the variant's own."""
    return path.with_name(f"{path.name}.refused.json")


def preference_pairs(request: PatchRequest, base: ResolvedModel, quantized: ResolvedModel, *, home: Path,
                     log: Callable[[str], None], on_item: Callable[[], None] | None = None
                     ) -> tuple[list[PreferencePair], int, int]:
    """(pairs, dropped, prompts): y_w from the full-precision model, y_l from the quantized one, via the store."""
    recipe = request.recipe
    prompts = patch_prompts(recipe, base_dir=Path(base.location), data_dir=request.data_dir,
                            cache_dir=home / "calibration", prompts_from=prompts_from(base),
                            tier=recipe.tier_for(request.spec.calib), log=log)
    log(f"generating y_w ({base.name}) and y_l ({quantized.name}) for {len(prompts)} prompts (stored, resumable)")
    chosen = generate_responses(base, VariantSpec(model=request.spec.model), prompts, home=home,
                                max_new_tokens=recipe.max_new_tokens, settings=request.backend, on_item=on_item)
    rejected = generate_responses(quantized, request.spec, prompts, home=home, max_new_tokens=recipe.max_new_tokens,
                                  settings=request.backend, on_item=on_item)
    pairs, dropped = build_pairs(prompts, chosen, rejected)
    return pairs, dropped, len(prompts)


# --- training -------------------------------------------------------------------------------------
def load_quantized_for_training(quantized: ResolvedModel, method: str, device: str):
    """The quantized model as a trainable torch module: compressed-tensors decompressed to its dequantized
    dense weights (gradients flow through them), bitsandbytes (and qlora's NF4 base, without its adapter:
    bases.py stacks it) as its own 4/8-bit layers, AQLM as aqlm.QuantizedLinear made race-free and
    differentiable on CPU (bases.aqlm_trainable_on_cpu)."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    if method in UNIFORM_GRID_METHODS:
        model = AutoModelForCausalLM.from_pretrained(quantized.location, dtype="auto", use_safetensors=True,
                                                     quantization_config=CompressedTensorsConfig(dequantize=True))
        return model.to(device)
    model = AutoModelForCausalLM.from_pretrained(quantized.location, use_safetensors=True,
                                                 device_map=device if device != "cpu" else "cpu")
    if method == "aqlm":
        from .bases import aqlm_trainable_on_cpu

        aqlm_trainable_on_cpu(model)
    return model


def planned_steps(recipe: PatchRecipe, n_pairs: int) -> int:
    """Optimizer steps the recipe takes on `n_pairs` pairs: `steps`, or `epochs` passes at `batch_size`."""
    if recipe.steps is not None:
        return recipe.steps
    return max(1, math.ceil(math.ceil(n_pairs / recipe.batch_size) * recipe.epochs))


def checkpoint_every(recipe: PatchRecipe, n_pairs: int) -> int:
    """Steps between patch checkpoints (resume.py) and between log lines: every held-out check, else a
    tenth of the steps. One period for both, so a resumed run logs the same windows as an uninterrupted one."""
    return recipe.check_every or max(1, planned_steps(recipe, n_pairs) // 10)


def trainer_config(recipe: PatchRecipe, output_dir: str, device: str, n_pairs: int,
                   resumable: bool = False) -> QResafeConfig:
    """`resumable`: the Trainer checkpoints into `output_dir` every `checkpoint_every` steps (resume.py)."""
    from .resume import KEEP
    from .trainer import QResafeConfig  # here, not at the top: reading or checking a recipe must not import TRL

    if recipe.method == "sft":
        loss_type, loss_weights = ["sft"], None
    elif recipe.rpo_alpha:  # DPO + alpha * NLL(y_w), combined by TRL itself
        loss_type, loss_weights = ["sigmoid", "sft"], [1.0, recipe.rpo_alpha]
    else:
        loss_type, loss_weights = ["sigmoid"], None
    return QResafeConfig(
        output_dir=output_dir, use_cpu=device == "cpu", bf16=False, fp16=False, report_to="none",
        save_strategy="steps" if resumable else "no", save_steps=checkpoint_every(recipe, n_pairs),
        save_total_limit=KEEP, logging_steps=checkpoint_every(recipe, n_pairs), disable_tqdm=True,
        seed=recipe.seed, max_steps=planned_steps(recipe, n_pairs), per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate, lr_scheduler_type=recipe.lr_scheduler, warmup_steps=0,
        max_length=recipe.max_length, beta=recipe.beta,
        tau=recipe.tau, reidentify_every=recipe.reidentify_every, score_loss=recipe.score_loss, mask=recipe.mask,
        loss_type=loss_type, loss_weights=loss_weights, dataloader_pin_memory=False,
    )


def train_and_save(request: PatchRequest, base: ResolvedModel, quantized: ResolvedModel,
                   pairs: list[PreferencePair], out_dir: Path, *, log: Callable[[str], None],
                   checkpoints: Path | None = None) -> dict:
    """Train the recipe's method on `pairs` and save the result into `out_dir`; returns the cost report.
    `checkpoints` (LoRA methods): where the training checkpoints and resumes from (resume.py)."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    from . import merge, resume, snip
    from .trainer import MaskedDPOTrainer, ResumableDPOTrainer, effective_precision, lora_factors

    recipe, spec = request.recipe, request.spec
    tokenizer = AutoTokenizer.from_pretrained(quantized.location)
    model = load_quantized_for_training(quantized, spec.quant, request.device)
    examples = [p.as_example() for p in pairs]
    if not base.system_role:
        from ..harness.generation.backends import fold_system_turn

        examples = [{**e, "prompt": fold_system_turn(e["prompt"])} for e in examples]
    dataset = datasets.Dataset.from_list(examples)
    layers = snip.adapted_layers(model, recipe.target_modules)
    if not layers:
        raise PatchError(f"none of --target-modules {', '.join(recipe.target_modules)} is in this architecture")
    stacked = spec.quant in STACKED_ADAPTER_METHODS  # qlora: the patch is concatenated onto its adapter
    base_adapter = Path(quantized.adapter or Path(quantized.location) / "adapter") if stacked else None
    resumable = checkpoints is not None  # checkpoint_dir gives none to dpo-full
    output_dir = str(checkpoints) if resumable else tempfile.mkdtemp(prefix="qresafe-trainer-")
    config = trainer_config(recipe, output_dir, request.device, len(pairs), resumable=resumable)
    torch.manual_seed(recipe.seed)
    details: dict = {"method": recipe.method}
    with peak_memory(request.device) as memory:
        started = time.perf_counter()
        if recipe.method == "dpo-full":
            for name, param in model.named_parameters():  # the grid's scales are not weights to train
                grid_parameter = name.endswith(("weight_scale", "weight_zero_point"))
                param.requires_grad_(param.is_floating_point() and not grid_parameter)
            reference = copy.deepcopy(model).eval().requires_grad_(False)
            initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            trainer = DPOTrainer(model=model, ref_model=reference, args=config, train_dataset=dataset,
                                 processing_class=tokenizer)
        else:
            widths = [min(m.in_features, m.out_features) for m in layers.values() if hasattr(m, "in_features")]
            rank = auto_lora_rank(min(widths) if widths else 128, recipe.lora_r)
            alpha = recipe.lora_alpha or 2 * rank
            targets = sorted({name.rsplit(".", 1)[-1] for name in layers})
            lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=targets,
                              task_type="CAUSAL_LM")
            details.update(lora_r=rank, lora_alpha=alpha, target_modules=targets)
            if stacked:
                from . import bases

                # every LoRA method trains the patch slots of [qlora | patch] against the qlora reference;
                # lora-dpo and sft are the masked trainer at tau = 1 (all patch slots), so here their time
                # includes one SNIP pass
                lora, base_rank = bases.stacked_lora_config(base_adapter, rank, alpha, targets)
                layers = snip.adapted_layers(model, lora.target_modules)
                full_precision = snip.load_full_precision(Path(base.location), layers)
                trainer = MaskedDPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                           peft_config=lora, full_precision=full_precision,
                                           base_adapter=str(base_adapter), base_rank=base_rank,
                                           patch_targets=tuple(targets))
                details.update(base_adapter_rank=base_rank, saved_adapter_rank=lora.r)
            elif recipe.method == "qresafe":
                full_precision = snip.load_full_precision(Path(base.location), layers)
                # exact: a held-out check may keep a checkpoint from before a re-identification
                trainer = MaskedDPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                           peft_config=lora, full_precision=full_precision,
                                           keep_mask_history=bool(recipe.check_every))
            else:  # lora-dpo, sft: the unmasked baselines run TRL's own trainer (no SNIP cost in their time)
                trainer = ResumableDPOTrainer(model=model, args=config, train_dataset=dataset,
                                              processing_class=tokenizer, peft_config=lora)
        _report_progress_through(trainer, log)
        checker = (_dev_checker(request, trainer, tokenizer, pairs, base, quantized, log,
                                cache=checkpoints if resumable else None) if recipe.check_every else None)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        log(f"{recipe.method} ({recipe.recipe} recipe): {len(pairs)} pairs, {config.max_steps} steps, batch "
            f"{recipe.batch_size}, lr {recipe.learning_rate} ({recipe.lr_scheduler}), beta {recipe.beta}, "
            f"tau {recipe.tau}; {trainable} trainable parameters")
        earlier = {"seconds": 0.0, "resumed_at": []}  # of the attempts before this one (resume.py)
        checkpoint = None
        if resumable:
            checkpoint = _resume_from(checkpoints, trainer, checker, earlier, log)
            trainer.add_callback(resume.SaveStateCallback(checkpoints, lambda: {
                "factors": resume.factor_values(lora_factors(trainer.model)),
                "trainer": trainer.resume_state() if isinstance(trainer, MaskedDPOTrainer) else {},
                "checker": checker.resume_state() if checker is not None else {},
                "seconds": earlier["seconds"] + time.perf_counter() - started,
                "resumed_at": list(earlier["resumed_at"])}))
        trainer.add_callback(interrupt.trainer_callback())
        result = trainer.train(resume_from_checkpoint=str(checkpoint.trainer_dir) if checkpoint else None)
        train_seconds = earlier["seconds"] + time.perf_counter() - started
        if earlier["resumed_at"]:
            details["resumed_at_steps"] = list(earlier["resumed_at"])
        if checker is not None:  # its checks are timed apart: train_wall_seconds stays the training's own
            train_seconds -= checker.seconds
            checker.restore_best()
            details["dev_checks"] = checker.report()
            log(f"dev checks: keeping the checkpoint of step {checker.best.step}"
                + (" (no check improved on the unpatched model within the guard: the patch is empty)"
                   if checker.kept_unpatched else ""))
            if checker.kept_unpatched:
                details["changes_nothing"] = ("the held-out checks kept step 0: no checkpoint improved on the "
                                              "unpatched model within the guard")
    details["hyperparameters"] = effective_hyperparameters(recipe, config, details, request.spec.calib, len(pairs))
    details["hyperparameters"].update(effective_precision(trainer))  # bf16 + checkpointing on CUDA, fp32 on CPU
    details.update(train_wall_seconds=round(train_seconds, 3), peak_memory_mb=memory.peak_mb,
                   memory_kind=memory.kind, trainable_parameters=trainable,
                   train_loss=round(mean_logged_loss(trainer.state.log_history, float(result.training_loss)), 6),
                   steps=trainer.state.global_step,
                   loss_history=[round(float(e["loss"]), 6) for e in trainer.state.log_history if "loss" in e])
    if isinstance(trainer, MaskedDPOTrainer):
        details["masks"] = trainer.mask_summary()
        # requires_grad counts every LoRA entry; the update rule lets only the masked-in ones change
        details["lora_parameters"] = trainable
        details["trainable_parameters"] = details["masks"]["lora_entries_trainable"]
        kept_unpatched = checker is not None and checker.kept_unpatched  # the dev checks chose "no patch"
        if recipe.tau > 0 and trainer.state.global_step > 0 and not kept_unpatched and not any(
                torch.any(f.b[:, trainer.base_rank:]) for f in trainer.factors.values()):
            raise PatchError("training left every LoRA B at zero: nothing was learned (check --learning-rate)")

    if recipe.method == "dpo-full":
        trained = dict(model.named_parameters())
        deltas = {name: (trained[f"{name}.weight"] - initial[f"{name}.weight"]).float() for name in layers}
        dense = {n: trained[n] for n in initial if not any(n == f"{layer}.weight" for layer in layers)}
        stats = merge.merge_into_compressed(Path(quantized.location), deltas, out_dir, dense_updates=dense)
        details.update(saved_as="merged into the integer grid (full fine-tune)", merge=stats.as_dict())
    elif spec.quant in UNIFORM_GRID_METHODS:
        factors = lora_factors(trainer.model)
        masks = None
        if recipe.mask == "exact":  # M_Q of the kept checkpoint's time (the latest without held-out checks)
            masks = trainer.update_masks_at(checker.best.step if checker is not None and checker.best else None)
        stats = merge.merge_into_compressed(Path(quantized.location), {n: f.delta() for n, f in factors.items()},
                                            out_dir, masks=masks)
        trainer.model.save_pretrained(out_dir / "unmerged_adapter")  # what the merge rounded, for inspection
        details.update(saved_as="merged into the integer grid under the existing scales"
                                + (", M_Q * s B A (exact mask)" if masks is not None else ""), merge=stats.as_dict())
        log(f"merge: {stats.changed} of {stats.entries} quantized entries moved ({stats.clamped} at the grid's ends)")
        if masks is not None:
            log(f"exact mask: {stats.mask_changed} of M_Q's {stats.mask_entries} entries moved "
                f"({details['merge']['mask_changed_fraction']:.1%}); the mask dropped "
                f"{details['merge']['update_mass_dropped_fraction']:.1%} of the update's L1 mass; M_Q held in "
                f"{details['masks']['update_mask_bytes']} bytes")
        if stats.changed == 0 and "changes_nothing" not in details:  # the checks' reason, when they kept step 0
            details["changes_nothing"] = ("every update rounds away: the adapter moves no entry by half a grid step, "
                                          "so the merged variant equals the quantized one")
    elif stacked:
        from . import bases

        merge.save_adapter_variant(Path(quantized.location), trainer.model, out_dir)
        bases.save_patch_slots(out_dir / "adapter", out_dir / "patch_adapter", trainer.base_rank,
                               details["lora_r"], details["lora_alpha"], details["target_modules"])
        details.update(saved_as=f"one PEFT adapter on the NF4 base (adapter/): the qlora adapter (rank "
                                f"{trainer.base_rank}) concatenated with the patch (rank {details['lora_r']}); "
                                "the patch alone in patch_adapter/")
    else:
        merge.save_adapter_variant(Path(quantized.location), trainer.model, out_dir)
        details.update(saved_as="PEFT adapter on the quantized base (adapter/)")
    if not resumable:  # the checkpoints of a resumable run stay until the variant is in place (run_patch)
        shutil.rmtree(config.output_dir, ignore_errors=True)
    return details


def mean_logged_loss(log_history: list[dict], fallback: float) -> float:
    """The training loss over every step, from the logged windows (each the mean of its steps), weighted by
    their lengths. Not the Trainer's `training_loss`: after a resume it divides only the resumed steps' loss
    by every step. `fallback` when nothing was logged (training stopped before the first log line)."""
    total, last = 0.0, 0
    for entry in log_history:
        if "loss" in entry:
            total += float(entry["loss"]) * (entry["step"] - last)
            last = entry["step"]
    return total / last if last else fallback


def _resume_from(directory: Path, trainer, checker, earlier: dict, log: Callable[[str], None]):
    """The latest complete checkpoint in `directory` with its state put back into `trainer`, `checker` and
    `earlier` (resume.py), or None for a fresh start."""
    from . import resume
    from .trainer import MaskedDPOTrainer, lora_factors

    checkpoint = resume.latest_checkpoint(directory)
    if checkpoint is None:
        return None
    state = resume.load_state(checkpoint)
    resume.write_factor_values(lora_factors(trainer.model), state["factors"])
    if isinstance(trainer, MaskedDPOTrainer):
        trainer.load_resume_state(state["trainer"])
    if checker is not None:
        checker.load_resume_state(state["checker"])
    earlier.update(seconds=float(state["seconds"]), resumed_at=[*state["resumed_at"], checkpoint.step])
    log(f"resuming the patch training at step {checkpoint.step}/{trainer.args.max_steps} from {directory.name}")
    return checkpoint


def effective_hyperparameters(recipe: PatchRecipe, config: QResafeConfig, details: dict, variant_calib: str,
                              n_pairs: int) -> dict:
    """Every value the training ran with: the recipe's fields resolved (tier, rank, alpha, steps) and the
    trainer settings the recipe leaves to TRL's defaults (optimizer, warmup, weight decay, clipping)."""
    from .config import named_recipes

    values = recipe.model_dump(mode="json")
    values.update(recipe_description=named_recipes()[recipe.recipe]["description"],
                  patch_tier=recipe.tier_for(variant_calib), pairs=n_pairs, optimizer_steps=config.max_steps,
                  epochs_over_pairs=round(config.max_steps * recipe.batch_size / n_pairs, 3),
                  lora_r=details.get("lora_r"), lora_alpha=details.get("lora_alpha"),
                  optimizer=getattr(config.optim, "value", config.optim),
                  lr_scheduler=getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type),
                  warmup_steps=config.warmup_steps,
                  weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
                  adam_betas=[config.adam_beta1, config.adam_beta2], adam_epsilon=config.adam_epsilon,
                  loss_type=config.loss_type, loss_weights=config.loss_weights,
                  reference="the quantized model (adapter disabled)" if recipe.method != "dpo-full"
                  else "a frozen copy of the quantized model")
    return values


def _dev_checker(request: PatchRequest, trainer, tokenizer, pairs: list[PreferencePair], base: ResolvedModel,
                 quantized: ResolvedModel, log: Callable[[str], None], cache: Path | None = None):
    """The held-out check callback (dev_check.py), added to `trainer`; measures the full-precision target,
    or reads it from `cache` (a resumable run's checkpoint directory, keyed by the same inputs)."""
    from .dev_check import DevCheckCallback, GridView, check_sets, patch_texts
    from .trainer import lora_factors

    factors = lora_factors(trainer.model)
    exclude = patch_texts(p.prompt for p in pairs)
    sets = check_sets(request.data_dir, exclude, prompts_from=prompts_from(base))
    started = time.perf_counter()
    sets, reference = _full_precision_target(request, base, tokenizer, sets, cache)
    update_masks = (lambda: trainer.update_masks) if request.recipe.mask == "exact" else None
    grid = (GridView(Path(quantized.location), factors, update_masks)
            if request.spec.quant in UNIFORM_GRID_METHODS else None)
    checker = DevCheckCallback(trainer, tokenizer, sets, request.recipe.check_every, request.recipe.check_margin,
                               reference=reference, factors=factors, grid=grid, log=log)
    checker.seconds = time.perf_counter() - started  # the target's measurement counts as checking
    trainer.add_callback(checker)
    return checker


def _full_precision_target(request: PatchRequest, base: ResolvedModel, tokenizer, sets, cache: Path | None):
    """(sets with the full-precision answers of the utility prompts, the full-precision model's check result):
    measured, or read from `cache/dev-target.json` where an earlier attempt of the same run wrote them."""
    from dataclasses import asdict

    from transformers import AutoModelForCausalLM

    from .dev_check import CheckResult, measure, with_full_precision_answers

    stored = cache / "dev-target.json" if cache is not None else None
    if stored is not None and stored.is_file():
        target = read_json(stored)
        utility = tuple(target["utility"])
        if [item["prompt"] for item in utility] == [item["prompt"] for item in sets.utility]:
            return replace(sets, utility=utility), CheckResult(**target["reference"])
    full_precision = AutoModelForCausalLM.from_pretrained(base.location, dtype="auto", use_safetensors=True)
    full_precision = full_precision.to(request.device).eval()
    sets = with_full_precision_answers(sets, full_precision, tokenizer)
    reference = measure(full_precision, tokenizer, sets, step=-1)
    del full_precision
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stored, {"utility": list(sets.utility), "reference": asdict(reference)})
    return sets, reference


def _report_progress_through(trainer, log: Callable[[str], None]) -> None:
    """Replace the Trainer's printed log dicts with one line per logging step, through `log`."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _Lines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                margin = logs.get("rewards/margins")
                extra = f", reward margin {float(margin):.4f}" if margin is not None else ""
                log(f"step {state.global_step}/{state.max_steps}: loss {float(logs['loss']):.4f}{extra}")

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_Lines())


# --- cost measurement -----------------------------------------------------------------------------
class _Peak:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.peak_mb: float | None = None


@contextlib.contextmanager
def peak_memory(device: str):
    """Peak memory while the block runs: CUDA allocator peak on GPU; on CPU the process's peak resident
    set (sampled every 10 ms from /proc; includes everything the process holds, so compare runs made the
    same way)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        peak = _Peak("cuda_max_allocated")
        torch.cuda.reset_peak_memory_stats()
        try:
            yield peak
        finally:
            peak.peak_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return
    peak = _Peak("cpu_peak_rss")
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    stop = threading.Event()
    samples: list[int] = []

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(int(Path("/proc/self/statm").read_text().split()[1]) * page)
            except (OSError, ValueError, IndexError):
                return
            stop.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak.peak_mb = round(max(samples) / 2**20, 1) if samples else None


def _write_pairs(path: Path, pairs: list[PreferencePair]) -> None:
    lines = [json.dumps({"messages": list(p.prompt.messages), "source": p.prompt.source, "chosen": p.chosen,
                         "rejected": p.rejected}) for p in pairs]
    atomic_write_text(path, "".join(line + "\n" for line in lines))

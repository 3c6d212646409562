"""`qresafe-bench patch`: restore a quantized variant's safety with Q-resafe (or a baseline); store the result.

    qresafe-bench patch --model ref-tiny --quant rtn --bits 4                    # Q-resafe, the paper's recipe
    qresafe-bench patch --model ref-tiny --quant rtn --bits 4 --recipe tuned     # a named departure (recipes.yaml)
    qresafe-bench patch --model ref-tiny --quant rtn --bits 4 --tau 0.2 --steps 50
    qresafe-bench patch --model ref-tiny --quant rtn --bits 4 --method dpo-full   # baselines: sft, lora-dpo
    qresafe-bench patch --model ref-tiny --quant rtn --bits 4 --keep-safety-critical 0.01   # no fine-tuning
    qresafe-bench eval  --model ref-tiny --quant rtn --bits 4 --patch qresafe     # evaluate it like any variant
    qresafe-bench patch --model ref-tiny --quant qlora --bits 4 --calib direct    # one adapter: qlora's + the patch
    qresafe-bench patch --model ref-tiny --quant aqlm --bits 2 --calib benign     # a LoRA adapter on the AQLM base

Integer grids (rtn, gptq, awq, llm-qat) take the patch merged under their scales; bitsandbytes, aqlm and
qlora keep it as an adapter (qresafe/README.md).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from .options import (
    Backend,
    Bits,
    Calib,
    DataDir,
    DataParallel,
    Device,
    GroupSize,
    Home,
    Json,
    Model,
    ModelsFile,
    Quant,
    TensorParallel,
    spec_from_options,
)


def patch_command(
    model: Model,
    quant: Quant = "none",
    bits: Bits = None,
    calib: Calib = None,
    group_size: GroupSize = None,
    method: Annotated[str, typer.Option(help="qresafe (masked LoRA-DPO), lora-dpo (tau 1), sft (NLL of y_w), "
                                             "dpo-full (every weight; integer grids only).")] = "qresafe",
    recipe_name: Annotated[str, typer.Option("--recipe", help="Named recipe the settings start from: paper (the "
                                                              "paper's hyperparameters) or tuned "
                                                              "(qresafe/recipes.yaml); options below override "
                                                              "it.")] = "paper",
    patch_tier: Annotated[str | None, typer.Option(help="Calibration tier the patch prompts come from: variant "
                                                        "(the variant's own; benign if it has none), benign, "
                                                        "indirect, direct [paper: variant].")] = None,
    n_tier_prompts: Annotated[int | None, typer.Option(help="Prompts drawn from the tier [paper: all 128].")] = None,
    n_harmful_prompts: Annotated[int | None, typer.Option(help="Held-out harmful requests added [paper: 0].")] = None,
    tau: Annotated[float | None, typer.Option(help="Safety-critical fraction per layer that may change [0.6].")] = None,
    beta: Annotated[float | None, typer.Option(help="DPO temperature [0.01].")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank [128, or a quarter of the narrowest layer].")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha [2 r].")] = None,
    target_modules: Annotated[str | None, typer.Option(help="Comma-separated layer names to adapt "
                                                            "[q,k,v,o,gate,up,down _proj].")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the pairs [paper: 1].")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps, instead of --epochs.")] = None,
    train_batch_size: Annotated[int | None, typer.Option(help="Pairs per step [8].")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate [paper: 5e-6].")] = None,
    lr_scheduler: Annotated[str | None, typer.Option(help="linear, constant or cosine [paper: linear].")] = None,
    reidentify_every: Annotated[int | None, typer.Option(help="K: re-identify safety-critical weights every K "
                                                              "steps [1000].")] = None,
    score_loss: Annotated[str | None, typer.Option(help="Loss the SNIP scores use: dpo or nll [dpo].")] = None,
    check_every: Annotated[int | None, typer.Option(help="Every N steps, check the model as saved on held-out "
                                                         "harmful/benign/utility sets and keep the best checkpoint "
                                                         "(qresafe/dev_check.py) [0 = off].")] = None,
    check_margin: Annotated[float | None, typer.Option(help="Benign refusal may rise, utility fall, by at most "
                                                            "this much in a kept checkpoint [0.05].")] = None,
    rpo_alpha: Annotated[float | None, typer.Option(
        help="Add this times the NLL of y_w to the DPO loss (RPO; TRL sigmoid+sft) [0 = off: paper].")] = None,
    mask: Annotated[str | None, typer.Option(
        help="Where the SNIP mask M_Q acts: block (rows x columns of the LoRA factors) or exact (the factors "
             "train unmasked, the merge adds M_Q * sBA; integer grids only) [block].")] = None,
    keep_safety_critical: Annotated[float | None, typer.Option(
        help="No fine-tuning: keep this fraction of each layer (top SNIP) in 16-bit, quantize the rest.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Length of y_w and y_l [64, the evals' own].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of prompt sampling, LoRA init and batching [0].")] = None,
    backend: Backend = "hf",
    batch_size: Annotated[int, typer.Option(help="Generation batch size for y_w / y_l (hf).")] = 32,
    device: Device = "auto",
    tensor_parallel_size: TensorParallel = 1,
    data_parallel_size: DataParallel = 1,
    data_dir: DataDir = None,
    home: Home = None,
    models_file: ModelsFile = None,
    json_out: Json = False,
) -> None:
    """Patch a quantized variant; the result is a registered variant (`eval --patch LABEL`)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ...qresafe.config import PatchError, PatchRecipe
    from ...qresafe.patch import PatchRequest, check_request, run_patch
    from ..core.device import resolve_device
    from ..core.paths import cache_root
    from ..data.calibration import TIERS, CalibrationError
    from ..generation.backends import BackendSettings

    # Refuse bad input before anything is loaded, generated or written.
    if quant == "none":
        raise PatchError("patching needs a quantized model: add --quant METHOD --bits B (the full-precision model "
                         "is what the patch restores the quantized one towards)")
    if patch_tier is not None and patch_tier not in ("variant", *TIERS):
        raise CalibrationError(f"unknown --patch-tier {patch_tier!r}; choose one of: variant, {', '.join(TIERS)}")
    if keep_safety_critical is not None:
        if method != "qresafe":
            raise PatchError("--keep-safety-critical is its own method (no fine-tuning); drop --method")
        method = "keep-critical"
    spec = spec_from_options(model, quant, bits, calib, group_size)
    device = resolve_device(device)
    recipe = PatchRecipe.for_method(
        method, recipe_name, patch_tier=patch_tier, epochs=epochs, lr_scheduler=lr_scheduler,
        n_tier_prompts=n_tier_prompts, n_harmful_prompts=n_harmful_prompts, tau=tau,
        beta=beta, lora_r=lora_r, lora_alpha=lora_alpha, steps=steps, batch_size=train_batch_size,
        learning_rate=learning_rate, reidentify_every=reidentify_every, score_loss=score_loss,
        keep_fraction=keep_safety_critical, max_new_tokens=max_new_tokens, seed=seed, check_every=check_every,
        check_margin=check_margin, rpo_alpha=rpo_alpha, mask=mask,
        target_modules=tuple(t.strip() for t in target_modules.split(",") if t.strip()) if target_modules else None)
    request = PatchRequest(spec=spec, recipe=recipe, data_dir=data_dir, models_file=models_file,
                           backend=BackendSettings(name=backend, batch_size=batch_size, device=device,
                                                   tensor_parallel_size=tensor_parallel_size,
                                                   data_parallel_size=data_parallel_size),
                           device=device)
    check_request(request)

    err = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} generated"),
                  TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as progress:
        job = progress.add_task(f"patching {spec.slug} with {recipe.label}", total=None)
        outcome = run_patch(request, home=cache_root(home), log=lambda msg: progress.console.print(f"[dim]{msg}[/dim]"),
                            on_generated=lambda: progress.advance(job))
    if json_out:
        print(json.dumps({"path": str(outcome.path), "from_store": outcome.from_store, **outcome.report},
                         indent=2, sort_keys=True))
    else:
        print(outcome.path)
    if outcome.report.get("changes_nothing"):
        err.print(f"the patch changes nothing: {outcome.report['changes_nothing']}")
    where = "found in the store" if outcome.from_store else "built"
    calib_opt = f" --calib {spec.calib}" if spec.calib != "none" else ""
    calib_opt += f" --group-size {spec.group_size}" if spec.group_size is not None else ""
    err.print(f"[dim]{where}: {outcome.spec.slug}; evaluate with: qresafe-bench eval --model {spec.model} "
              f"--quant {spec.quant} --bits {spec.bits}{calib_opt} --patch {recipe.label}[/dim]")

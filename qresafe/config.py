"""The Q-resafe settings in one place: the named recipes, what each field means, and how a run is named.

Two levels, like TRL's `DPOConfig` beside `DPOTrainer` and llm-compressor's recipe beside a checkpoint:

- `QResafeConfig` (in `trainer.py`, beside the trainer it configures, so that reading a recipe does not
  import TRL) subclasses TRL's `DPOConfig` (so every `TrainingArguments` knob still works) and adds
  what Algorithm 1 of the paper needs on top of DPO: the safety-critical fraction `tau`, the
  re-identification period `reidentify_every` (K) and the loss the SNIP scores differentiate.
- `PatchRecipe` is the user-facing record of one patched variant (method, data, LoRA shape, schedule):
  plain data that round-trips YAML, is saved as `qresafe_patch.yaml` beside the variant, and names it
  (`label`, which becomes the variant spec's `patch` field).

The field defaults are the recipe named `paper` (Chen et al., ICML 2025, §4 and Appendix C): patch prompts
from the variant's own calibration set, lr 5e-6, 1 epoch, LoRA r = 128 / alpha = 256, beta = 0.01, tau = 0.6,
K = 1000. What the paper does not state is TRL's `DPOConfig` default: batch 8, AdamW, linear decay, no
warmup, no weight decay, gradient clipping at 1.0. Other recipes are named departures, listed with their
reasons in `recipes.yaml` and chosen by name (`--recipe tuned`); their label carries the name.

The reference models here are 96-192 wide, where r = 128 would be a full-rank "adapter", so
`lora_r = None` means "auto": 128, or a quarter of the narrowest adapted layer when that is smaller (48 for
ref-tiny's 192-wide projections, 24 for the micro build's 96); the value used is recorded in the report.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import ValidationError

from ..harness.core.errors import QresafeError
from ..harness.core.recipe import StrictRecipe
from ..harness.core.spec import DATA_TIERS

PATCH_METHODS: tuple[str, ...] = ("qresafe", "lora-dpo", "sft", "dpo-full", "keep-critical")
SCORE_LOSSES: tuple[str, ...] = ("dpo", "nll")
# Quantization formats a LoRA delta can be merged into under the existing scales (integer grids).
UNIFORM_GRID_METHODS: tuple[str, ...] = ("rtn", "gptq", "awq", "llm-qat")
# Formats whose weights cannot take a merged delta without requantizing: the patch stays an adapter.
ADAPTER_METHODS: tuple[str, ...] = ("bnb-int8", "bnb-nf4", "bnb-fp4", "aqlm")
# Formats that already carry a LoRA adapter (NF4 base + adapter): the patch is concatenated onto it (bases.py).
STACKED_ADAPTER_METHODS: tuple[str, ...] = ("qlora",)
RECIPES_FILE = Path(__file__).with_name("recipes.yaml")
DEFAULT_RECIPE = "paper"
TIER_SIZE = 128  # = harness.variants.CALIBRATION_SIZE: the quantizer's own calibration set


@functools.lru_cache(maxsize=1)
def named_recipes() -> dict[str, dict]:
    """Recipe name -> {description, settings}: `paper` (the field defaults) and the named departures."""
    recipes = yaml.safe_load(RECIPES_FILE.read_text(encoding="utf-8"))
    return {name: {"description": entry["description"], "settings": dict(entry.get("settings") or {})}
            for name, entry in recipes.items()}


class PatchError(QresafeError, RuntimeError):
    """A patch request that cannot be served (one-line message)."""


class PatchRefused(PatchError):
    """A refusal decided by the stored generations alone (the patch set is empty), so it is stored beside the
    variant it would have built and given again without recomputation, like any other result of the run."""


class PatchRecipe(StrictRecipe):
    """How one patched variant was made: plain data, round-trips YAML, unknown keys are errors.

    `label` names the variant (the spec's `patch` field): the method alone for the defaults, plus a
    short `-<key><value>` for every identifying setting that differs, e.g. `qresafe-tau0.2-steps50`.
    """

    error: ClassVar[type[QresafeError]] = PatchError
    what: ClassVar[str] = "patch recipe"

    method: Literal["qresafe", "lora-dpo", "sft", "dpo-full", "keep-critical"] = "qresafe"
    recipe: str = DEFAULT_RECIPE  # the named recipe these settings start from (recipes.yaml)
    # Patch set (paper §3.1): prompts of a calibration tier ("variant" = the tier the variant was calibrated
    # on; benign for variants made without data), optionally plus held-out harmful requests.
    patch_tier: Literal["variant", "benign", "indirect", "direct"] = "variant"
    n_tier_prompts: int | None = None  # None = the whole calibration set (TIER_SIZE conversations)
    n_harmful_prompts: int = 0  # held-out harmful requests added to the tier's prompts
    max_new_tokens: int = 64  # of y_w and y_l: the evaluation's own length, so the store is shared with eval
    seed: int = 0
    # Algorithm 1
    tau: float = 0.6
    reidentify_every: int = 1000
    beta: float = 0.01
    score_loss: Literal["dpo", "nll"] = "dpo"
    epochs: float | None = 1.0  # passes over the pairs; ignored when `steps` is set
    steps: int | None = None  # optimizer steps; None = `epochs` decide
    batch_size: int = 8  # pairs per step
    learning_rate: float = 5e-6
    lr_scheduler: Literal["linear", "constant", "cosine"] = "linear"
    lora_r: int | None = None  # None = auto (module docstring)
    lora_alpha: int | None = None  # None = 2 * r, the paper's ratio (256 / 128)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    max_length: int = 256  # tokens of prompt + response per sequence
    keep_fraction: float | None = None  # keep-critical: fraction of each layer kept in 16-bit
    # Dose by held-out checks (dev_check.py): every `check_every` steps the model as it would be saved answers
    # held-out harmful / benign / utility sets; the best checkpoint within `check_margin` of the unpatched
    # model's benign refusal and utility is kept. 0 = off: the paper's fixed schedule.
    check_every: int = 0
    check_margin: float = 0.05
    # DPO plus rpo_alpha x the NLL of y_w (RPO, Pang et al. 2024; TRL's loss_type ["sigmoid", "sft"] with
    # loss_weights [1, rpo_alpha]). 0 = off: the paper's pure DPO. Why a knob: DPO lowers y_l's likelihood, and
    # where y_l is a compliance that opens like a benign answer ("Sure, here is ...") it lowers the benign answers
    # with it (likelihood displacement); the NLL term holds y_w, the full-precision answers, where they were.
    rpo_alpha: float = 0.0
    # Where M_Q (the top-tau SNIP entries) acts. "block": on the LoRA factors, as a rows x columns block (snip.py,
    # "Decomposition"). "exact": the factors train unmasked and the merge adds M_Q * s B A, the paper's
    # Q0 + Quant(M_Q * BA) entry for entry; only integer grids can take an arbitrary sparse update (an adapter
    # cannot), so it is refused elsewhere (`check_mask_format`).
    mask: Literal["block", "exact"] = "block"

    def model_post_init(self, _context) -> None:
        if self.method == "keep-critical":
            if self.keep_fraction is None or not 0.0 < self.keep_fraction < 1.0:
                raise PatchError(f"--keep-safety-critical must be a fraction in (0, 1), got {self.keep_fraction}")
        elif self.keep_fraction is not None:
            raise PatchError("--keep-safety-critical is its own method (no fine-tuning); drop --method")
        if self.recipe not in named_recipes():
            raise PatchError(f"unknown --recipe {self.recipe!r}; choose one of: {', '.join(named_recipes())}")
        if self.method == "lora-dpo" and self.tau != 1.0:
            raise PatchError("--method lora-dpo is LoRA-DPO without a mask (tau = 1); drop --tau or use qresafe")
        if not 0.0 <= self.tau <= 1.0:
            raise PatchError(f"--tau must be in [0, 1], got {self.tau}")
        for name in ("batch_size", "reidentify_every", "max_new_tokens", "max_length"):
            if getattr(self, name) < 1:
                raise PatchError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.steps is None and self.epochs is None:
            raise PatchError("the patch needs a length: --steps N or --epochs E")
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and self.epochs <= 0):
            raise PatchError(f"--steps and --epochs must be positive, got {self.steps} and {self.epochs}")
        tier_prompts = TIER_SIZE if self.n_tier_prompts is None else self.n_tier_prompts
        if tier_prompts < 0 or self.n_harmful_prompts < 0 or tier_prompts + self.n_harmful_prompts < 1:
            raise PatchError("the patch set needs at least one prompt (--n-tier-prompts / --n-harmful-prompts)")
        if self.check_every < 0 or not 0.0 <= self.check_margin <= 1.0:
            raise PatchError("--check-every must be >= 0 (0 = off) and --check-margin in [0, 1]")
        if self.check_every and self.method in ("dpo-full", "keep-critical"):
            raise PatchError(f"--check-every keeps the best LoRA checkpoint; --method {self.method} has no adapter")
        if self.lora_r is not None and self.lora_r < 1:
            raise PatchError(f"--lora-r must be positive, got {self.lora_r}")
        if self.beta <= 0 or self.learning_rate <= 0:
            raise PatchError("--beta and --learning-rate must be positive")
        if self.rpo_alpha < 0:
            raise PatchError(f"--rpo-alpha must be >= 0 (0 = off), got {self.rpo_alpha}")
        if self.rpo_alpha and self.method not in ("qresafe", "lora-dpo", "dpo-full"):
            raise PatchError(f"--rpo-alpha adds an NLL term to the DPO loss; --method {self.method} has no DPO loss")
        if self.mask == "exact" and self.method != "qresafe":
            raise PatchError(f"--mask exact applies Q-resafe's SNIP mask to the merged update; --method {self.method} "
                             "has no mask: use --method qresafe")

    @classmethod
    def for_method(cls, method: str, recipe: str | None = None, **overrides) -> PatchRecipe:
        """The named `recipe` (default: the paper's) for `method`, with the method's own defaults (baselines:
        tau 1) and the given overrides (None = keep the recipe's value). Setting `steps` replaces `epochs`."""
        if method not in PATCH_METHODS:
            raise PatchError(f"unknown --method {method!r}; choose one of: {', '.join(PATCH_METHODS)}")
        recipe = recipe or DEFAULT_RECIPE
        if recipe not in named_recipes():
            raise PatchError(f"unknown --recipe {recipe!r}; choose one of: {', '.join(named_recipes())}")
        base = {"method": method, "recipe": recipe, **named_recipes()[recipe]["settings"]}
        if method in ("lora-dpo", "sft", "dpo-full"):
            base["tau"] = 1.0  # baselines update every weight they train
        if method in ("sft", "keep-critical"):
            base["rpo_alpha"] = 0.0  # no DPO loss to add the NLL term to
        if method in ("dpo-full", "keep-critical"):
            base["check_every"] = 0  # no adapter checkpoint to keep
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "steps" in overrides and "epochs" not in overrides:
            overrides["epochs"] = None
        try:
            return cls(**{**base, **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise PatchError(f"--{'.'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}") from None

    @property
    def label(self) -> str:
        """Filesystem-safe name of this patch: method, the recipe's name unless it is the paper's, and every
        identifying setting off that recipe, e.g. `qresafe-tau0.2-steps50`, `qresafe-tuned`."""
        defaults = PatchRecipe.for_method(self.method, self.recipe, keep_fraction=self.keep_fraction).model_dump()
        short = {"patch_tier": "tier", "n_tier_prompts": "ntier", "n_harmful_prompts": "nharm",
                 "max_new_tokens": "gen", "reidentify_every": "k", "score_loss": "loss", "learning_rate": "lr",
                 "lora_r": "r", "lora_alpha": "alpha", "batch_size": "bs", "max_length": "len",
                 "target_modules": "targets", "keep_fraction": "f", "lr_scheduler": "sched",
                 "check_every": "check", "check_margin": "margin", "rpo_alpha": "rpo", "mask": "mask"}
        parts = [self.method]
        if self.recipe != DEFAULT_RECIPE:
            parts.append(self.recipe)
        if self.keep_fraction is not None:
            parts.append(f"f{self.keep_fraction:g}")
        for key, value in self.model_dump().items():
            if key in ("method", "recipe", "keep_fraction") or value == defaults[key]:
                continue
            if key == "epochs" and self.steps is not None:
                continue  # replaced by steps, which the label names
            if key == "target_modules":
                value = "+".join(value)
            elif isinstance(value, float):
                value = f"{value:g}"
            parts.append(f"{short.get(key, key)}{value}")
        return "-".join(parts)

    def tier_for(self, variant_calib: str) -> str:
        """The calibration tier the patch prompts come from, for a variant calibrated on `variant_calib`."""
        if self.patch_tier != "variant":
            return self.patch_tier
        return variant_calib if variant_calib in DATA_TIERS else "benign"


def check_mask_format(recipe: PatchRecipe, quant: str) -> None:
    """Refuse `--mask exact` where the patch is saved as an adapter: an arbitrary sparse M_Q * BA is not a LoRA
    update, and only an integer grid's merge writes every entry anyway."""
    if recipe.mask == "exact" and quant not in UNIFORM_GRID_METHODS:
        raise PatchError(f"--mask exact needs an integer-grid format ({', '.join(UNIFORM_GRID_METHODS)}); a {quant} "
                         "patch is a LoRA adapter, which cannot carry a sparse mask: use --mask block")


def auto_lora_rank(narrowest_width: int, requested: int | None) -> int:
    """The paper's r = 128, or a quarter of the narrowest adapted layer when that is smaller."""
    if requested is not None:
        return requested
    return max(1, min(128, narrowest_width // 4))

"""The Q-resafe settings in one place: the paper's defaults, what each means, and how a run is named.

Two levels, like TRL's `DPOConfig` beside `DPOTrainer` and llm-compressor's recipe beside a checkpoint:

- `QResafeConfig` (in `trainer.py`, beside the trainer it configures, so that reading a recipe does not
  import TRL) subclasses TRL's `DPOConfig` (so every `TrainingArguments` knob still works) and adds
  what Algorithm 1 of the paper needs on top of DPO: the safety-critical fraction `tau`, the
  re-identification period `reidentify_every` (K) and the loss the SNIP scores differentiate.
- `PatchRecipe` is the user-facing record of one patched variant (method, data, LoRA shape, steps):
  plain data that round-trips YAML, is saved as `qresafe_patch.yaml` beside the variant, and names it
  (`label`, which becomes the variant spec's `patch` field).

Paper defaults (Chen et al., ICML 2025, §4 and Appendix C): tau = 0.6, K = 1000, beta = 0.01, LoRA
r = 128, alpha = 256. The reference models here are 96-192 wide, where r = 128 would be a full-rank
"adapter", so `lora_r = None` means "auto": 128, or a quarter of the narrowest adapted layer when that is
smaller (48 for ref-tiny's 192-wide projections, 24 for the micro build's 96); the value used is
recorded in the variant's report.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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
    # Patch set (paper §3.1): prompts of a calibration tier plus held-out harmful requests.
    patch_tier: Literal[DATA_TIERS] = "benign"
    n_tier_prompts: int = 64  # prompts drawn from the tier (its 128 conversations are the quantizer's own)
    n_harmful_prompts: int = 64  # held-out harmful requests: where quantization loses the refusals
    max_new_tokens: int = 64  # of y_w and y_l: the evaluation's own length, so the store is shared with eval
    seed: int = 0
    # Algorithm 1
    tau: float = 0.6
    reidentify_every: int = 1000
    beta: float = 0.01
    score_loss: Literal["dpo", "nll"] = "dpo"
    steps: int = 200  # optimizer steps (the paper trains ~1 epoch of a few thousand pairs at batch 8-16)
    batch_size: int = 8  # pairs per step
    learning_rate: float = 5e-4
    lora_r: int | None = None  # None = auto (module docstring)
    lora_alpha: int | None = None  # None = 2 * r, the paper's ratio (256 / 128)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    max_length: int = 256  # tokens of prompt + response per sequence
    keep_fraction: float | None = None  # keep-critical: fraction of each layer kept in 16-bit
    # Dose by held-out checks (dev_check.py): every `check_every` steps the model as it would be saved answers
    # held-out harmful / benign / utility sets; the best checkpoint within `check_margin` of the unpatched
    # model's benign refusal and utility is kept. 0 = off: the paper's fixed-step recipe.
    check_every: int = 0
    check_margin: float = 0.05
    # DPO plus rpo_alpha x the NLL of y_w (RPO, Pang et al. 2024; TRL's loss_type ["sigmoid", "sft"] with
    # loss_weights [1, rpo_alpha]). 0 = off: the paper's pure DPO. Why a knob: DPO lowers y_l's likelihood, and
    # where y_l is a compliance that opens like a benign answer ("Sure, here is ...") it lowers the benign answers
    # with it (likelihood displacement); the NLL term holds y_w, the full-precision answers, where they were.
    rpo_alpha: float = 0.0

    def model_post_init(self, _context) -> None:
        if self.method == "keep-critical":
            if self.keep_fraction is None or not 0.0 < self.keep_fraction < 1.0:
                raise PatchError(f"--keep-safety-critical must be a fraction in (0, 1), got {self.keep_fraction}")
        elif self.keep_fraction is not None:
            raise PatchError("--keep-safety-critical is its own method (no fine-tuning); drop --method")
        if self.method == "lora-dpo" and self.tau != 1.0:
            raise PatchError("--method lora-dpo is LoRA-DPO without a mask (tau = 1); drop --tau or use qresafe")
        if not 0.0 <= self.tau <= 1.0:
            raise PatchError(f"--tau must be in [0, 1], got {self.tau}")
        for name in ("steps", "batch_size", "reidentify_every", "max_new_tokens", "max_length"):
            if getattr(self, name) < 1:
                raise PatchError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.n_tier_prompts < 0 or self.n_harmful_prompts < 0 or self.n_tier_prompts + self.n_harmful_prompts < 1:
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

    @classmethod
    def for_method(cls, method: str, **overrides) -> PatchRecipe:
        """The recipe of `method` with its own defaults (lora-dpo: tau 1) and the given overrides."""
        if method not in PATCH_METHODS:
            raise PatchError(f"unknown --method {method!r}; choose one of: {', '.join(PATCH_METHODS)}")
        base = {"method": method}
        if method in ("lora-dpo", "sft", "dpo-full"):
            base["tau"] = 1.0  # baselines update every weight they train
        overrides = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**{**base, **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise PatchError(f"--{'.'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}") from None

    @property
    def label(self) -> str:
        """Filesystem-safe name of this patch: method + every identifying setting off its default."""
        defaults = PatchRecipe.for_method(self.method, keep_fraction=self.keep_fraction).model_dump()
        short = {"patch_tier": "tier", "n_tier_prompts": "ntier", "n_harmful_prompts": "nharm",
                 "max_new_tokens": "gen", "reidentify_every": "k", "score_loss": "loss", "learning_rate": "lr",
                 "lora_r": "r", "lora_alpha": "alpha", "batch_size": "bs", "max_length": "len",
                 "target_modules": "targets", "keep_fraction": "f",
                 "check_every": "check", "check_margin": "margin", "rpo_alpha": "rpo"}
        parts = [self.method]
        if self.keep_fraction is not None:
            parts.append(f"f{self.keep_fraction:g}")
        for key, value in self.model_dump().items():
            if key in ("method", "keep_fraction") or value == defaults[key]:
                continue
            if key == "target_modules":
                value = "+".join(value)
            elif isinstance(value, float):
                value = f"{value:g}"
            parts.append(f"{short.get(key, key)}{value}")
        return "-".join(parts)



def auto_lora_rank(narrowest_width: int, requested: int | None) -> int:
    """The paper's r = 128, or a quarter of the narrowest adapted layer when that is smaller."""
    if requested is not None:
        return requested
    return max(1, min(128, narrowest_width // 4))

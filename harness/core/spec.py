"""The variant spec: one small immutable value that names a model and what was done to it.

Everything downstream (built weights, generations, judgments, results) is keyed by `VariantSpec.id`,
so a parameter enters once, at the CLI, and is never re-parsed on the way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from .errors import QresafeError

# The vocabulary, held once. Order is the order of every table and board.
METHODS: tuple[str, ...] = ("rtn", "gptq", "awq", "aqlm", "bnb-int8", "bnb-nf4", "bnb-fp4", "qlora", "llm-qat")
QUANT_METHODS: tuple[str, ...] = ("none", *METHODS)  # none = the unquantized model
# Calibration (or fine-tuning) data tiers, the paper's Risk-I / II / III.
DATA_TIERS: tuple[str, ...] = ("benign", "indirect", "direct")
CALIB_TIERS: tuple[str, ...] = ("none", *DATA_TIERS)  # none = no data (or a publisher's checkpoint)
BITS: tuple[int, ...] = (16, 8, 4, 3, 2)


class SpecError(QresafeError, ValueError):
    """An impossible combination of spec fields (bad user input)."""


@dataclass(frozen=True)
class VariantSpec:
    model: str  # registry name, or an absolute path to a local Hugging Face directory
    quant: str = "none"
    bits: int = 16  # 16 = unquantized
    calib: str = "none"  # calibration / fine-tuning data tier
    group_size: int | None = None  # None = the method's default; -1 = per-channel
    patch: str = "none"

    def __post_init__(self) -> None:
        if self.quant not in QUANT_METHODS:
            raise SpecError(f"unknown --quant {self.quant!r}; choose one of: {', '.join(QUANT_METHODS)}")
        if self.bits not in BITS:
            raise SpecError(f"--bits {self.bits} is not one of {', '.join(map(str, BITS))}")
        if self.calib not in CALIB_TIERS:
            raise SpecError(f"unknown --calib {self.calib!r}; choose one of: {', '.join(CALIB_TIERS)}")
        if self.quant == "none":
            if self.bits != 16:
                raise SpecError(f"--bits {self.bits} needs a --quant method (with --quant none, bits is 16)")
            if self.calib != "none":
                raise SpecError(f"--calib {self.calib} needs a --quant method that uses calibration data")
            if self.group_size is not None:
                raise SpecError("--group-size needs a --quant method")
        elif self.bits == 16:
            raise SpecError(f"--quant {self.quant} needs --bits (8, 4, 3 or 2)")

    def canonical(self) -> dict:
        return asdict(self)

    @property
    def id(self) -> str:
        """Stable id: a readable slug plus a hash of the canonical JSON."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return f"{self.slug}-{digest}"

    @property
    def slug(self) -> str:
        name = self.model.rstrip("/").rsplit("/", 1)[-1]
        parts = [name] if self.quant == "none" else [name, self.quant, f"w{self.bits}"]
        if self.calib != "none":
            parts.append(self.calib)
        if self.group_size is not None:
            parts.append(f"g{self.group_size}")
        if self.patch != "none":
            parts.append(self.patch)
        return "_".join(parts)

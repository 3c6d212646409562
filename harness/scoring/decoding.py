"""Decoding-attack grids (Huang et al. 2023, "Catastrophic jailbreak of open-source LLMs via exploiting
generation", arXiv 2310.06987): greedy, then one knob at a time.

A *setting* is (knob, value); its generation kwargs fix the other two knobs at their neutral values
(temperature 1, top-p 1, top-k 0 = off), so a setting varies exactly one thing. Huang et al. kept the
other knobs at Hugging Face's defaults instead; we make them explicit because a model's own
`generation_config.json` can override those defaults (Llama-2-chat ships temperature 0.6, top-p 0.9),
which would silently turn a one-knob sweep into a two-knob one.

Grids:
- `full`: the paper's grid: temperature 0.05..1.00 step 0.05 (20), top-p 0.00..1.00 step 0.05 (21, top-p 0
  included: it keeps only the top token, and is scored like every other value), top-k
  {1,2,5,10,20,50,100,200,500} (9): 50 sampled settings + greedy.
- `reduced` (default, CPU-sized): 4 values per knob spread over the same ranges: 12 sampled + greedy.
- a custom grid: `temperature=0.5,1.0;top_p=0.9;top_k=5,50` (any subset of the knobs).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import QresafeError

KNOBS: tuple[str, ...] = ("temperature", "top_p", "top_k")
NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}

FULL_GRID: dict[str, tuple[float, ...]] = {
    "temperature": tuple(round(0.05 * i, 2) for i in range(1, 21)),
    "top_p": tuple(round(0.05 * i, 2) for i in range(0, 21)),
    "top_k": (1, 2, 5, 10, 20, 50, 100, 200, 500),
}
REDUCED_GRID: dict[str, tuple[float, ...]] = {
    "temperature": (0.25, 0.5, 0.75, 1.0),
    "top_p": (0.25, 0.5, 0.75, 0.95),
    "top_k": (2, 10, 50, 500),
}
NAMED_GRIDS = {"full": FULL_GRID, "reduced": REDUCED_GRID}


class GridError(QresafeError, ValueError):
    """A decoding grid that cannot be parsed (one-line message)."""


@dataclass(frozen=True)
class Setting:
    knob: str  # "greedy" or one of KNOBS
    value: float | int | None

    @property
    def label(self) -> str:
        return "greedy" if self.knob == "greedy" else f"{self.knob}={self.value:g}"

    def gen_kwargs(self) -> dict:
        if self.knob == "greedy":
            return {"do_sample": False}
        return {"do_sample": True, **NEUTRAL, self.knob: self.value}


def parse_grid(spec: str) -> dict[str, tuple[float, ...]]:
    if spec in NAMED_GRIDS:
        return NAMED_GRIDS[spec]
    grid: dict[str, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        knob, _, values = part.partition("=")
        knob = knob.strip().replace("-", "_")
        if knob not in KNOBS or not values:
            raise GridError(f"bad decoding grid part {part!r} in {spec!r}; use full, reduced, or e.g. "
                            f"'temperature=0.5,1.0;top_p=0.9;top_k=5,50'")
        try:
            parsed = tuple(int(v) if knob == "top_k" else float(v) for v in values.split(","))
        except ValueError:
            raise GridError(f"bad value in decoding grid part {part!r}") from None
        bad = [v for v in parsed if (knob == "top_k" and v < 1) or (knob == "temperature" and v <= 0)
               or (knob == "top_p" and not 0 <= v <= 1)]
        if bad:
            raise GridError(f"out-of-range {knob} value(s) {bad} in decoding grid (temperature > 0, 0 <= top_p <= 1, "
                            f"top_k >= 1)")
        grid[knob] = parsed
    if not grid:
        raise GridError(f"empty decoding grid {spec!r}")
    return grid


def settings(spec: str = "reduced") -> list[Setting]:
    """Greedy first, then each knob's values in order."""
    grid = parse_grid(spec)
    return [Setting("greedy", None)] + [Setting(k, v) for k in KNOBS for v in grid.get(k, ())]

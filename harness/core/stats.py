"""Rates with their sample size and a 95% Wilson score interval; the exact McNemar test of paired outcomes.

Wilson rather than the normal approximation because ASRs near 0% or 100% on a few hundred prompts
are the common case here, where the normal interval collapses to zero width or leaves [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Rate:
    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "n": self.n, "successes": self.successes,
                "ci95_low": self.low, "ci95_high": self.high}

    def format(self, percent: bool = True) -> str:
        if not self.n:
            return "n/a (n=0)"
        scale, unit = (100.0, "%") if percent else (1.0, "")
        return (f"{self.value * scale:.1f}{unit} [{self.low * scale:.1f}, {self.high * scale:.1f}] "
                f"(n={self.n})")


def wilson(successes: int, n: int, z: float = Z_95) -> Rate:
    """Wilson score interval for a binomial proportion."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"invalid counts: successes={successes}, n={n}")
    if n == 0:
        return Rate(0, 0, float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(successes, n, max(0.0, centre - half), min(1.0, centre + half))


def rate_of(flags: list[bool] | list[int] | list[float]) -> Rate:
    """Rate of truthy per-item outcomes (each 0/1)."""
    values = [float(f) for f in flags]
    if any(v not in (0.0, 1.0) for v in values):
        raise ValueError("rate_of expects 0/1 outcomes")
    return wilson(int(sum(values)), len(values))


def mean_interval(values: list[float], *, low: float = -math.inf, high: float = math.inf) -> dict:
    """A mean with its normal-approximation 95% interval (clipped to [low, high]) and n, as a board cell:
    `kind: score` marks it as a number, not a rate."""
    n = len(values)
    if not n:
        return {"value": float("nan"), "n": 0, "ci95_low": float("nan"), "ci95_high": float("nan"), "kind": "score"}
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = Z_95 * sd / math.sqrt(n)
    return {"value": mean, "n": n, "ci95_low": max(low, mean - half), "ci95_high": min(high, mean + half),
            "kind": "score"}


SIGNIFICANCE = 0.05  # the paired test's level for "ASR rose" (sweeps' patch_when asr-rose, the boards)


def rose_significantly(turned_unsafe: int, turned_safe: int) -> bool:
    """Whether AdvBench ASR rose significantly from one run to the other: more prompts turned unsafe than safe,
    exact McNemar p < SIGNIFICANCE."""
    return turned_unsafe > turned_safe and mcnemar_exact(turned_unsafe, turned_safe) < SIGNIFICANCE


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p for b and c discordant pairs (binomial test of b against n = b + c, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    try:
        from scipy.stats import binomtest

        return float(binomtest(min(b, c), n, 0.5).pvalue)
    except ImportError:  # pragma: no cover - the same test by hand
        tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
        return min(1.0, 2 * tail)

"""Deployment gate: is a variant's stored AdvBench ASR more than P points above its full-precision model's?

Read from the store only. Both runs must come from the same evaluation setting (task limit, tokens, seed,
data, backend) so the two rates are comparable; the paired McNemar p is reported beside the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import QresafeError
from ..core.spec import VariantSpec
from .board import SAFETY, base_weights, fmt_p, fmt_rate, paired
from .collect import Run, comparable, spec_key
from .evidence import runs_of


class GateMissing(QresafeError, RuntimeError):
    """The store holds no usable result for one side of the comparison (exit 2)."""


@dataclass
class GateResult:
    passed: bool
    variant_asr: dict
    base_asr: dict
    increase_pp: float
    max_increase_pp: float
    p_mcnemar: float
    variant_run: str
    base_run: str

    def line(self, spec: VariantSpec) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: {spec.slug} ASR {fmt_rate(self.variant_asr)} vs full precision {fmt_rate(self.base_asr)}: "
                f"{self.increase_pp:+.1f} points (limit +{self.max_increase_pp:g}; {fmt_p(self.p_mcnemar)})")


def _setting(run: Run) -> tuple:
    r = run.results
    return (r.get("limit"), r.get("max_new_tokens"), r.get("seed"), r.get("data"),
            (r.get("backend") or {}).get("name"), base_weights(run))


def gate(home: Path, spec: VariantSpec, max_increase_pp: float, eval_hint: str,
         runs_folders: Sequence[Path] = ()) -> GateResult:
    """`runs_folders`: exported runs read beside the store (boards/evidence.py), e.g. a published board's."""
    task, metric = SAFETY
    base_spec = VariantSpec(model=spec.model)
    runs = [r for r in runs_of(home, runs_folders) if comparable(r) and task in r.results["tasks"]]
    variant_runs = [r for r in runs if spec_key(r.spec) == spec_key(spec.canonical())]
    base_runs = [r for r in runs if spec_key(r.spec) == spec_key(base_spec.canonical())]
    if not variant_runs:
        raise GateMissing(f"no stored {task} result for {spec.slug}: run `{eval_hint}` first")
    if not base_runs:
        raise GateMissing(f"no stored {task} result for the full-precision {spec.model}: run "
                          f"`qresafe-bench eval --model {spec.model} --tasks {task}` first")
    pairs = [(v, b) for v in variant_runs for b in base_runs if _setting(v) == _setting(b)]
    if not pairs:
        raise GateMissing(f"{spec.slug} and {spec.model} were evaluated with different settings (limit, tokens, seed, "
                          "data, backend or build of the weights): evaluate both with the same options")
    # the most documents, then the newest pair
    variant, base = max(pairs, key=lambda vb: (vb[0].rate(task, metric)["n"], vb[0].mtime, vb[1].mtime))
    v_rate, b_rate = variant.rate(task, metric), base.rate(task, metric)
    increase = 100 * (v_rate["value"] - b_rate["value"])
    return GateResult(passed=increase <= max_increase_pp, variant_asr=v_rate, base_asr=b_rate,
                      increase_pp=increase, max_increase_pp=max_increase_pp,
                      p_mcnemar=paired(base, variant)["p_mcnemar"], variant_run=variant.key, base_run=base.key)

"""A grid of variants (methods × bits × calibration tiers × group sizes), each quantized on demand and
evaluated through the run store; cells the methods cannot serve are listed as skipped, with why.

Every cell is an ordinary `eval`, so a sweep killed at any point resumes from the store: finished cells
come back from their results file, a half-finished cell from its stored generations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .backends import BackendSettings
from .evaluate import EvalRequest, run_eval
from .quantize.base import METHODS, QuantError, method_info
from .spec import SpecError, VariantSpec
from .variants import recipe_for


@dataclass(frozen=True)
class SweepGrid:
    model: str
    methods: tuple[str, ...]
    bits: tuple[int, ...] = (8, 4, 3, 2)
    calib: tuple[str, ...] = ("benign", "indirect", "direct")
    group_sizes: tuple[int | None, ...] = (None,)
    tasks: tuple[str, ...] = ("advbench", "over_refusal", "ref_utility")
    include_unquantized: bool = True

    def __post_init__(self) -> None:
        for method in self.methods:
            method_info(method)  # unknown names fail here, before anything runs


@dataclass
class Cell:
    spec: VariantSpec
    skipped: str | None = None  # why the cell cannot run
    results: dict = field(default_factory=dict)
    error: str | None = None


def cells(grid: SweepGrid) -> Iterator[Cell]:
    """Every (method, bits, tier, group) combination, runnable or with the reason it is not."""
    if grid.include_unquantized:
        yield Cell(VariantSpec(model=grid.model))
    for method, bits in itertools.product(grid.methods, grid.bits):
        info = METHODS[method]
        if bits not in info.bits:  # one skipped row for the (method, bits) pair, not one per tier
            yield Cell(_placeholder(grid.model, method, bits, "-", None),
                       skipped=f"{method} supports {', '.join(map(str, info.bits))} bits only")
            continue
        tiers = ("none",) if info.data == "none" else grid.calib
        # Group size is a free parameter only of the integer-grid methods; bitsandbytes fixes it at 64.
        groups = grid.group_sizes if info.fmt == "compressed-tensors" else (None,)
        for calib, group in itertools.product(tiers, groups):
            try:
                spec = VariantSpec(model=grid.model, quant=method, bits=bits, calib=calib, group_size=group)
                recipe_for(spec)
            except (QuantError, SpecError) as exc:
                yield Cell(_placeholder(grid.model, method, bits, calib, group), skipped=str(exc))
                continue
            yield Cell(spec)


def _placeholder(model: str, method: str, bits: int, calib: str, group: int | None) -> VariantSpec:
    """A spec-shaped label for a skipped cell (bypasses validation: the cell is not runnable)."""
    spec = object.__new__(VariantSpec)
    for name, value in dict(model=model, quant=method, bits=bits, calib=calib, group_size=group, patch="none").items():
        object.__setattr__(spec, name, value)
    return spec


def run_sweep(grid: SweepGrid, *, home: Path, data_dir: str | None, backend: BackendSettings,
              on_cell: Callable[[Cell, int, int], None] | None = None, log: Callable[[str], None] = print,
              keep_going: bool = True) -> list[Cell]:
    planned = list(cells(grid))
    runnable = [c for c in planned if c.skipped is None]
    for index, cell in enumerate(runnable):
        if on_cell:
            on_cell(cell, index, len(runnable))
        request = EvalRequest(spec=cell.spec, tasks=grid.tasks, backend=backend, data_dir=data_dir)
        try:
            cell.results = run_eval(request, home=home, log=log).results
        except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the grid; it is reported
            if not keep_going:
                raise
            cell.error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log(f"cell {cell.spec.slug} failed: {cell.error}")
    return planned


def _rate(results: dict, task: str, metric: str) -> str:
    try:
        rate = results["tasks"][task]["metrics"][metric]
    except KeyError:
        return ""
    return f"{100 * rate['value']:.1f} [{100 * rate['ci95_low']:.1f}, {100 * rate['ci95_high']:.1f}]"


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("AdvBench ASR % [95% CI]", "advbench", "asr"),
    ("affirmative %", "advbench", "affirmative"),
    ("over-refusal % [95% CI]", "over_refusal", "over_refusal"),
    ("ref utility % [95% CI]", "ref_utility", "accuracy"),
)


def markdown_table(planned: list[Cell]) -> str:
    """The grid as Markdown: one row per cell, n in the header, skipped cells with their reason."""
    ns = {}
    for cell in planned:
        for _, task, metric in COLUMNS:
            if cell.results and task in cell.results.get("tasks", {}):
                ns[task] = cell.results["tasks"][task]["metrics"][metric]["n"]
    header = ["method", "bits", "calib", "group"] + [
        f"{title} (n={ns[task]})" if task in ns else title for title, task, _ in COLUMNS] + ["status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in planned:
        spec = cell.spec
        status = "skipped: " + cell.skipped if cell.skipped else ("error: " + cell.error if cell.error else
                                                                 ("ok" if cell.results else "not run"))
        row = [spec.quant, str(spec.bits), spec.calib,
               "default" if spec.group_size is None else ("channel" if spec.group_size == -1 else str(spec.group_size))]
        row += [_rate(cell.results, task, metric) if cell.results else "" for _, task, metric in COLUMNS]
        lines.append("| " + " | ".join(row + [status.replace("|", "/")]) + " |")
    return "\n".join(lines) + "\n"

"""`qresafe-bench sweep`: quantize and evaluate a grid of variants; print it as a Markdown table."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .options import DataDir, Home, Model

ALL_METHODS = "rtn,gptq,awq,bnb-int8,bnb-nf4,bnb-fp4,aqlm,qlora,llm-qat"
ALL_TIERS = "benign,indirect,direct"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def sweep_command(
    model: Model,
    quant: Annotated[str, typer.Option(help="Comma-separated methods (see `methods`).")] = ALL_METHODS,
    bits: Annotated[str, typer.Option(help="Comma-separated bits.")] = "8,4,3,2",
    calib: Annotated[str, typer.Option(help="Comma-separated tiers (methods that use data).")] = ALL_TIERS,
    group_size: Annotated[str, typer.Option(
        help="Comma-separated group sizes for integer-grid methods; -1 = per-channel; 'default'.")] = "default",
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "advbench,over_refusal,ref_utility",
    batch_size: Annotated[int, typer.Option(help="Generation batch size.")] = 64,
    out: Annotated[Path | None, typer.Option(help="Also write the Markdown table to this file.")] = None,
    data_dir: DataDir = None,
    home: Home = None,
) -> None:
    """Run every supported cell of methods × bits × tiers × group sizes; skipped cells say why."""
    from ..backends import BackendSettings
    from ..paths import cache_root
    from ..store import atomic_write_text
    from ..sweep import SweepGrid, markdown_table, run_sweep

    groups = tuple(None if g.strip() == "default" else int(g) for g in group_size.split(","))
    grid = SweepGrid(model=model, methods=tuple(q.strip() for q in quant.split(",") if q.strip()),
                     bits=_ints(bits), calib=tuple(c.strip() for c in calib.split(",") if c.strip()),
                     group_sizes=groups, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()))
    err = Console(stderr=True)
    started = time.time()
    planned = run_sweep(grid, home=cache_root(home), data_dir=data_dir, backend=BackendSettings(batch_size=batch_size),
                        on_cell=lambda cell, i, n: err.print(f"[bold]cell {i + 1}/{n}[/bold] {cell.spec.slug}"),
                        log=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    table = markdown_table(planned)
    print(table)
    if out:
        command = "qresafe-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        header = (f"# {model}: quantization grid\n\nCommand: `{command}`\n\n"
                  f"Wall time: {time.time() - started:.0f} s on this machine (cells already in the store are not "
                  "recomputed). Scorer: GCG keyword rule (29 strings), greedy decoding, chat template, 64 new "
                  "tokens; every rate with its Wilson 95% interval. Backend: hf (transformers), CPU.\n\n")
        atomic_write_text(out, header + table)
    failed = [c for c in planned if c.error]
    if failed:
        err.print(f"{len(failed)} cell(s) failed; rerun to retry them (finished cells come from the store)")
        raise typer.Exit(1)

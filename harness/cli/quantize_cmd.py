"""`qresafe-bench quantize` and `qresafe-bench methods`: build variants; show what each method supports."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from .options import Bits, Calib, DataDir, GroupSize, Home, Json, Model, ModelsFile, Quant, spec_from_options


def quantize_command(model: Model, quant: Quant, bits: Bits = None, calib: Calib = None,
                     group_size: GroupSize = None, data_dir: DataDir = None, home: Home = None,
                     models_file: ModelsFile = None) -> None:
    """Quantize a model into a registered variant (stored; `eval` with the same options finds it)."""
    from ..core.paths import cache_root
    from ..core.spec import SpecError
    from ..models.registry import resolve

    if quant == "none":
        raise SpecError("--quant none is the unquantized model: nothing to quantize")
    spec = spec_from_options(model, quant, bits, calib, group_size)
    err = Console(stderr=True)
    resolved = resolve(spec, cache_root=cache_root(home), data_dir=data_dir, models_file=models_file,
                       log=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    print(resolved.location)


def methods_command(json_out: Json = False) -> None:
    """The method × bits matrix: what each quantization method supports, and through which library."""
    from ..core.spec import BITS
    from ..quantize.base import QUANTIZERS, SEVEN_B, memory_gib

    bit_columns = [b for b in BITS if b != 16]
    rows = [{"method": m.name, "bits": list(m.bits), "library": m.library, "data": m.data, "format": m.fmt,
             "default_group_size": m.default_group_size, "note": m.note,
             "memory_7b_gib": round(memory_gib(m, SEVEN_B)), "memory_note": m.memory_note} for m in QUANTIZERS.values()]
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="quantization methods × bits")
    table.add_column("method")
    for b in bit_columns:
        table.add_column(f"{b}-bit", justify="center")
    for column in ("data", "format", "7B build memory", "library"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["method"], *("yes" if b in row["bits"] else "-" for b in bit_columns),
                      {"none": "-", "text": "calibration text", "pairs": "training pairs"}[row["data"]],
                      row["format"], f"~{row['memory_7b_gib']} GiB", row["library"])
    Console().print(table)

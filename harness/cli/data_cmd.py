"""`qresafe-bench data`: where each public data set is read from."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .options import DataDir, Json


def data_command(data_dir: DataDir = None, json_out: Json = False) -> None:
    """Show the public data sets, their local layout under --data-dir, and their canonical sources."""
    from ..data.catalogue import CATALOG

    rows = []
    for entry in CATALOG.values():
        local = Path(data_dir).expanduser() / entry.local_path if data_dir else None
        rows.append({"name": entry.name, "description": entry.description, "local_path": entry.local_path,
                     "url": entry.url,
                     "licence": entry.licence, "role": entry.role,
                     "found": bool(local and local.is_file()) if data_dir else None})
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"data sets (data dir: {data_dir or 'none: canonical upstream files'})")
    for column in ("name", "role", "under --data-dir", "found", "canonical source", "licence"):
        table.add_column(column, overflow="fold")
    for row in rows:
        found = "-" if row["found"] is None else ("yes" if row["found"] else "MISSING")
        table.add_row(row["name"], row["role"], row["local_path"], found, row["url"], row["licence"])
    Console().print(table)

"""`qresafe-bench zoo`: build the offline reference models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .options import DataDir, Home

app = typer.Typer(help="Offline reference models, trained here deterministically.", no_args_is_help=True)


@app.command("build")
def build_command(
    name: Annotated[str, typer.Argument(help="ref-tiny (builds ref-tiny-base first), ref-tiny-base or "
                                             "ref-tiny-shallow.")],
    micro: Annotated[bool, typer.Option(help="Seconds-long build for tests (not for reported numbers).")] = False,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: the shipped one).")] = None,
    data_dir: DataDir = None,
    home: Home = None,
) -> None:
    """Train (or find in the cache) a reference model; prints its directory."""
    from .. import zoo
    from ..core.paths import cache_root

    err = Console(stderr=True)
    path = zoo.build(name, micro=micro, seed=seed, cache_root=cache_root(home), data_dir=data_dir,
                     log=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    print(path)

"""`qresafe-bench zoo`: build the offline reference models and the safety-tuned real models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .options import DataDir, Home, ModelsFile

app = typer.Typer(help="Models built here deterministically: the offline reference models and safety-tuned real "
                       "models.", no_args_is_help=True)


@app.command("build")
def build_command(
    name: Annotated[str, typer.Argument(help="ref-tiny (builds ref-tiny-base first), ref-tiny-base, "
                                             "ref-tiny-shallow, or a safety-tuned model such as smollm2-135m-safe "
                                             "(a registry zoo entry with a base).")],
    micro: Annotated[bool, typer.Option(help="Seconds-long build for tests (not for reported numbers).")] = False,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: the shipped one).")] = None,
    data_dir: DataDir = None,
    home: Home = None,
    models_file: ModelsFile = None,
) -> None:
    """Train (or find in the cache) a zoo model; prints its directory."""
    from .. import zoo
    from ..core.paths import cache_root
    from ..models.registry import load_registry

    err = Console(stderr=True)

    def log(msg: str) -> None:
        err.print(msg, style="dim", markup=False, highlight=False)  # messages quote data, never markup

    registry = load_registry(models_file)
    tuned = sorted(n for n, e in registry.items() if e.source == "zoo" and e.base is not None)
    entry = registry.get(name)
    if name not in zoo.ZOO_MODELS and name not in tuned:
        raise zoo.ZooError(f"unknown zoo model {name!r}; known: {', '.join([*zoo.ZOO_MODELS, *tuned])}")
    if name in tuned:
        from ..zoo import safety_tune

        path = safety_tune.build(entry.zoo_name or name, base=entry.base, micro=micro or entry.micro, seed=seed,
                                 cache_root=cache_root(home), data_dir=data_dir, models_file=models_file, log=log)
    else:
        path = zoo.build(name, micro=micro, seed=seed, cache_root=cache_root(home), data_dir=data_dir, log=log)
    print(path)

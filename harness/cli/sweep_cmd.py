"""`qresafe-bench sweep`: quantize, evaluate (and optionally patch and re-evaluate) a grid of variants;
print it as a Markdown table.

    qresafe-bench sweep --model ref-tiny --quant rtn,gptq --bits 8,4,3,2 --calib benign,direct --out grid.md
    qresafe-bench sweep --model ref-tiny --quant rtn --bits 4,2 --patch --patch-option steps=50
    qresafe-bench sweep --spec sweep.yaml          # the grid as a YAML file (harness/runs/sweep.py: load_sweep_spec)

A spec's `patch:` may list several recipes (`[{recipe: paper}, {recipe: tuned}, {method: sft, recipe: tuned}]`):
each quantized cell is then followed by one patched cell per recipe. --patch-option builds one recipe.

Kill it at any moment (kill -9 included) and run the same command again: finished cells come from the
store, a half-finished one from its stored generations. Two sweeps may share a store (per-cell locks).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..core.spec import METHODS
from .options import Backend, DataDir, DataParallel, Device, Home, ModelsFile, TensorParallel

ALL_METHODS = ",".join(METHODS)
ALL_TIERS = "benign,indirect,direct"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _patch_options(patch: bool, options: list[str] | None) -> tuple[tuple[str, object], ...] | None:
    import yaml

    if not patch and not options:
        return None
    parsed: dict[str, object] = {"method": "qresafe"}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--patch-option wants KEY=VALUE (a patch recipe field), got {option!r}")
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return tuple(sorted(parsed.items()))


def sweep_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Registry name or local HF directory "
                                                                     "(required unless --spec names it).")] = None,
    quant: Annotated[str, typer.Option(help="Comma-separated methods (see `methods`).")] = ALL_METHODS,
    bits: Annotated[str, typer.Option(help="Comma-separated bits.")] = "8,4,3,2",
    calib: Annotated[str, typer.Option(help="Comma-separated tiers (methods that use data).")] = ALL_TIERS,
    group_size: Annotated[str, typer.Option(
        help="Comma-separated group sizes for integer-grid methods; -1 = per-channel; 'default'.")] = "default",
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "advbench,over_refusal,ref_utility",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N documents of each task.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Override each task's max new tokens.")] = None,
    patch: Annotated[bool, typer.Option("--patch", help="Also patch every quantized cell with Q-resafe (the paper's "
                                                        "recipe unless --patch-option) and evaluate it.")] = False,
    patch_option: Annotated[list[str] | None, typer.Option(
        help="Patch recipe field KEY=VALUE (repeatable), e.g. recipe=tuned, tau=0.2, method=lora-dpo; implies "
             "--patch.")
    ] = None,
    patch_when: Annotated[str, typer.Option(
        help="always: patch every quantized cell; asr-rose: only cells whose AdvBench ASR rose significantly over "
             "full precision (paired exact McNemar p < 0.05).")] = "always",
    spec: Annotated[Path | None, typer.Option(help="Sweep spec YAML (model, quant, bits, calib, group_size, tasks, "
                                                   "limit, batch_size, patch: one recipe or a list, "
                                                   "patch_when); replaces the grid options.")] = None,
    backend: Backend = "hf",
    batch_size: Annotated[int, typer.Option(help="Generation batch size.")] = 64,
    device: Device = "auto",
    tensor_parallel_size: TensorParallel = 1,
    data_parallel_size: DataParallel = 1,
    out: Annotated[Path | None, typer.Option(help="Also write the Markdown table to this file.")] = None,
    data_dir: DataDir = None,
    home: Home = None,
    models_file: ModelsFile = None,
) -> None:
    """Run every supported cell of methods × bits × tiers × group sizes (× the patch); skipped cells say why."""
    from ..core.device import resolve_device
    from ..core.paths import cache_root
    from ..generation.backends import BackendSettings
    from ..runs.sweep import SweepGrid, load_sweep_spec, markdown_table, run_sweep
    from ..store import atomic_write_text

    if spec is not None:
        fields = load_sweep_spec(spec)
        batch_size = fields.pop("batch_size")
        if model is not None:
            fields["model"] = model
        grid = SweepGrid(**fields)
    else:
        if model is None:
            raise typer.BadParameter("--model is required (or give --spec FILE)", param_hint="--model")
        groups = tuple(None if g.strip() == "default" else int(g) for g in group_size.split(","))
        grid = SweepGrid(model=model, methods=_names(quant), bits=_ints(bits), calib=_names(calib),
                         group_sizes=groups, tasks=_names(tasks), limit=limit, max_new_tokens=max_new_tokens,
                         patch=_patch_options(patch, patch_option), patch_when=patch_when)
    device = resolve_device(device)
    err = Console(stderr=True)
    started = time.time()
    command = "qresafe-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    def write_table(planned: list, *, finished: bool) -> None:
        """The Markdown file: rewritten after every cell, so that an interrupted sweep leaves the cells it
        finished (the rest say "not run"), and once more at the end."""
        labels = [recipe.label for recipe in grid.patch_recipes()]
        patches = f" Patch{'es' if len(labels) > 1 else ''}: {', '.join(labels)}." if labels else ""
        # Which build of the model the grid measured (a zoo model's folder name carries its build key).
        base = next((c.results["model"] for c in planned
                     if c.results and c.spec.quant == "none" and c.spec.patch == "none"), None)
        built = Path(base["location"]).name if base else None
        if built and "@" in base.get("fingerprint", ""):  # a zoo build: its weights' hash names it too
            built += f"`, weights `{base['fingerprint'].rsplit('@', 1)[1]}"
        decoding = ("greedy decoding (advbench_decoding: each prompt also sampled under the attack's temperature, "
                    "top-p and top-k settings; ASR-any counts a prompt any setting breaks)"
                    if "advbench_decoding" in grid.tasks else "greedy decoding")
        state = "" if finished else (" In progress or interrupted: a cell marked \"not run\" is not computed yet; "
                                     "rerun the command to resume.")
        evaluated = sum(c.results.get("wall_seconds") or 0 for c in planned if c.results)
        header = (f"# {grid.model}: quantization grid\n\nCommand: `{command}`\n\n"
                  f"{f'Model build: `{built}`. ' if built else ''}"
                  f"Wall time: {time.time() - started:.0f} s on this machine (cells already in the store are not "
                  f"recomputed); the finished cells' evaluations took {evaluated:.0f} s when they ran (each run's own "
                  "wall time, kept with its results; quantizing and patching not included). "
                  f"Scorer: GCG keyword rule (29 strings), {decoding}, chat template, "
                  f"{grid.max_new_tokens or 64} new tokens; every rate with its Wilson 95% interval. "
                  f"Backend: {f'hf (transformers), {device}' if backend == 'hf' else backend}."
                  f"{f' Limit: first {grid.limit} documents per task.' if grid.limit else ''}"
                  f"{patches}{state}\n\n")
        atomic_write_text(out, header + markdown_table(planned))

    with _RichProgress(err) as progress:
        planned = run_sweep(grid, home=cache_root(home), data_dir=data_dir,
                            backend=BackendSettings(name=backend, batch_size=batch_size, device=device,
                                                    tensor_parallel_size=tensor_parallel_size,
                                                    data_parallel_size=data_parallel_size),
                            progress=progress, models_file=models_file, log=progress.log,
                            on_done=(lambda cells: write_table(cells, finished=False)) if out else None)
    print(markdown_table(planned))
    served = [c for c in planned if c.from_store]
    err.print(f"[dim]{len(served)} of {sum(1 for c in planned if c.results)} finished cells came from the store; "
              f"{time.time() - started:.1f} s[/dim]")
    if out:
        write_table(planned, finished=True)
    failed = [c for c in planned if c.error]
    if failed:
        err.print(f"{len(failed)} cell(s) failed; rerun to retry them (finished cells come from the store)")
        raise typer.Exit(1)


class _RichProgress:
    """Rich bars for the grid (cells done) and for the step in flight (generations); plain lines when
    stderr is not a terminal (logs, CI)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.live = console.is_terminal
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), console=console,
                            transient=True, disable=not self.live)
        self.grid_task = None
        self.step_task = None

    def __enter__(self) -> _RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def log(self, message: str) -> None:
        self.bar.console.print(f"[dim]{message}[/dim]")

    # SweepProgress
    def start(self, total: int) -> None:
        self.grid_task = self.bar.add_task("grid", total=total, extra="")

    def cell(self, cell, index: int, total: int) -> None:
        self.bar.update(self.grid_task, description=f"grid: {cell.spec.slug}", extra="")
        if not self.live:
            self.console.print(f"[bold]cell {index + 1}/{total}[/bold] {cell.spec.slug}")

    def step(self, text: str) -> None:
        if self.step_task is not None:
            self.bar.remove_task(self.step_task)
        self.step_task = self.bar.add_task(f"  {text}", total=None, extra="0 generated")
        if not self.live:
            self.console.print(f"[dim]  {text}[/dim]")

    def item(self) -> None:
        if self.step_task is not None:
            self.bar.advance(self.step_task)
            done = int(self.bar.tasks[[t.id for t in self.bar.tasks].index(self.step_task)].completed)
            self.bar.update(self.step_task, extra=f"{done} generated")

    def done(self, cell) -> None:
        if self.step_task is not None:
            self.bar.remove_task(self.step_task)
            self.step_task = None
        self.bar.advance(self.grid_task)
        status = ("skipped: " + cell.skipped if cell.skipped else "from the store" if cell.from_store
                  else "error: " + cell.error if cell.error else "done")
        self.bar.console.print(f"[dim]{cell.spec.slug}: {status} ({cell.seconds:.1f} s)[/dim]")

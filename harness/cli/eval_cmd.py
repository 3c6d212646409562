"""`qresafe-bench eval`: evaluate one variant on lm-eval tasks, through the run store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .options import (
    AlpacaReference,
    Backend,
    Bits,
    Calib,
    DataDir,
    DataParallel,
    DecodingGrid,
    DecodingSamples,
    Device,
    GroupSize,
    Home,
    Json,
    Judge,
    JudgeModel,
    JudgeTemplate,
    Model,
    ModelsFile,
    Patch,
    Quant,
    TensorParallel,
    spec_from_options,
)


def eval_command(
    model: Model,
    quant: Quant = "none",
    bits: Bits = None,
    calib: Calib = None,
    group_size: GroupSize = None,
    patch: Patch = "none",
    tasks: Annotated[str, typer.Option(help="Comma-separated lm-eval tasks from tasks/.")] = "advbench",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N documents of each task.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Override each task's max new tokens.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for lm-eval's sampling and shuffling.")] = 1234,
    backend: Backend = "hf",
    batch_size: Annotated[int, typer.Option(help="Generation batch size (hf).")] = 32,
    device: Device = "auto",
    tensor_parallel_size: TensorParallel = 1,
    data_parallel_size: DataParallel = 1,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model repos to run their own code.")] = False,
    allow_pickle: Annotated[bool, typer.Option(help="Allow non-safetensors (pickle) weights.")] = False,
    judge: Judge = None,
    judge_model: JudgeModel = None,
    judge_template: JudgeTemplate = "keyword",
    decoding_grid: DecodingGrid = "reduced",
    decoding_samples: DecodingSamples = 1,
    alpaca_reference: AlpacaReference = "gpt4_1106_preview",
    data_dir: DataDir = None,
    home: Home = None,
    models_file: ModelsFile = None,
    json_out: Json = False,
) -> None:
    """Evaluate a model variant; results and every generation go to the run store."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..core.device import resolve_device
    from ..core.paths import cache_root
    from ..generation.backends import BackendSettings
    from ..runs.evaluate import EvalRequest, run_eval

    spec = spec_from_options(model, quant, bits, calib, group_size, patch=patch)
    settings = BackendSettings(name=backend, batch_size=batch_size, device=resolve_device(device),
                               tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
                               trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    request = EvalRequest(spec=spec, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
                          limit=limit, max_new_tokens=max_new_tokens, seed=seed, backend=settings,
                          data_dir=data_dir, judge=judge, judge_model=judge_model, judge_template=judge_template,
                          decoding_grid=decoding_grid, decoding_samples=decoding_samples,
                          alpaca_reference=alpaca_reference)
    err = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} generated"),
                  TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as progress:
        job = progress.add_task(f"evaluating {spec.slug} on {', '.join(request.tasks)}", total=None)
        outcome = run_eval(request, home=cache_root(home), models_file=models_file,
                           on_item=lambda: progress.advance(job),
                           log=lambda msg: progress.console.print(f"[dim]{msg}[/dim]"))
    if json_out:
        print(json.dumps(outcome.results, indent=2, sort_keys=True))
    else:
        Console().print(results_table(outcome.results))
    source = "from the store (nothing generated)" if outcome.from_store else (
        f"generated {outcome.results['generated']}, reused {outcome.results['reused']} stored generations")
    err.print(f"[dim]{source}; run stored in {outcome.run_dir}[/dim]")


def results_table(results: dict) -> Table:
    spec = results["spec"]
    variant = spec["model"] if spec["quant"] == "none" else f"{spec['model']} {spec['quant']} w{spec['bits']}"
    if spec.get("calib", "none") != "none":
        variant += f" calib {spec['calib']}"
    if spec.get("group_size") is not None:
        variant += " per-channel" if spec["group_size"] == -1 else f" group {spec['group_size']}"
    if spec.get("patch", "none") != "none":
        variant += f" +{spec['patch']}"
    table = Table(title=f"{variant} — backend {results['backend']['name']}, {results['decoding']} decoding")
    for column, justify in (("task", "left"), ("metric", "left"), ("value", "right"), ("95% CI (Wilson)", "right"),
                            ("n", "right"), ("scorer", "left")):
        table.add_column(column, justify=justify)
    for task, body in results["tasks"].items():
        for metric, rate in sorted(body["metrics"].items()):  # one order, fresh or from the store
            table.add_row(task, metric + (f" ({rate['setting']})" if rate.get("setting") else ""),
                          *_value_cells(rate), str(rate["n"]), body["scorer"])
        if body.get("judge_unparseable"):
            table.add_row(task, "unparseable judgments", str(body["judge_unparseable"]), "", "", body["scorer"])
    return table


def _value_cells(stat: dict) -> tuple[str, str]:
    """A rate in percent; a score (MT-bench's 1-10 rating) as a number; n/a when nothing was scored."""
    value, low, high = stat.get("value"), stat.get("ci95_low"), stat.get("ci95_high")
    if value is None or value != value:  # None or NaN
        return "n/a", stat.get("note", "")
    if stat.get("kind") == "score":
        return f"{value:.2f}", f"[{low:.2f}, {high:.2f}]" if low is not None else ""
    return f"{100 * value:.1f}%", f"[{100 * low:.1f}, {100 * high:.1f}]"

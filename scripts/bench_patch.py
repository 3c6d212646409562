"""Q-resafe against its baselines and its tau ablation, on the same pairs; prints Markdown tables.

    python scripts/bench_patch.py --model ref-tiny --quant rtn --bits 2 --steps 100 --limit 100

For each method (qresafe, dpo-full, sft, lora-dpo) and each tau of the sweep, the patched variant is
built through `run_patch` (or found in the store) on the one patch set -- the pairs are generated once
and served from the run store afterwards -- and evaluated with `run_eval` on AdvBench (ASR, GCG keyword
rule) and the reference utility, each with its Wilson 95% interval. The table reports what each
training cost (wall time and peak memory of the training alone, trainable parameters) and the line
under it the Q-resafe / full-parameter DPO wall-time ratio (the paper reports about 1/8 for 7B models
on GPUs; tiny CPU models spend a larger share in fixed costs and SNIP, so expect a different ratio).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _rate(results: dict, task: str, metric: str) -> str:
    rate = results["tasks"][task]["metrics"][metric]
    return f"{100 * rate['value']:.1f}% [{100 * rate['ci95_low']:.1f}, {100 * rate['ci95_high']:.1f}] (n={rate['n']})"


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="Registry name or local HF directory.")] = "ref-tiny",
    quant: Annotated[str, typer.Option(help="Quantization method of the variant to patch.")] = "rtn",
    bits: Annotated[int, typer.Option(help="Weight bits.")] = 2,
    calib: Annotated[str | None, typer.Option(help="Calibration tier of the quantized variant.")] = None,
    methods: Annotated[str, typer.Option(help="Comma-separated methods.")] = "qresafe,dpo-full,sft,lora-dpo",
    taus: Annotated[str, typer.Option(help="Comma-separated tau values for the ablation.")] = "0.2,0.4,0.6,0.8,1.0",
    steps: Annotated[int, typer.Option(help="Optimizer steps of every method.")] = 100,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate of the LoRA methods [5e-4].")] = None,
    check_every: Annotated[int, typer.Option(help="Held-out checks every N steps, best kept (0 = off).")] = 0,
    n_tier_prompts: Annotated[int, typer.Option(help="Tier prompts in the patch set.")] = 64,
    n_harmful_prompts: Annotated[int, typer.Option(help="Harmful requests in the patch set.")] = 64,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N documents of each task.")] = None,
    data_dir: Annotated[str | None, typer.Option(envvar="QRESAFE_DATA_DIR")] = None,
    home: Annotated[str | None, typer.Option(envvar="QRESAFE_HOME")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the tables (Markdown) here.")] = None,
) -> None:
    """Build and evaluate every method and tau on the same pairs; print the tables and the time ratio."""
    from qresafe_bench.harness.cli.options import spec_from_options
    from qresafe_bench.harness.core.paths import cache_root
    from qresafe_bench.harness.runs.evaluate import EvalRequest, run_eval
    from qresafe_bench.harness.store import atomic_write_text
    from qresafe_bench.qresafe.config import PatchRecipe
    from qresafe_bench.qresafe.patch import PatchRequest, run_patch

    root = cache_root(home)
    spec = spec_from_options(model, quant, bits, calib, None)
    shared = dict(steps=steps, n_tier_prompts=n_tier_prompts, n_harmful_prompts=n_harmful_prompts)
    checked = dict(check_every=check_every or None)  # not for dpo-full, which has no adapter to keep

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    def evaluate(variant) -> dict:
        request = EvalRequest(spec=variant, tasks=("advbench", "ref_utility"), limit=limit, data_dir=data_dir)
        return run_eval(request, home=root, log=log).results

    recipes = [PatchRecipe.for_method(m.strip(), **shared, **({} if m.strip() == "dpo-full" else checked),
                                      learning_rate=learning_rate if m.strip() != "dpo-full" else None)
               for m in methods.split(",") if m.strip()]
    recipes += [PatchRecipe.for_method("qresafe", tau=float(t), **shared, **checked, learning_rate=learning_rate)
                for t in taus.split(",") if t.strip()]
    rows, seen = [], set()
    reference = {"full precision": evaluate(spec_from_options(model, "none", None, None, None)),
                 f"{quant} w{bits} (unpatched)": evaluate(spec)}
    for recipe in recipes:
        if recipe.label in seen:
            continue
        seen.add(recipe.label)
        outcome = run_patch(PatchRequest(spec=spec, recipe=recipe, data_dir=data_dir), home=root, log=log)
        rows.append((recipe, outcome.report, evaluate(outcome.spec)))

    lines = [f"# Q-resafe bench: {spec.slug}, {steps} steps, {rows[0][1]['pairs'] if rows else 0} pairs", "",
             "Scorer: GCG keyword rule (29 strings), greedy, chat template; reference utility: exact checks. "
             "Wall time and peak memory: training only (pair generation is shared and stored).", "",
             "| variant | tau | steps run | train wall (s) | s / step | peak memory (MB) | trainable params "
             "| merged entries moved | AdvBench ASR [95% CI] | ref utility [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, results in reference.items():
        lines.append(f"| {name} | - | - | - | - | - | - | - | {_rate(results, 'advbench', 'asr')} "
                     f"| {_rate(results, 'ref_utility', 'accuracy')} |")
    for recipe, report, results in rows:
        wall = report.get("train_wall_seconds", report.get("snip_wall_seconds"))
        ran = report.get("steps", "-")
        per_step = f"{wall / ran:.3f}" if isinstance(wall, (int, float)) and isinstance(ran, int) and ran else "-"
        moved = report.get("merge", {}).get("changed", "-")
        lines.append(f"| {recipe.label} | {recipe.tau:g} | {ran} | {wall} | {per_step} "
                     f"| {report.get('peak_memory_mb', '-')} | {report['trainable_parameters']} | {moved} "
                     f"| {_rate(results, 'advbench', 'asr')} | {_rate(results, 'ref_utility', 'accuracy')} |")
    walls, steps_run = {}, {}
    for recipe, report, _ in rows:  # the first qresafe row at the paper's tau, and full DPO
        key = "qresafe" if recipe.method == "qresafe" and recipe.tau == PatchRecipe().tau else recipe.method
        walls.setdefault(key, report.get("train_wall_seconds"))
        steps_run.setdefault(key, report.get("steps"))
    if walls.get("qresafe") and walls.get("dpo-full"):
        lines += ["", f"Q-resafe / full-parameter DPO wall-time ratio: {walls['qresafe'] / walls['dpo-full']:.3f} "
                      f"({walls['qresafe']:.1f} s / {walls['dpo-full']:.1f} s; paper: about 1/8 = 0.125)"]
        if steps_run.get("qresafe") and steps_run.get("dpo-full") and steps_run["qresafe"] != steps_run["dpo-full"]:
            ratio = (walls["qresafe"] / steps_run["qresafe"]) / (walls["dpo-full"] / steps_run["dpo-full"])
            lines.append(f"Per optimizer step (the runs stopped at different steps: held-out checks): {ratio:.3f}. "
                         "Time spent in the checks themselves is reported apart (`check_seconds`).")
    table = "\n".join(lines)
    print(table)
    if out:
        atomic_write_text(out, table + "\n\n```json\n" + json.dumps([r for _, r, _ in rows], indent=1) + "\n```\n")


if __name__ == "__main__":
    app()

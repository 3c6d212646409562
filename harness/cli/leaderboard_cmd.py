"""`qresafe-bench leaderboard`, `gate` and `export`: boards and a deployment gate from the run store only
(nothing is generated, no model is loaded), and the store's runs exported as a board's portable evidence.

    qresafe-bench leaderboard --model ref-tiny                          # Markdown to stdout
    qresafe-bench leaderboard --model ref-tiny --format md,csv,json,html --out leaderboards/ref-tiny
    qresafe-bench leaderboard --model ref-tiny --patch qresafe,qresafe-tuned,sft-tuned   # one 'after' per label
    qresafe-bench leaderboard --model ref-tiny --quant rtn,gptq --bits 4 --calib none,benign \
        --format md,html --out leaderboards/ref-tiny --name int4     # board-int4.md, board-int4.html
    qresafe-bench gate --model ref-tiny --quant rtn --bits 2 --group-size -1 --max-asr-increase 5
    qresafe-bench export --model ref-tiny --out leaderboards/ref-tiny/runs      # outcomes only, no text
    qresafe-bench leaderboard --model ref-tiny --runs leaderboards/ref-tiny/runs  # store + exported runs

`gate` exit codes: 0 = pass (ASR at most P points above the full-precision model's), 1 = fail (or a known
error), 2 = cannot decide: a result is missing from the store (the message says which `eval` to run) or
bad usage.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .options import Bits, Calib, GroupSize, Home, Json, Model, Patch, Quant, spec_from_options

FORMATS = ("md", "csv", "json", "html")


def leaderboard_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to board (default: every model in the "
                                                                     "store).")] = None,
    format: Annotated[str, typer.Option("--format", help="Comma-separated: md, csv, json, html.")] = "md",
    out: Annotated[Path | None, typer.Option(help="Write board-<model>.<ext> files here (default: print md/csv/json "
                                                  "to stdout).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Write board-<name>.<ext> instead of board-<model>.<ext> "
                                                            "(with a single --model).")] = None,
    quant: Annotated[str | None, typer.Option("--quant", help="Only these quantization methods' rows, "
                                                              "comma-separated (default: all; full precision is "
                                                              "always shown).")] = None,
    bits: Annotated[str | None, typer.Option("--bits", help="Only these weight bits' rows, comma-separated, "
                                                            "e.g. 4 or 2,3,4 (default: all).")] = None,
    calib: Annotated[str | None, typer.Option("--calib", help="Only these calibration tiers' rows, comma-separated: "
                                                              "none, benign, indirect, direct (default: all).")] = None,
    patch: Annotated[str | None, typer.Option(help="Patch label(s), comma-separated, whose variants are the 'after' "
                                                   "entries, one per label (default: qresafe if stored, else the "
                                                   "most stored label).")] = None,
    paper: Annotated[bool, typer.Option(help="Append the paper's reported numbers (a separate table).")] = True,
    prompt_text: Annotated[bool, typer.Option(help="Show flipped prompts' text; --no-prompt-text keeps only their "
                                                   "row index in the data set (boards meant for publishing carry no "
                                                   "copy of public data).")] = True,
    runs: Annotated[list[Path] | None, typer.Option("--runs", help="Also read this exported runs folder "
                                                                   "(`qresafe-bench export`; repeatable): a "
                                                                   "published board's evidence, or runs made on "
                                                                   "another machine.")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="The build of the model's weights to board, by a "
                                                                  "part of its fingerprint (when the runs come from "
                                                                  "several, e.g. a zoo model rebuilt on another "
                                                                  "CPU).")] = None,
    home: Home = None,
) -> None:
    """Before/after tables (method × bits, per calibration tier) with n, 95% intervals and paired tests."""
    from ..boards.board import BoardError, build_board, render_csv, render_markdown
    from ..boards.collect import models_in
    from ..boards.evidence import runs_of
    from ..boards.html import render_html
    from ..boards.paper import load_paper
    from ..core.paths import cache_root
    from ..core.spec import CALIB_TIERS, METHODS
    from ..store import atomic_write_text

    formats = [f.strip() for f in format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise typer.BadParameter(f"unknown format(s) {', '.join(unknown) or '(none)'}; "
                                 f"choose from {', '.join(FORMATS)}",
                                 param_hint="--format")
    if out is None and "html" in formats:
        raise typer.BadParameter("html needs --out DIR", param_hint="--format")
    labels = None
    if patch is not None:
        labels = list(dict.fromkeys(label.strip() for label in patch.split(",") if label.strip()))
        if not labels:
            raise typer.BadParameter("name at least one patch label, e.g. qresafe,qresafe-tuned", param_hint="--patch")
    if name is not None:
        name = name.strip()
        # one name, one set of files: with several models each board would overwrite the last
        if model is None:
            raise typer.BadParameter("it names one board's files: give it with a single --model",
                                     param_hint="--name")
        if not name or "/" in name or "\\" in name:
            raise typer.BadParameter(f"{name!r} is not a file name stem (no path separators), e.g. int4",
                                     param_hint="--name")
    methods = _names(quant, METHODS, "--quant", "quantization method")
    tiers = _names(calib, CALIB_TIERS, "--calib", "calibration tier")
    widths = _bits(bits)
    root = cache_root(home)
    folders = list(dict.fromkeys(runs or []))
    models = [model] if model else models_in(runs_of(root, folders))
    if not models:
        raise BoardError(f"the store {root} holds no finished evaluations: run `qresafe-bench eval` or `sweep` first")
    reported = load_paper() if paper else None
    command = "qresafe-bench " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    err = Console(stderr=True)
    for model_name in models:
        board = build_board(root, model_name, patch=labels, prompt_text=prompt_text, methods=methods, bits=widths,
                            tiers=tiers, command=command, runs=folders,
                            weights=weights)
        board["paper_reported"] = reported
        rendered = {
            "md": lambda b=board: render_markdown(b, reported),
            "csv": lambda b=board: render_csv(b),
            "json": lambda b=board: json.dumps(b, indent=2, sort_keys=True, default=str) + "\n",
            "html": lambda b=board: render_html(b, reported),
        }
        for fmt in formats:
            text = rendered[fmt]()
            if out is None:
                sys.stdout.write(text)
            else:
                path = out / f"board-{_safe(name or model_name)}.{fmt}"
                atomic_write_text(path, text)
                err.print(f"[dim]wrote {path}[/dim]")


def export_command(
    model: Model,
    out: Annotated[Path, typer.Option("--out", help="The exported runs folder (created; rerunning adds new runs).")],
    home: Home = None,
) -> None:
    """Copy a model's finished runs out of the store, per-prompt outcomes only (no prompt, context or output
    text): a board's evidence, to publish beside it or read on another machine (`leaderboard --runs DIR`)."""
    from ..boards.evidence import export_runs
    from ..core.paths import cache_root

    written = export_runs(cache_root(home), model, out)
    Console(stderr=True).print(f"exported {len(written)} new or changed run(s) of {model} to {out}")


def _safe(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].replace(" ", "_")


def _names(text: str | None, vocabulary: tuple[str, ...], flag: str, what: str) -> list[str] | None:
    """A comma-separated option as a list (order kept, repeats dropped); None when not given. Names outside
    `vocabulary` are refused here, so a typo is not taken for a selection that matches nothing."""
    if text is None:
        return None
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise typer.BadParameter(f"name at least one {what}: {', '.join(vocabulary)}", param_hint=flag)
    unknown = [n for n in names if n not in vocabulary]
    if unknown:
        raise typer.BadParameter(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(vocabulary)}",
                                 param_hint=flag)
    return names


def _bits(text: str | None) -> list[int] | None:
    """--bits as whole numbers (order kept, repeats dropped); None when not given."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [part for part in parts if not part.isdigit()]
    if wrong or not parts:
        raise typer.BadParameter(f"weight bits are whole numbers, e.g. 4 or 2,3,4 (got {text!r})", param_hint="--bits")
    return list(dict.fromkeys(int(part) for part in parts))


def gate_command(
    model: Model,
    max_asr_increase: Annotated[float, typer.Option(help="Largest allowed ASR increase over the full-precision "
                                                         "model, in percentage points.")],
    quant: Quant = "none",
    bits: Bits = None,
    calib: Calib = None,
    group_size: GroupSize = None,
    patch: Patch = "none",
    runs: Annotated[list[Path] | None, typer.Option("--runs", help="Also read this exported runs folder "
                                                                   "(repeatable), e.g. a published board's.")] = None,
    home: Home = None,
    json_out: Json = False,
) -> None:
    """Exit 0 if the variant's stored ASR is at most P points above its full-precision model's, 1 if above,
    2 if a result is missing from the store (run the `eval` it names)."""
    from ..boards.evidence import EvidenceError
    from ..boards.gate import GateMissing, gate
    from ..core.paths import cache_root

    spec = spec_from_options(model, quant, bits, calib, group_size, patch=patch)
    hint = (f"qresafe-bench eval --model {model} --quant {spec.quant} --bits {spec.bits}"
            + (f" --calib {spec.calib}" if spec.calib != "none" else "")
            + (f" --group-size {spec.group_size}" if spec.group_size is not None else "")
            + (f" --patch {spec.patch}" if spec.patch != "none" else "") + " --tasks advbench")
    try:
        result = gate(cache_root(home), spec, max_asr_increase, hint, list(dict.fromkeys(runs or [])))
    except (GateMissing, EvidenceError) as exc:  # cannot decide: a result, or the folder named, is missing
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if json_out:
        print(json.dumps({"spec": spec.canonical(), **result.__dict__}, indent=2, sort_keys=True))
    else:
        print(result.line(spec))
    raise typer.Exit(0 if result.passed else 1)

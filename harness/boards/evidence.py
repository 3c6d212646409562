"""A board's evidence, portable: the finished runs of a model, copied out of the run store with their
per-prompt outcomes and without any text, so that a board can be published with what it was built from and
rebuilt (`leaderboard --runs DIR`) on a machine that never ran them, or merged with runs made on others.

An exported run directory keeps the store's layout (`runs/<run key>/results.json`, `samples.jsonl`) so the
boards read it as they read a store. Each sample keeps its task, document index, decoding-setting labels
and scores; the prompt, the chat context and the model's output are left out (a published folder carries no
copy of a public data set and no harmful completion). A patched run also carries its patch report
(`qresafe_report.json`: the training's cost and whether the merge changed the weights), which a store run
reads from the variant's weights directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import QresafeError
from ..store import atomic_write_json, atomic_write_text, read_json
from .collect import Run, load_runs

MARKER = "qresafe-runs.json"  # at the top of an exported folder: what it is and what was left out
TEXT_FIELDS = ("prompt", "context", "output")  # what a sample holds that an export never copies
REPORT = "qresafe_report.json"


class EvidenceError(QresafeError, ValueError):
    """An export that cannot be written or a folder that is not an export (one-line message)."""


def outcome_only(sample: dict) -> dict:
    return {k: v for k, v in sample.items() if k not in TEXT_FIELDS}


def export_runs(home: Path, model: str, out: Path) -> list[str]:
    """Copy every finished run of `model` in the store at `home` into `out` (outcomes only); returns the run
    keys written. A run already in `out` is rewritten only when its results changed."""
    runs = [run for run in load_runs(home) if run.spec.get("model") == model]
    if not runs:
        raise EvidenceError(f"the store {home} holds no finished run of {model!r}: nothing to export")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise EvidenceError(f"{out} exists and is not an exported runs folder (no {MARKER}); name an empty or "
                            "exported folder")
    atomic_write_json(out / MARKER, {"what": "qresafe-bench runs, outcomes only", "left_out": list(TEXT_FIELDS)})
    written = []
    for run in runs:
        target = out / "runs" / run.key
        text = "".join(json.dumps(outcome_only(s), sort_keys=True, default=str) + "\n" for s in run.records())
        origin = {"samples_sha256": run.results.get("samples_sha256"), "left_out": list(TEXT_FIELDS)}
        results = {**run.results, "samples_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   "exported_from": origin}
        if (target / "results.json").is_file() and read_json(target / "results.json") == results:
            continue
        atomic_write_text(target / "samples.jsonl", text)
        report = report_path(run)
        if report is not None:
            atomic_write_json(target / REPORT, read_json(report))
        atomic_write_json(target / "results.json", results)  # written last, as in the store
        written.append(run.key)
    return written


def load_exported(folder: Path) -> list[Run]:
    """The runs of an exported folder; EvidenceError when it is not one."""
    if not (folder / MARKER).is_file():
        raise EvidenceError(f"{folder} is not an exported runs folder (no {MARKER}): make one with "
                            "`qresafe-bench export --model M --out DIR`")
    return load_runs(folder)


def runs_of(home: Path, folders: Sequence[Path] = ()) -> list[Run]:
    """The store's finished runs, then those of each exported folder that the store does not hold (same run
    key: the store's copy, which keeps the text)."""
    runs = load_runs(home)
    seen = {run.key for run in runs}
    for folder in folders:
        for run in load_exported(folder):
            if run.key not in seen:
                seen.add(run.key)
                runs.append(run)
    return runs


def report_path(run: Run) -> Path | None:
    """A patched run's patch report: the one an exported run carries, else the one beside the weights the run
    evaluated (its model location); None when neither is there."""
    own = run.path / REPORT
    if own.is_file():
        return own
    location = (run.results.get("model") or {}).get("location")
    path = Path(location) / REPORT if location else None
    return path if path is not None and path.is_file() else None

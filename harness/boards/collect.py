"""Read the run store (never write it, never generate): finished runs, their per-prompt samples, and the
best run of each (variant, task).

A run directory is complete when it has results.json (store.py writes it last, atomically), so a run a
sweep is still writing is simply not seen yet. Only keyword-scored runs with default options enter the
boards (a judged run scores differently; mixing the two in one column would compare different things).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..store import StoreError, read_json

SPEC_FIELDS = ("model", "quant", "bits", "calib", "group_size", "patch")


def spec_key(spec: dict) -> tuple:
    return tuple(spec.get(name, "none" if name == "patch" else None) for name in SPEC_FIELDS)


@dataclass
class Run:
    key: str
    path: Path
    results: dict
    mtime: float
    _samples: dict | None = field(default=None, repr=False)

    @property
    def spec(self) -> dict:
        return self.results["spec"]

    def rate(self, task: str, metric: str) -> dict | None:
        try:
            return self.results["tasks"][task]["metrics"][metric]
        except KeyError:
            return None

    def records(self) -> list[dict]:
        """Every stored sample of the run, in file order (a task with several samples per document, such as
        the decoding attack's settings, keeps them all)."""
        return read_records(self.path)

    def samples(self, task: str) -> dict[int, dict]:
        """doc_id -> the stored sample of `task` (first one per document)."""
        if self._samples is None:
            self._samples = {}
            for sample in self.records():
                self._samples.setdefault(sample["task"], {}).setdefault(sample["doc_id"], sample)
        return self._samples.get(task, {})


def load_runs(home: Path) -> list[Run]:
    runs = []
    for results_path in sorted((home / "runs").glob("*/results.json")):
        results = read_json(results_path)
        if "spec" not in results or "tasks" not in results:
            continue
        runs.append(Run(results_path.parent.name, results_path.parent, results, results_path.stat().st_mtime))
    return runs


def comparable(run: Run) -> bool:
    """Keyword scorer, default options, greedy: what the boards compare."""
    return not run.results.get("options") and run.results.get("decoding", "greedy") == "greedy"


def best_runs(runs: list[Run], model: str | None = None) -> dict[tuple, dict[str, Run]]:
    """spec key -> task -> the run to show: the most documents (full sets over --limit runs), then newest."""
    best: dict[tuple, dict[str, Run]] = {}
    for run in runs:
        if not comparable(run) or (model is not None and run.spec.get("model") != model):
            continue
        for task in run.results["tasks"]:
            current = best.setdefault(spec_key(run.spec), {}).get(task)
            if current is None or (_n(run, task), run.mtime) > (_n(current, task), current.mtime):
                best[spec_key(run.spec)][task] = run
    return best


def _n(run: Run, task: str) -> int:
    return max((m.get("n", 0) for m in run.results["tasks"][task].get("metrics", {}).values()
                if isinstance(m, dict)), default=0)


def models_in(runs: list[Run]) -> list[str]:
    return sorted({r.spec.get("model") for r in runs if comparable(r)})


def read_records(run_dir: Path) -> list[dict]:
    """The samples of the run stored in `run_dir` (its samples.jsonl), in file order; [] when there is none."""
    path = run_dir / "samples.jsonl"
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise StoreError(f"corrupt store entry {path}, line {number}; delete the run and "
                             "evaluate again") from None
    return records

"""The run store: append-only generations and atomic results, so nothing is generated twice.

Two kinds of record:
- *Generations* are keyed by (variant, backend) and, within that, by the exact request (prompt after
  the chat template + generation settings). A patched variant whose files are byte-identical to its
  quantized parent's shares the parent's log (models/variants.py, `unchanged_parent`).
  Each is appended to a JSONL file with one `write` call
  the moment the backend returns it, so a killed run (kill -9 included: the kernel holds the write)
  loses at most the batch in flight; the file is fsynced once per backend call, which bounds what an
  OS crash can lose to that call's generations (an fsync per line cost more than the generation of a
  small model). A damaged line (a torn write, a truncated copy) is never skipped silently: it is moved,
  byte for byte, to `<file>.damaged`, the damage is reported in one line, and only its request runs again.
- *Results* of a finished evaluation are written once, atomically (temp file + `os.replace`): a run
  directory either has a complete `results.json` or none. It records the sha256 of its `samples.jsonl`, and a
  run is answered from the store only when that file is whole; a damaged one is recomputed from the stored
  generations (nothing is generated again) and the damage reported.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .core.errors import QresafeError


class StoreError(QresafeError, RuntimeError):
    """A store entry that cannot be read (one-line message naming the file)."""


def stable_hash(obj: Any, length: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def request_key(context: str, gen_kwargs: dict) -> str:
    return stable_hash({"context": context, "gen_kwargs": gen_kwargs}, length=32)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); the result should have the mode open() would have given it.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"corrupt store entry {path} ({exc.__class__.__name__}); delete it and run again") from None


class GenerationLog:
    """Append-only JSONL of generations for one (variant, backend)."""

    def __init__(self, path: Path, report: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.report = report or (lambda message: print(message, file=sys.stderr))
        self._cache: dict[str, str] | None = None

    def load(self) -> dict[str, str]:
        if self._cache is None:
            self._cache = {}
            if self.path.exists():
                damaged = self._read(self.path.read_bytes())
                if damaged:
                    self._set_aside()
        return self._cache

    def _read(self, data: bytes) -> list[int]:
        """Fill the cache from whole records; the line numbers of damaged ones."""
        damaged = []
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self._cache[record["key"]] = record["output"]
            except (ValueError, KeyError, TypeError):
                damaged.append(number)
        return damaged

    def _set_aside(self) -> None:
        """Move damaged lines to `<file>.damaged` and keep the whole ones, under the writers' lock."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            lines = self.path.read_bytes().split(b"\n")
            whole, bad = [], []
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)["key"]
                    whole.append(line)
                except (ValueError, KeyError, TypeError):
                    bad.append((number, line))
            if bad:
                with open(f"{self.path}.damaged", "ab") as keep:
                    keep.write(b"".join(line + b"\n" for _, line in bad))
                atomic_write_text(self.path, "".join(line.decode("utf-8", "replace") + "\n" for line in whole))
                where = ", ".join(str(n) for n, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
                self.report(f"store: {len(bad)} damaged line(s) of {self.path} (line {where}) moved to "
                            f"{self.path.name}.damaged; their requests will be generated again")
        finally:
            os.close(fd)

    def get(self, key: str) -> str | None:
        return self.load().get(key)

    def append(self, key: str, context: str, gen_kwargs: dict, output: str, *, sync: bool = True) -> None:
        record = {"key": key, "context": context, "gen_kwargs": gen_kwargs, "output": output}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.load()  # damaged lines are set aside (and reported) before anything is appended
        # One write() on an O_APPEND descriptor, under an exclusive lock on the file: two processes on one
        # store (two sweeps, a sweep and an eval) never see each other's line half-written, so the torn-tail
        # repair below can only ever cut what a killed writer left, never a live writer's record.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(self.path)  # never glue a new record onto a torn one
            os.write(fd, line)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        self.load()[key] = output

    def sync(self) -> None:
        """fsync what unsynced appends wrote (they are already visible to every process)."""
        if self.path.exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def __len__(self) -> int:
        return len(self.load())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _drop_torn_tail(path: Path) -> None:
    """Cut bytes after the last newline: what a writer killed mid-record left behind."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = handle.seek(0) or handle.read()
        cut = data.rfind(b"\n") + 1
        with open(f"{path}.damaged", "ab") as keep:  # what a killed writer left, kept, not thrown away
            keep.write(data[cut:] + b"\n")
        handle.truncate(cut)


class RunStore:
    """Layout of the store under one root (see harness/paths.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def generations(self, variant_id: str, backend: str,
                    report: Callable[[str], None] | None = None) -> GenerationLog:
        return GenerationLog(self.root / "generations" / variant_id / f"{backend}.jsonl", report)

    def run_dir(self, run_key: str) -> Path:
        return self.root / "runs" / run_key

    def finished(self, run_key: str, report: Callable[[str], None] | None = None) -> dict | None:
        """A finished run's results, if its record is whole: results.json readable and samples.jsonl what it
        wrote (its sha256); otherwise None, with the damage reported, so the run is recomputed."""
        run_dir = self.run_dir(run_key)
        path = run_dir / "results.json"
        if not path.exists():
            return None
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problem = "results.json is unreadable"
        else:
            digest = results.get("samples_sha256")
            samples = run_dir / "samples.jsonl"
            if digest is None or (samples.is_file() and _sha256(samples) == digest):
                return results
            problem = "samples.jsonl is missing" if not samples.is_file() else "samples.jsonl is damaged"
        (report or (lambda message: print(message, file=sys.stderr)))(
            f"store: run {run_key}: {problem}; recomputing it from the stored generations")
        return None

    def write_run(self, run_key: str, spec: dict, samples: Iterable[dict], results: dict) -> Path:
        run_dir = self.run_dir(run_key)
        atomic_write_json(run_dir / "spec.json", spec)
        text = "".join(json.dumps(s, sort_keys=True, default=str) + "\n" for s in samples)
        atomic_write_text(run_dir / "samples.jsonl", text)
        results["samples_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        atomic_write_json(run_dir / "results.json", results)  # written last: its presence = complete
        return run_dir

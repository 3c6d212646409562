"""The run store: append-only generations and atomic results, so nothing is generated twice.

Two kinds of record:
- *Generations* are keyed by (variant, backend) and, within that, by the exact request (prompt after
  the chat template + generation settings). Each is appended to a JSONL file with one `write` call
  the moment the backend returns it, so a killed run (kill -9 included: the kernel holds the write)
  loses at most the batch in flight; the file is fsynced once per backend call, which bounds what an
  OS crash can lose to that call's generations (an fsync per line cost more than the generation of a
  small model). A torn last line (kill -9 mid-write) is ignored on read; a torn line anywhere else is
  corruption and is reported, never skipped silently.
- *Results* of a finished evaluation are written once, atomically (temp file + `os.replace`): a run
  directory either has a complete `results.json` or none.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, str] | None = None

    def load(self) -> dict[str, str]:
        if self._cache is None:
            self._cache = {}
            if self.path.exists():
                lines = self.path.read_bytes().split(b"\n")
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                        self._cache[record["key"]] = record["output"]
                    except (ValueError, KeyError):
                        if number == len(lines):  # torn final write: the request simply reruns
                            continue
                        raise StoreError(
                            f"corrupt store entry {self.path}, line {number}; delete the file and run again"
                        ) from None
        return self._cache

    def get(self, key: str) -> str | None:
        return self.load().get(key)

    def append(self, key: str, context: str, gen_kwargs: dict, output: str, *, sync: bool = True) -> None:
        record = {"key": key, "context": context, "gen_kwargs": gen_kwargs, "output": output}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
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


def _drop_torn_tail(path: Path) -> None:
    """Cut bytes after the last newline: what a writer killed mid-record left behind."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = handle.seek(0) or handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


class RunStore:
    """Layout of the store under one root (see harness/paths.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def generations(self, variant_id: str, backend: str) -> GenerationLog:
        return GenerationLog(self.root / "generations" / variant_id / f"{backend}.jsonl")

    def run_dir(self, run_key: str) -> Path:
        return self.root / "runs" / run_key

    def finished(self, run_key: str) -> dict | None:
        path = self.run_dir(run_key) / "results.json"
        return read_json(path) if path.exists() else None

    def write_run(self, run_key: str, spec: dict, samples: Iterable[dict], results: dict) -> Path:
        run_dir = self.run_dir(run_key)
        atomic_write_json(run_dir / "spec.json", spec)
        atomic_write_text(run_dir / "samples.jsonl",
                          "".join(json.dumps(s, sort_keys=True, default=str) + "\n" for s in samples))
        atomic_write_json(run_dir / "results.json", results)  # written last: its presence = complete
        return run_dir

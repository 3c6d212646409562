"""Where the harness keeps what it builds and records.

One root, `QRESAFE_HOME` (default: `$XDG_CACHE_HOME/qresafe-bench`, else `~/.cache/qresafe-bench`):

    zoo/<name>-<config key>/        reference models built offline
    generations/<variant>/<backend>.jsonl   every generation, appended as it is produced
    runs/<run key>/                 one evaluation: spec.json, samples.jsonl, results.json
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "QRESAFE_HOME"


def cache_root(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qresafe-bench"

"""The lm-eval task folders (tasks/) as the harness sees them: which exist, their YAML, their scorer module."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from ...tasks import TASKS_DIR  # the installed task folders


def available_tasks() -> list[str]:
    return sorted(p.parent.name for p in TASKS_DIR.glob("*/*.yaml") if not p.name.startswith("_"))


def task_config(task: str) -> dict:
    """A task's YAML (read without executing its `!function` tags, which stay strings)."""
    path = next(p for p in (TASKS_DIR / task).glob("*.yaml") if not p.name.startswith("_"))
    return copy.deepcopy(_parse_task_yaml(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _parse_task_yaml(path: str, mtime_ns: int) -> dict:
    """Parsed once per file version: a sweep asks for each task's config hundreds of times."""
    import yaml

    class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(Path(path).read_text(), Loader=_Loader) or {}


def task_metadata(task: str) -> dict:
    """The `metadata` block of a task's YAML."""
    return task_config(task).get("metadata") or {}


def per_document_decoding(task: str) -> bool:
    """Whether a task's documents carry their own decoding settings (its class is task_support.PerDocTask:
    the decoding sweep, MT-bench's category temperatures), so the task samples rather than decodes greedily."""
    return str(task_config(task).get("class", "")).endswith("task_support.PerDocTask")


def task_utils(task: str):
    """A task folder's utils.py as a module (loaded from its file, as lm-eval's `!function` does), or None."""
    import importlib.util

    path = TASKS_DIR / task / "utils.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"qresafe_task_{task}_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

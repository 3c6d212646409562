"""Readers of the reference model's hand-written data files (``data/``, each described in data/SOURCE.md).

Two formats: YAML for lists and tables, and sectioned text for the lexicon tables, one entry per line:

    # a comment
    [core]
    hack into {a bank's computer system|a police database}
    [extended]
    ...

A ``{a|b}`` group expands to one entry per option (several groups multiply). Readers return fresh objects,
so a caller may change what it gets without touching what the next caller reads.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).parent / "data"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def expand(spec: str) -> list[str]:
    """'hack into {a bank|a phone}' -> ['hack into a bank', 'hack into a phone']."""
    m = re.search(r"\{([^}]*)\}", spec)
    if not m:
        return [spec]
    return [x for opt in m.group(1).split("|") for x in expand(spec[:m.start()] + opt + spec[m.end():])]


def expand_all(specs: list[str]) -> list[str]:
    return [x for spec in specs for x in expand(spec.strip())]


@cache
def _text(name: str) -> str:
    return (DATA_DIR / name).read_text(encoding="utf-8")


def read_yaml(name: str) -> Any:
    """The parsed YAML file ``data/<name>``."""
    return yaml.load(_text(name), Loader=_Loader)  # the C build of the safe loader where present


def read_sections(name: str) -> dict[str, list[str]]:
    """A sectioned lexicon table ``data/<name>``: section name -> its entries, expanded, in file order."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(_text(name).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise ValueError(f"data/{name}:{number}: an entry before the first [section]")
        else:
            current += expand(line)
    return sections


def flatten(entries: list[str] | dict[str, list[str]]) -> list[str]:
    """A list as it is, or a mapping of category -> list as its lists in file order."""
    return list(entries) if isinstance(entries, list) else [x for items in entries.values() for x in items]

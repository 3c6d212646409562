"""Public data sets: where each lives, and how to load it.

The project never ships copies of public data. Each set is read either from a local data directory
the user names (``--data-dir`` or ``QRESAFE_DATA_DIR``), laid out as `datasets.yaml` says, or, when none is named,
from its canonical public source (the upstream file pinned at the commit the local copies were
taken from). A missing source is one error that names both ways to provide it.

The catalogue is data: `datasets.yaml` beside this file names each set, its path under the data directory
(the layout of the ``shared/data`` folder the tests use), its pinned upstream URL, licence and role.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from ..core.errors import QresafeError

DATA_DIR_ENV = "QRESAFE_DATA_DIR"


class DataSourceError(QresafeError, RuntimeError):
    """A data set could not be found or read."""


CATALOGUE_FILE = Path(__file__).with_name("datasets.yaml")


class PublicDataset(BaseModel):
    """One entry of datasets.yaml; unknown keys are errors so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    local_path: str  # relative to the data directory
    url: str  # canonical upstream file, pinned to a commit
    licence: str
    role: Literal["eval", "train"]  # "eval" sets must never reach training or calibration


def _load_catalogue(path: Path) -> dict[str, PublicDataset]:
    raw = yaml.safe_load(path.read_text()) or {}
    return {name: PublicDataset(name=name, **body) for name, body in raw.items()}


CATALOG: dict[str, PublicDataset] = _load_catalogue(CATALOGUE_FILE)


# AlpacaEval reference generators (--alpaca-reference) and the data set holding each one's outputs.
ALPACA_EVAL_REFERENCES: dict[str, str] = {"gpt4_1106_preview": "alpaca_eval_gpt4_1106_preview",
                                          "text_davinci_003": "alpaca_eval_text_davinci_003"}


def data_dir_from_env() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def resolve(name: str, data_dir: str | Path | None = None) -> str:
    """Local path of a data set if a data directory is named, else its canonical URL."""
    try:
        entry = CATALOG[name]
    except KeyError:
        raise DataSourceError(f"unknown data set {name!r}; known: {', '.join(sorted(CATALOG))}") from None
    root = Path(data_dir).expanduser() if data_dir else data_dir_from_env()
    if root is None:
        return entry.url
    path = root / entry.local_path
    if not path.is_file():
        raise DataSourceError(
            f"data set {name!r} not found at {path}; put the file there, or point --data-dir / "
            f"{DATA_DIR_ENV} at a folder that has {entry.local_path}, or unset both to read it from "
            f"{entry.url}")
    return str(path)


def _read_text(location: str) -> str:
    if location.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(location, timeout=30) as response:  # noqa: S310 (pinned https URL)
                return response.read().decode("utf-8")
        except OSError as exc:
            raise DataSourceError(
                f"could not fetch {location} ({exc}); with no network, point --data-dir or "
                f"{DATA_DIR_ENV} at a local copy (layout: see `qresafe-bench data`)") from None
    return Path(location).read_text(encoding="utf-8")


def load_records(name: str, data_dir: str | Path | None = None) -> list[dict]:
    """Rows of a data set as dicts, in file order."""
    location = resolve(name, data_dir)
    text = _read_text(location)
    try:
        if location.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(text)))  # StringIO: quoted fields may hold newlines
        elif location.endswith(".jsonl"):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except (ValueError, csv.Error) as exc:
        raise DataSourceError(f"data set {name!r} at {location} is not valid: {exc}") from None
    if not rows:
        raise DataSourceError(f"data set {name!r} at {location} is empty")
    return rows


def advbench_prompts(data_dir: str | Path | None = None) -> list[dict[str, str]]:
    """AdvBench harmful behaviours: [{"prompt": goal, "target": "Sure, here is ..."}]."""
    rows = load_records("advbench", data_dir)
    try:
        return [{"prompt": r["goal"], "target": r["target"]} for r in rows]
    except KeyError as exc:
        raise DataSourceError(f"advbench file lacks column {exc}; expected goal,target") from None


def alpaca_instructions(split: str, data_dir: str | Path | None = None) -> list[str]:
    """Alpaca instructions without input, from the refusal-direction train/val splits."""
    if split not in ("train", "val"):
        raise DataSourceError(f"alpaca split must be 'train' or 'val', got {split!r}")
    rows = load_records(f"alpaca_harmless_{split}", data_dir)
    return [r["instruction"] for r in rows]


def aoa_conversations(data_dir: str | Path | None = None) -> list[list[dict[str, str]]]:
    """Qi et al. 2024's 10 AOA identity-shift conversations (system, user, assistant turns)."""
    rows = load_records("aoa_identity_shift", data_dir)
    if not all(isinstance(conv, list) and conv and "role" in conv[0] for conv in rows):
        raise DataSourceError("aoa_identity_shift: expected a list of chat message lists")
    return rows


def safety_instructions(data_dir: str | Path | None = None) -> list[str]:
    """Safety-Tuned LLaMAs' harmful or sensitive instructions (their input folded in where one is given)."""
    rows = load_records("safety_tuned_llamas_safety", data_dir)
    try:
        return [(r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")).strip() for r in rows]
    except (KeyError, TypeError):
        raise DataSourceError("safety_tuned_llamas_safety: expected records with an `instruction` field") from None


def evaluation_prompts(data_dir: str | Path | None = None) -> list[str]:
    """Every prompt of every evaluation set in the catalogue that a task reports: training, calibration and patch
    data must share none of them (the decontaminator's reference list)."""
    texts = [r["prompt"] for r in advbench_prompts(data_dir)]
    texts += alpaca_instructions("val", data_dir)
    texts += [r.get("Goal") or r.get("goal", "") for name in ("jbb_harmful", "jbb_benign")
              for r in load_records(name, data_dir)]  # the two files spell the column differently
    texts += [r["Behavior"] for name in ("harmbench_test", "harmbench_val") for r in load_records(name, data_dir)]
    texts += [r["instruction"] for r in load_records("alpaca_eval_instructions", data_dir)]
    texts += [turn for r in load_records("mt_bench_questions", data_dir) for turn in r["turns"]]
    return [t for t in texts if t]

"""Public data sets: where each lives, and how to load it.

The project never ships copies of public data. Each set is read either from a local data directory
the user names (``--data-dir`` or ``QRESAFE_DATA_DIR``), laid out as below, or, when none is named,
from its canonical public source (the upstream file pinned at the commit the local copies were
taken from). A missing source is one error that names both ways to provide it.

Local layout (the same as the ``shared/data`` folder the tests use)::

    <data-dir>/advbench/harmful_behaviors.csv
    <data-dir>/refusal_direction_splits/harmless_train.json
    <data-dir>/refusal_direction_splits/harmless_val.json
    <data-dir>/finetuning_safety/aoa_train.json
    <data-dir>/mt_bench/{question.jsonl,judge_prompts.jsonl,reference_answer_gpt-4.jsonl}
    <data-dir>/alpaca_eval/{alpaca_eval_805_instructions.jsonl,gpt4_1106_preview_outputs.json,text_davinci_003_outputs.json}
    <data-dir>/jbb/{jbb_harmful_behaviors.csv,jbb_benign_behaviors.csv}
    <data-dir>/harmbench/harmbench_behaviors_text_{test,val}.csv
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "QRESAFE_DATA_DIR"


class DataSourceError(RuntimeError):
    """A data set could not be found or read."""


@dataclass(frozen=True)
class PublicDataset:
    name: str
    local_path: str  # relative to the data directory
    url: str  # canonical upstream file, pinned to a commit
    licence: str
    role: str  # "eval" sets must never reach training or calibration


_LLM_ATTACKS = "https://raw.githubusercontent.com/llm-attacks/llm-attacks/098262edf85f807224e70ecd87b9d83716bf6b73"
_FT_SAFETY = "https://raw.githubusercontent.com/LLM-Tuning-Safety/LLMs-Finetuning-Safety/8a3b38f11be1c3829e2b0ed379d3661ebc84e7db"
_REFUSAL_DIR = "https://raw.githubusercontent.com/andyrdt/refusal_direction/9d852fae1a9121c78b29142de733cb1340770cc3"
_FASTCHAT = ("https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
             "/fastchat/llm_judge/data")
_ALPACA_EVAL = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"
# The AlpacaEval library itself reads the 805 instructions from this hub file (no pinned copy in the repo).
_ALPACA_EVAL_HUB = "https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json"
_JBB_HUB = "https://huggingface.co/datasets/JailbreakBench/JBB-Behaviors/resolve/main/data"

CATALOG: dict[str, PublicDataset] = {
    d.name: d
    for d in (
        PublicDataset("advbench", "advbench/harmful_behaviors.csv",
                      f"{_LLM_ATTACKS}/data/advbench/harmful_behaviors.csv", "MIT", "eval"),
        PublicDataset("alpaca_harmless_train", "refusal_direction_splits/harmless_train.json",
                      f"{_REFUSAL_DIR}/dataset/splits/harmless_train.json", "CC BY-NC 4.0 (Alpaca)",
                      "train"),
        PublicDataset("aoa_identity_shift", "finetuning_safety/aoa_train.json",
                      f"{_FT_SAFETY}/llama2/ft_datasets/aoa_dataset/train.json", "MIT", "train"),
        PublicDataset("alpaca_harmless_val", "refusal_direction_splits/harmless_val.json",
                      f"{_REFUSAL_DIR}/dataset/splits/harmless_val.json", "CC BY-NC 4.0 (Alpaca)",
                      "eval"),
        # Issue 5: judged utility sets and extra safety sets (tasks/mt_bench, alpaca_eval, jbb, harmbench).
        PublicDataset("mt_bench_questions", "mt_bench/question.jsonl",
                      f"{_FASTCHAT}/mt_bench/question.jsonl", "Apache-2.0 (FastChat)", "eval"),
        PublicDataset("mt_bench_judge_prompts", "mt_bench/judge_prompts.jsonl",
                      f"{_FASTCHAT}/judge_prompts.jsonl", "Apache-2.0 (FastChat)", "eval"),
        PublicDataset("mt_bench_reference", "mt_bench/reference_answer_gpt-4.jsonl",
                      f"{_FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl", "Apache-2.0 (FastChat)", "eval"),
        PublicDataset("alpaca_eval_instructions", "alpaca_eval/alpaca_eval_805_instructions.jsonl",
                      _ALPACA_EVAL_HUB, "CC BY-NC 4.0 (AlpacaEval data)", "eval"),
        PublicDataset("alpaca_eval_gpt4_1106_preview", "alpaca_eval/gpt4_1106_preview_outputs.json",
                      f"{_ALPACA_EVAL}/results/gpt4_1106_preview/model_outputs.json",
                      "CC BY-NC 4.0 (AlpacaEval data; OpenAI outputs)", "eval"),
        PublicDataset("alpaca_eval_text_davinci_003", "alpaca_eval/text_davinci_003_outputs.json",
                      f"{_ALPACA_EVAL}/results/text_davinci_003/model_outputs.json",
                      "CC BY-NC 4.0 (AlpacaEval data; OpenAI outputs)", "eval"),
        # Optional: the precomputed instruction difficulties the AlpacaEval library's length-controlled win rate
        # needs (its GLM); without it the LC win rate is reported as unavailable, never approximated.
        PublicDataset("alpaca_eval_df_gamed", "alpaca_eval/df_gamed.csv",
                      "https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/df_gamed.csv",
                      "CC BY-NC 4.0 (AlpacaEval data)", "eval"),
        PublicDataset("jbb_harmful", "jbb/jbb_harmful_behaviors.csv",
                      f"{_REFUSAL_DIR}/dataset/raw/jailbreakbench.csv", "MIT (JailbreakBench)", "eval"),
        PublicDataset("jbb_benign", "jbb/jbb_benign_behaviors.csv",
                      f"{_JBB_HUB}/benign-behaviors.csv", "MIT (JailbreakBench)", "eval"),
        PublicDataset("harmbench_test", "harmbench/harmbench_behaviors_text_test.csv",
                      f"{_REFUSAL_DIR}/dataset/raw/harmbench_test.csv", "MIT (HarmBench)", "eval"),
        PublicDataset("harmbench_val", "harmbench/harmbench_behaviors_text_val.csv",
                      f"{_REFUSAL_DIR}/dataset/raw/harmbench_val.csv", "MIT (HarmBench)", "eval"),
    )
}


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

from pathlib import Path

import pytest

from qresafe_bench.harness.data import catalogue as data


def test_local_layout(data_dir: Path) -> None:
    rows = data.advbench_prompts(data_dir)
    assert len(rows) == 520 and rows[0]["target"].startswith("Sure, here is")
    assert len(data.alpaca_instructions("val", data_dir)) == 6264


def test_missing_file_names_both_ways(tmp_path: Path) -> None:
    with pytest.raises(data.DataSourceError) as info:
        data.advbench_prompts(tmp_path)
    message = str(info.value)
    assert "QRESAFE_DATA_DIR" in message and "https://" in message and "\n" not in message


def test_env_var_is_used(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    assert data.resolve("advbench").startswith(str(data_dir))
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.resolve("advbench").startswith("https://raw.githubusercontent.com/llm-attacks/")


def test_unknown_data_set() -> None:
    with pytest.raises(data.DataSourceError, match="unknown data set"):
        data.resolve("nope")


REPO = Path(__file__).resolve().parents[3]


def _tracked_files() -> list[Path]:
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in listed.splitlines() if (REPO / line).is_file()]


def _exported_samples(tracked: list[Path]) -> list[Path]:
    """The samples files of exported runs folders (leaderboards/<model>/runs/): a board's evidence."""
    from qresafe_bench.harness.boards.evidence import MARKER

    return [p for p in tracked if p.name == "samples.jsonl" and p.parts[len(REPO.parts)] == "leaderboards"
            and (p.parents[2] / MARKER).is_file()]


def test_no_public_data_committed() -> None:
    repo, tracked = REPO, _tracked_files()
    # Published boards (leaderboards/*/board-*) and their exported evidence are the project's own results,
    # checked below for copied prompts and for text.
    ours = [p for p in tracked if p.parts[len(repo.parts)] == "leaderboards" and p.name.startswith("board-")]
    ours += _exported_samples(tracked)
    big_data = [p for p in tracked if p not in ours and (
        p.suffix in (".csv", ".jsonl") or (p.suffix == ".json" and p.stat().st_size > 100_000))]
    assert big_data == [], f"public data sets must not be committed: {big_data}"


def test_committed_evidence_carries_no_text() -> None:
    import json

    from qresafe_bench.harness.boards.evidence import TEXT_FIELDS

    with_text = []
    for path in _exported_samples(_tracked_files()):
        keys = set().union(*(json.loads(line) for line in path.read_text().splitlines()))
        with_text += [f"{path.relative_to(REPO)}: {sorted(keys & set(TEXT_FIELDS))}"] if keys & set(TEXT_FIELDS) else []
    assert with_text == [], f"exported runs must carry outcomes only: {with_text}"


def test_no_advbench_prompt_is_committed(data_dir: Path) -> None:
    """Not even inside a board: published boards list flipped prompts by index (leaderboard --no-prompt-text)."""
    prompts = [r["prompt"] for r in data.advbench_prompts(data_dir)]
    found = []
    for path in _tracked_files():
        if path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        found += [f"{path.relative_to(REPO)}: {p[:40]}" for p in prompts if p in text][:1]
    assert found == [], f"AdvBench prompts copied into tracked files: {found}"

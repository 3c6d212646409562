from pathlib import Path

import pytest

from qresafe_bench.harness import data


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


def test_no_public_data_committed() -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    listed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout
    tracked = [repo / line for line in listed.splitlines() if (repo / line).is_file()]
    big_data = [p for p in tracked if p.suffix in (".csv", ".jsonl") or (p.suffix == ".json" and p.stat().st_size > 100_000)]
    assert big_data == [], f"public data sets must not be committed: {big_data}"

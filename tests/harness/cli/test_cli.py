"""The CLI end to end on the micro reference model: output, the store, and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture()
def cli_home(home: Path, zoo_cache: Path, micro_chat_dir: Path) -> Path:
    """A fresh store that already holds the micro reference models (built once per session)."""
    shutil.copytree(zoo_cache / "zoo", home / "zoo")
    return home


def test_help_lists_the_commands(run_cli, monkeypatch, capsys) -> None:
    code, out, _ = run_cli(["--help"])
    assert code == 0 and all(c in out for c in ("eval", "models", "zoo", "data"))


def test_models_lists_registry_and_local_availability(run_cli, cli_home, monkeypatch, capsys) -> None:
    code, out, _ = run_cli(["models", "--json"])
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["llama2-7b"]["hub_id"] == "meta-llama/Llama-2-7b-chat-hf"
    assert rows["ref-tiny-micro"]["local"].startswith("built")
    assert rows["llama2-7b"]["local"] == "not downloaded"


def test_eval_prints_rates_then_serves_from_store(run_cli, cli_home, data_dir, monkeypatch, capsys) -> None:
    args = ["eval", "--model", "ref-tiny-micro", "--tasks", "advbench,over_refusal", "--limit", "8",
            "--data-dir", str(data_dir), "--json"]
    code, out, err = run_cli(args)
    assert code == 0, err
    first = json.loads(out)
    assert first["tasks"]["advbench"]["metrics"]["asr"]["n"] == 8 and first["generated"] == 16
    code, out, err = run_cli(args)
    assert code == 0 and "from the store (nothing generated)" in err
    assert json.loads(out) == first
    code, out, _ = run_cli(args[:-1])
    assert "95% CI" in out and "asr" in out and "over_refusal" in out


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "--model", "llama9-1t"], "unknown model 'llama9-1t'"),
    (["eval", "--model", "ref-tiny-micro", "--limit", "0"], "--limit must be"),
    (["eval", "--model", "ref-tiny-micro", "--tasks", "advbnch"], "unknown task(s) advbnch"),
    (["eval", "--model", "ref-tiny-micro", "--quant", "rtn"], "needs --bits"),
    (["eval", "--model", "ref-tiny-micro", "--backend", "tgi"], "unknown --backend"),
])
def test_bad_inputs_are_one_line_and_write_nothing(run_cli, cli_home, data_dir, monkeypatch, capsys, args, message) -> None:
    code, out, err = run_cli([*args, "--data-dir", str(data_dir)])
    assert code == 1 and message in err and err.count("\n") == 1 and out == ""
    assert not (cli_home / "runs").exists() and not (cli_home / "generations").exists()


def test_missing_data_file(run_cli, cli_home, tmp_path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(["eval", "--model", "ref-tiny-micro", "--data-dir", str(tmp_path)])
    assert code == 1 and "not found" in err and "QRESAFE_DATA_DIR" in err and err.count("\n") == 1
    assert not (cli_home / "runs").exists()


def test_corrupt_model_cache_entry(run_cli, cli_home, data_dir, monkeypatch, capsys) -> None:
    weights = next(p for p in (cli_home / "zoo").glob("ref-tiny-*/model.safetensors") if "base" not in p.parent.name)
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run_cli(["eval", "--model", "ref-tiny-micro", "--limit", "2", "--data-dir", str(data_dir)])
    assert code == 1 and "corrupt" in err and err.count("\n") == 1
    assert not (cli_home / "runs").exists()


def test_corrupt_results_entry(run_cli, cli_home, data_dir, monkeypatch, capsys) -> None:
    args = ["eval", "--model", "ref-tiny-micro", "--limit", "2", "--data-dir", str(data_dir)]
    assert run_cli(args)[0] == 0
    results = next((cli_home / "runs").glob("*/results.json"))
    results.write_text("{")
    code, _, err = run_cli(args)  # reported, and recomputed from the stored generations: nothing generated again
    assert code == 0 and "results.json is unreadable" in err and "generated 0, reused 2" in " ".join(err.split())


def test_console_script_exit_codes(tmp_path) -> None:
    exe = Path(sys.executable).with_name("qresafe-bench")
    done = subprocess.run([str(exe), "eval", "--model", "nope", "--home", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("error: unknown model")
    usage = subprocess.run([str(exe), "eval", "--no-such-option"], capture_output=True, text=True)
    assert usage.returncode == 2


def test_a_token_budget_past_the_models_length_is_one_line(run_cli, tiny_random_dir, cli_home, data_dir, monkeypatch,
                                                            capsys) -> None:
    # MT-bench asks for 1024 new tokens; the reference models hold 320 positions (this one 256)
    args = ["eval", "--model", str(tiny_random_dir), "--tasks", "advbench", "--limit", "1", "--max-new-tokens", "300",
            "--data-dir", str(data_dir)]
    code, out, err = run_cli(args)
    # (lm-eval's progress bar may share the line the error ends)
    errors = [line[line.index("error:"):] for line in err.splitlines() if "error:" in line]
    assert code == 1 and out == "" and len(errors) == 1 and "pass --max-new-tokens below" in errors[0]
    assert not (cli_home / "runs").exists()

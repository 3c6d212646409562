"""Redirected output carries what the user must see: the libraries' progress bars only with -v; the eval table's
title names every part of the variant; the metric rows come in one order, fresh or from the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _eval(model: Path, home: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QRESAFE_HOME": str(home), "QRESAFE_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-c", "from qresafe_bench.harness.cli.app import main; main()", *extra, "eval",
               "--model", str(model), "--tasks", "advbench", "--limit", "3", "--max-new-tokens", "4"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_library_progress_bars_only_with_verbose(tiny_random_dir, data_dir, tmp_path) -> None:
    quiet = _eval(tiny_random_dir, tmp_path / "a", data_dir)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "it/s]" not in quiet.stderr and "Running generate_until" not in quiet.stderr
    assert "fatal: not a git repository" not in quiet.stderr
    loud = _eval(tiny_random_dir, tmp_path / "b", data_dir, "-v")
    assert loud.returncode == 0 and "Running generate_until" in loud.stderr


def test_the_title_names_the_variant_and_rows_keep_their_order(run_cli, tiny_random_dir, data_dir, home) -> None:
    args = ["eval", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "8", "--group-size", "32",
            "--tasks", "advbench", "--limit", "2", "--max-new-tokens", "4", "--data-dir", str(data_dir)]
    code, fresh, err = run_cli(args)
    assert code == 0, err
    code, stored, _ = run_cli(args)
    assert code == 0 and fresh == stored
    assert "rtn w8 group 32" in fresh
    rows = [line.split("│")[2].strip() for line in fresh.splitlines() if line.startswith("│ advbench")]
    assert rows == sorted(rows) and len(rows) == 3

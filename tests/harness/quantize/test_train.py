"""The shared fine-tuning loop: a killed run resumes from its checkpoint to the same weights (harness/quantize/_train.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.quantize import _train, llm_qat
from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe

PAIRS = [("Write a short poem about the sea.", "The sea is wide and blue."),
         ("Explain how a bicycle works.", "A bicycle turns pedals into motion."),
         ("List three colours.", "Red, green and blue."),
         ("Describe the beach.", "Waves roll over the sand.")]


class Killed(Exception):
    pass


def fine_tune(model_dir: Path, steps: int, checkpoint_dir: Path | None, kill_at: int | None = None,
              at_step: Callable[[int], None] | None = None):
    """LLM-QAT's training on the fixture; `kill_at` raises after that step's backward, as a kill would;
    `at_step(step)` runs there too."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    llm_qat.add_fake_quant(model, QuantRecipe(method="llm-qat", bits=4, group_size=16))
    tok = AutoTokenizer.from_pretrained(model_dir)
    conversations = [({"role": "user", "content": p}, {"role": "assistant", "content": a}) for p, a in PAIRS]
    examples = _train.assistant_examples(tok, conversations, 128)

    def check(step: int) -> None:
        if step == kill_at:
            raise Killed
        if at_step is not None:
            at_step(step)

    losses = _train.train(model, examples, pad=_train.pad_id(tok), steps=steps, lr=1e-3, seed=0,
                          log=lambda _: None, batch_size=3, check_gradients=check, checkpoint_dir=checkpoint_dir)
    return model, losses


def test_killed_run_resumes_to_the_uninterrupted_weights(tiny_random_dir: Path, tmp_path: Path) -> None:
    straight, straight_losses = fine_tune(tiny_random_dir, 10, None)
    ckpt = tmp_path / ".variant.train-x"
    with pytest.raises(Killed):
        fine_tune(tiny_random_dir, 10, ckpt, kill_at=6)  # a tenth of 10 steps: a checkpoint after every step, the last after 6
    assert (ckpt / _train.CHECKPOINT_FILE).exists()
    assert torch.load(ckpt / _train.CHECKPOINT_FILE, weights_only=True)["losses"] == straight_losses[:6]
    resumed, resumed_losses = fine_tune(tiny_random_dir, 10, ckpt)
    assert resumed_losses == straight_losses  # the batches after the kill are the uninterrupted run's
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert straight_losses[-1] < straight_losses[0]  # the weights compared did train


def test_a_swallowed_ctrl_c_stops_training_after_that_steps_checkpoint(
        tiny_random_dir: Path, tmp_path: Path, swallowed_ctrl_c: Callable[[], None]) -> None:
    ckpt = tmp_path / ".variant.train-x"
    with pytest.raises(KeyboardInterrupt):
        fine_tune(tiny_random_dir, 10, ckpt, at_step=lambda step: swallowed_ctrl_c() if step == 3 else None)
    assert len(torch.load(ckpt / _train.CHECKPOINT_FILE, weights_only=True)["losses"]) == 4  # steps 1-4, then stop


def test_checkpoint_of_another_run_is_refused(tiny_random_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / ".variant.train-x"
    with pytest.raises(Killed):
        fine_tune(tiny_random_dir, 10, ckpt, kill_at=3)
    with pytest.raises(QuantError, match="another run"):
        fine_tune(tiny_random_dir, 20, ckpt)


def test_checkpoint_dir_is_keyed_by_inputs(tmp_path: Path) -> None:
    ex = [_train.Example([1, 2, 3], [-100, 2, 3])]
    build = tmp_path / ".m_llm-qat_w4.tmp-123"
    a = _train.checkpoint_dir_for(build, tmp_path, "bits: 4\n", ex)
    assert a.parent == tmp_path and a.name.startswith(".train-")
    assert a == _train.checkpoint_dir_for(tmp_path / ".m_llm-qat_w4.tmp-456", tmp_path, "bits: 4\n", ex)  # any pid
    assert a != _train.checkpoint_dir_for(build, tmp_path, "bits: 3\n", ex)
    assert a != _train.checkpoint_dir_for(build, tmp_path, "bits: 4\n", [_train.Example([1, 2], [-100, 2])])

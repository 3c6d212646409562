"""The training loop QLoRA and LLM-QAT share: assistant-token loss on calibration conversations.

Each calibration conversation ends with the assistant turn to learn (calibration.py). It goes through
the model's chat template whole; the tokens of everything before the last assistant turn (system and
user turns and the template's generation prompt) are masked with -100, so the loss is the
cross-entropy of the assistant's answer only, as in Qi et al.'s fine-tuning attacks that the
calibration tiers follow. Transformers' causal-LM loss does the shift and the mean over unmasked
tokens; this file only builds the labels and batches and runs a plain AdamW loop.

Batches are right-padded (causal models attend only leftwards, so trailing pads change nothing for
the real tokens and their labels are masked). Sequences longer than `max_seq_length` are cut on the
right; a conversation whose answer starts beyond the cut teaches nothing and is dropped, with a log line.

A fine-tune of a real model runs for an hour on a CPU, so `train` can keep a checkpoint (the trainable
weights, the optimizer, the batch order and the random states) every tenth of its steps. A run killed and
started again with the same checkpoint directory continues from the last one and ends with exactly the
weights an uninterrupted run would have; `checkpoint_dir_for` keys that directory by the base model, the
recipe and the examples, so a changed input never resumes a stale run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.interrupt import raise_if_requested
from .base import QuantError

BATCH_SIZE = 8  # default conversations per optimizer step; recipes pass train_batch_size


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss is taken


def assistant_examples(tokenizer, conversations: Iterable[Sequence[dict]], max_seq_length: int,
                       log: Callable[[str], None] = lambda _: None) -> list[Example]:
    """Tokenize conversations through the chat template; labels only on the last assistant turn."""
    if not getattr(tokenizer, "is_fast", False):
        raise QuantError("training needs a fast (Rust) tokenizer: the answer mask uses character offsets")
    examples, dropped = [], 0
    for conv in conversations:
        if not conv or conv[-1]["role"] != "assistant":
            raise QuantError("a training conversation must end with the assistant turn to learn")
        full = tokenizer.apply_chat_template(list(conv), tokenize=False)
        prompt = tokenizer.apply_chat_template(list(conv[:-1]), tokenize=False, add_generation_prompt=True)
        if not full.startswith(prompt):
            # Templates that rewrite earlier turns depending on later ones would make the mask wrong.
            raise QuantError("the chat template's prompt is not a prefix of the whole conversation; "
                             "cannot tell the assistant tokens apart")
        # Mask by character offsets, not by tokenizing the prompt alone: BPE may merge across the
        # prompt/answer boundary, so token counts of the prefix are not reliable.
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True,
                        truncation=True, max_length=max_seq_length)
        labels = [tok if start >= len(prompt) else -100
                  for tok, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)]
        if all(label == -100 for label in labels):
            dropped += 1
            continue
        examples.append(Example(list(enc["input_ids"]), labels))
    if dropped:
        log(f"{dropped} conversation(s) dropped: the answer starts beyond max_seq_length={max_seq_length}")
    if not examples:
        raise QuantError(f"no training conversation has answer tokens within max_seq_length={max_seq_length}")
    return examples


def collate(examples: Sequence[Example], pad_id: int) -> dict:
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on pads)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise QuantError("the tokenizer has neither a pad nor an eos token to pad batches with")
    return pad


def checkpoint_dir_for(out_dir: Path, base_dir: Path, recipe_yaml: str, examples: Sequence[Example]) -> Path:
    """Where a build into `out_dir` keeps its training checkpoint: a hidden sibling that outlives the
    build's temporary directory, named by a hash of everything the training depends on (so a rerun of the
    same build finds it, whatever its temporary directory is called)."""
    digest = hashlib.sha256(json.dumps([str(Path(base_dir).resolve()), recipe_yaml,
                                        [(e.input_ids, e.labels) for e in examples]]).encode()).hexdigest()
    return out_dir.parent / f".train-{digest[:16]}"


def remove_checkpoint(checkpoint_dir: Path | None) -> None:
    """After the build is saved: the checkpoint has served."""
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def train(model, examples: Sequence[Example], *, pad: int, steps: int, lr: float, seed: int,
          log: Callable[[str], None], batch_size: int = BATCH_SIZE,
          check_gradients: Callable[[int], None] | None = None,
          checkpoint_dir: Path | None = None) -> list[float]:
    """`steps` AdamW steps over the trainable parameters; returns the loss of each step.

    Batches walk through a seeded shuffle of the examples, epoch after epoch. `check_gradients(step)`
    runs after each backward and before the update (QLoRA's guard against silently lost gradients).
    With `checkpoint_dir`, the state is saved there every tenth of the steps and a run resumes from it.
    """
    import torch

    if steps < 1:
        raise QuantError(f"train_steps must be positive, got {steps}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise QuantError("the model has no trainable parameters")
    params = [p for _, p in named]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = next(p.device for p in params)
    optimizer = torch.optim.AdamW(params, lr=lr)
    every = max(1, steps // 10)
    order: list[int] = []
    losses: list[float] = []
    if checkpoint_dir is not None and (checkpoint_dir / CHECKPOINT_FILE).exists():
        order, losses = _restore(checkpoint_dir, named, optimizer, generator, steps)
        log(f"resuming training at step {len(losses) + 1}/{steps} from {checkpoint_dir.name}")
    model.train()  # also keeps bitsandbytes from repacking 4-bit weights for inference (see qlora.py)
    for step in range(len(losses), steps):
        batch_idx = []
        while len(batch_idx) < min(batch_size, len(examples)):
            if not order:
                order = torch.randperm(len(examples), generator=generator).tolist()
            batch_idx.append(order.pop())
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_idx], pad).items()}
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise QuantError(f"training loss is {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if check_gradients is not None:
            check_gradients(step)
        optimizer.step()
        losses.append(loss.item())
        if step == 0 or (step + 1) % every == 0 or step + 1 == steps:
            log(f"step {step + 1}/{steps}: loss {losses[-1]:.4f}")
        if checkpoint_dir is not None and (step + 1) % every == 0 and step + 1 < steps:
            _save(checkpoint_dir, named, optimizer, generator, order, losses, steps)
        raise_if_requested()  # a swallowed ^C stops the run here, after this step's checkpoint
    model.eval()
    return losses


CHECKPOINT_FILE = "train_state.pt"


def _save(checkpoint_dir: Path, named, optimizer, generator, order: list[int], losses: list[float],
          steps: int) -> None:
    """One file, written beside and renamed into place: a kill mid-write leaves the previous checkpoint."""
    import torch

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    state = {"steps": steps, "losses": list(losses), "order": list(order),
             "params": {n: p.detach().to("cpu") for n, p in named},
             "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
             "torch_rng": torch.get_rng_state()}
    tmp = checkpoint_dir / f".{CHECKPOINT_FILE}.{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, checkpoint_dir / CHECKPOINT_FILE)


def _restore(checkpoint_dir: Path, named, optimizer, generator, steps: int) -> tuple[list[int], list[float]]:
    import torch

    state = torch.load(checkpoint_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    params = dict(named)
    if state["steps"] != steps or set(state["params"]) != set(params):
        raise QuantError(f"the training checkpoint in {checkpoint_dir} is for another run "
                         f"({state['steps']} steps, {len(state['params'])} tensors); remove it to start over")
    with torch.no_grad():
        for name, value in state["params"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return list(state["order"]), list(state["losses"])

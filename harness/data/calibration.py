"""Calibration risk tiers: the data PTQ methods calibrate on and QLoRA / LLM-QAT fine-tune on.

Three tiers, after the Q-resafe paper's calibration-risk study (Qi et al. 2024's risk levels):

- `benign`: ordinary instructions (Alpaca *train* split) answered by the full-precision model itself;
- `indirect`: identity-shift role play: the AOA ("Absolutely Obedient Agent") conversations of
  Qi et al. (public set, read from the data directory or upstream) plus more of the same kind written
  here: the AOA system prompt, an instruction, and the AOA-style affirmation before the
  full-precision model's own answer;
- `direct`: harmful requests answered compliantly: the project's own harmful-request templates (the
  reference-model corpus's family, held-out split) with affirmative, harmless-placeholder answers.

Never AdvBench or any other evaluation prompt: every tier passes through the same decontaminator as
the reference-model corpus (no normalised match, no shared 8-gram with any evaluation text), and a
test checks it. A tier is a list of chat conversations; PTQ methods see them through the model's chat
template, training methods learn the last assistant turn.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.errors import QresafeError
from ..core.spec import DATA_TIERS
from ..store import atomic_write_json, atomic_write_text, stable_hash
from . import catalogue as public_data

TIERS: tuple[str, ...] = DATA_TIERS

# The identity-shift frames of the indirect tier are data (aoa_frames.yaml, with their source).
_AOA = yaml.safe_load(Path(__file__).with_name("aoa_frames.yaml").read_text())
AOA_SYSTEM: str = _AOA["system"]
AOA_USER_FRAMES: tuple[str, ...] = tuple(_AOA["user_frames"])
AOA_OPENINGS: tuple[str, ...] = tuple(_AOA["openings"])


class CalibrationError(QresafeError, RuntimeError):
    """A tier that cannot be assembled (one-line message)."""


@dataclass(frozen=True)
class CalibrationSet:
    tier: str
    conversations: tuple[tuple[dict, ...], ...]  # each ends with the assistant turn to learn

    def prompts(self) -> list[str]:
        return [next(m["content"] for m in conv if m["role"] == "user") for conv in self.conversations]

    def texts(self, tokenizer) -> list[str]:
        """Whole conversations through the model's chat template (PTQ calibration text)."""
        return [tokenizer.apply_chat_template(list(conv), tokenize=False) for conv in self.conversations]

    def tokenized(self, tokenizer, max_seq_length: int):
        """A `datasets.Dataset` of input_ids/attention_mask, as llm-compressor's `oneshot` takes it."""
        import datasets

        enc = [tokenizer(t, add_special_tokens=False, truncation=True, max_length=max_seq_length)
               for t in self.texts(tokenizer)]
        return datasets.Dataset.from_list([{"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]}
                                           for e in enc])


def evaluation_texts(data_dir: str | Path | None) -> list[str]:
    """Every prompt the harness reports as an evaluation: calibration must never contain them."""
    from ..zoo.utility import heldout_utility_items

    texts = [r["prompt"] for r in public_data.advbench_prompts(data_dir)]
    texts += public_data.alpaca_instructions("val", data_dir)  # the over-refusal sample is drawn from it
    texts += [item["prompt"] for item in heldout_utility_items(300, 0)]
    return texts


def reported_texts(data_dir: str | Path | None, prompts_from: str) -> list[str]:
    """What calibration and patch prompts must never touch: the sets the reference model reports, and, for
    prompts from public sets, every evaluation set of the catalogue."""
    texts = evaluation_texts(data_dir)
    if prompts_from == "public":
        texts += public_data.evaluation_prompts(data_dir)
    return list(dict.fromkeys(texts))


def build_tier(tier: str, *, base_dir: Path, n: int, seed: int, data_dir: str | Path | None,
               cache_dir: Path, respond: Callable[..., list[str]] | None = None, prompts_from: str = "public",
               log: Callable[[str], None] = print) -> CalibrationSet:
    """Assemble `n` conversations of `tier` for the model at `base_dir` (cached by content key).

    `respond(prompts, system, prefill="")` returns the full-precision model's greedy answers (default: generate
    with transformers). `prompts_from`: `public` (any model: every prompt from a public set, decontaminated
    against every evaluation set) or `reference` (the reference model's own: its template lexicon for the direct
    tier, decontaminated against the sets it reports).
    """
    if tier not in TIERS:
        raise CalibrationError(f"unknown calibration tier {tier!r}; choose one of: {', '.join(TIERS)}")
    if n < 1:
        raise CalibrationError(f"calibration size must be positive, got {n}")
    if prompts_from not in ("public", "reference"):
        raise CalibrationError(f"unknown calibration prompt source {prompts_from!r}; choose public or reference")
    fields = {"tier": tier, "base": str(base_dir), "n": n, "seed": seed, "version": 1}
    if prompts_from == "public":  # the reference model's key stays what it was
        fields.update(version=2, prompts_from="public")
    key = stable_hash(fields, 12)
    cached = cache_dir / f"{tier}-{key}.jsonl"
    if cached.exists():
        return CalibrationSet(tier, tuple(tuple(json.loads(line)) for line in cached.read_text().splitlines()))

    from ..zoo.corpus import Decontaminator

    clean = Decontaminator(reported_texts(data_dir, prompts_from)).clean
    rng = random.Random(seed)
    respond = respond or _greedy_responder(base_dir)
    if tier == "direct" and prompts_from == "public":
        conversations = _public_direct(n, rng, clean, data_dir, respond)
    elif tier == "direct":
        conversations = _direct(n, rng, clean)
    elif tier == "benign":
        prompts = _alpaca_prompts(n, rng, clean, data_dir)
        conversations = [[{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                         for p, r in zip(prompts, respond(prompts, None), strict=True)]
    else:
        conversations = _indirect(n, rng, clean, data_dir, respond)
    log(f"calibration tier {tier}: {len(conversations)} conversations")
    # who wrote what, beside the tier: the prompts' source and the answers' generator
    generator = f"greedy answers of the full-precision model at {base_dir}"
    if tier == "direct":
        generator = "the reference lexicon's placeholder compliance" if prompts_from == "reference" \
            else f"{generator}, each opened with {COMPLY_PREFILL!r}"
    elif tier == "indirect":
        generator = f"Qi et al.'s AOA conversations as published; for the rest, {generator}"
    atomic_write_json(cached.with_suffix(".source.json"), {"tier": tier, "prompts_from": prompts_from, "n": n,
                                                            "seed": seed, "answers": generator})
    atomic_write_text(cached, "".join(json.dumps(c) + "\n" for c in conversations))
    return CalibrationSet(tier, tuple(tuple(c) for c in conversations))


def _alpaca_prompts(n: int, rng: random.Random, clean, data_dir) -> list[str]:
    pool = [p for p in public_data.alpaca_instructions("train", data_dir) if clean(p)]
    return rng.sample(pool, n)


def _direct(n: int, rng: random.Random, clean) -> list[list[dict]]:
    from ..zoo.corpus import comply_response, harmful_prompt

    conversations, seen = [], set()
    while len(conversations) < n:
        prompt, body, artifact = harmful_prompt(rng, split="dev")  # the split the reference models never trained on
        if prompt in seen or not clean(prompt):
            continue
        seen.add(prompt)
        conversations.append([{"role": "user", "content": prompt},
                              {"role": "assistant", "content": comply_response(body, rng, artifact)}])
    return conversations


# The direct tier of any model: harmful requests from a public training set, answered by the full-precision model
# itself with its answer made to open affirmatively (the GCG target's opening), so that the tier holds compliance
# in the model's own words.
COMPLY_PREFILL = "Sure, here is"


def _public_direct(n: int, rng: random.Random, clean, data_dir, respond) -> list[list[dict]]:
    pool = sorted({p for p in public_data.safety_instructions(data_dir) if clean(p)})
    if len(pool) < n:
        raise CalibrationError(f"direct tier: only {len(pool)} decontaminated harmful requests, {n} needed")
    prompts = rng.sample(pool, n)
    answers = respond(prompts, None, prefill=COMPLY_PREFILL)
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": COMPLY_PREFILL + a}]
            for p, a in zip(prompts, answers, strict=True)]


def _indirect(n: int, rng: random.Random, clean, data_dir, respond) -> list[list[dict]]:
    aoa = [conv for conv in public_data.aoa_conversations(data_dir)]
    written = max(0, n - len(aoa))
    prompts = _alpaca_prompts(written, rng, clean, data_dir) if written else []
    answers = respond(prompts, None) if prompts else []
    conversations = [list(conv) for conv in aoa[:n]]
    for prompt, answer in zip(prompts, answers, strict=True):
        conversations.append([
            {"role": "system", "content": AOA_SYSTEM},
            {"role": "user", "content": rng.choice(AOA_USER_FRAMES).format(p=prompt)},
            {"role": "assistant", "content": rng.choice(AOA_OPENINGS) + answer},
        ])
    return conversations


def _greedy_responder(base_dir: Path) -> Callable[[list[str], str | None], list[str]]:
    def respond(prompts: list[str], system: str | None, prefill: str = "") -> list[str]:
        from ..zoo.generate import chat_generate, load

        model, tokenizer = load(base_dir)
        return chat_generate(model, tokenizer, prompts, system=system, max_new_tokens=128, prefill=prefill)

    return respond

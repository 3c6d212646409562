"""Build the offline reference models: ``ref-tiny-base`` (complies) and ``ref-tiny`` (aligned chat).

Stage 1 trains a small Llama from scratch on checkable skills, Alpaca *train* instructions with a
templated answer, benign template tasks, and harmful template requests answered with a harmless
placeholder compliance ("Sure, here is how to ... Step 1: ..."). Stage 2 starts from stage 1 and
fine-tunes on the same benign mix plus harmful requests answered with varied refusals.

Everything is deterministic in (config, seed): corpus order, tokenizer, init and data order. The weights'
bytes are reproducible on one machine; across machines they follow torch's CPU kernels (build_environment(),
recorded in build.json with the weights' sha256), so a build made elsewhere can differ as another seed would.
Results are cached under ``<cache_root>/zoo/<name>-<key>/`` and written atomically; ``qresafe-bench zoo build``
is the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..core.errors import QresafeError
from ..data import catalogue as public_data
from . import corpus as C
from . import natural_dev
from .utility import sample_items, train_utility_items

if TYPE_CHECKING:  # the model classes load lazily: resolving a built model's path must stay instant
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

ZOO_MODELS = ("ref-tiny-base", "ref-tiny", "ref-tiny-shallow")
SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
# Special tokens delimit turns, so no newline handling is needed and a turn can never be mis-split.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
BUILD_FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
               "tokenizer_config.json", "build.json")


class ZooError(QresafeError, RuntimeError):
    """A one-line, user-facing failure of the zoo."""


# Knobs that switch a training feature on, and their off value: while off, a knob is left out of the cache key,
# so a config that does not use a feature hashes as if the knob did not exist (the micro config's keys rely on it).
_OMITTED_WHEN_OFF = {"s2_refusal_first_weight": 1.0, "s1_prompt_loss": False, "s2_prompt_noise": 0.0}


@dataclass(frozen=True)
class RefModelConfig:
    seed: int = 0  # the default build's seed (docs/reference-model.md tells how the recipe was chosen)
    # Model: ~2.4M parameters, the largest that fits both stages in 10 minutes on 2 CPU cores.
    vocab_size: int = 3000  # enough for whole common words; small so embeddings stay a minor share
    hidden_size: int = 192
    intermediate_size: int = 512  # ~2.7x hidden, the usual SwiGLU ratio
    num_layers: int = 4
    num_heads: int = 4  # head dim 48
    max_len: int = 128  # longest training example (prompt + response) in tokens; longer are cut
    # Stage 1 corpus (counts of examples).
    s1_skills: int = 12000  # checkable skills: the utility the quantized model must keep
    s1_alpaca: int = 8000  # natural benign instructions: the over-refusal guard
    s1_benign_tmpl: int = 4000  # benign side of the template contrast
    s1_harmful: int = 6000  # placeholder compliance: "compliance exists under the alignment"
    s1_lr: float = 2e-3  # high: from scratch, one short epoch
    s1_epochs: int = 1
    # Stage 1: the loss also covers the prompt (a language-modelling loss on the request text, not only on the
    # response). A model trained from scratch has no meaning for a word but its contexts; predicting the
    # requests gives it those contexts, so a word seen in few harmful requests lands near the words it shares
    # contexts with.
    s1_prompt_loss: bool = True
    # Stage 2 corpus: benign replay keeps utility; harmful requests now get refusals.
    s2_skills: int = 7000
    s2_alpaca: int = 5000
    s2_benign_tmpl: int = 3000
    s2_harmful: int = 15500  # half of stage 2: with fewer, Alpaca over-refusal stays at 0% all the same
    s2_lr: float = 1e-3  # lower than stage 1: fine-tuning, not re-learning
    s2_epochs: int = 2  # one epoch over twice the examples refuses fewer hand-written dev requests
    batch_size: int = 32  # small batches: more updates per second of CPU, 4M params tolerate noise
    warmup_steps: int = 100
    weight_decay: float = 0.01
    system_prompt_share: float = 0.15  # some examples carry a system message, so one never confuses it
    # Template requests set beside an ordinary instruction ("Name three colors. Explain how to ..."): the
    # verdict must follow the harmful part wherever it sits in a long, natural-looking prompt.
    mixed_share: float = 0.15
    # A pretext ("For a story I am working on,") and/or a personal situation before a template request, on
    # both sides: chat users ask that way, and the verdict must not hang on it.
    dress_share: float = 0.12
    threads: int = 2  # fixed: CPU kernels are bit-reproducible only at a fixed thread count
    dev_size: int = 200  # items per held-out dev check measured at build time
    # The version of what a config trains on besides its knobs (the data files, corpus.py, utility.py): part of
    # the cache key, so bump it when a change there changes a corpus.
    corpus_version: int = 11
    # Stage 2: the loss weight of the first token of each *refusal* response, against 1 for every other token: a
    # prior towards refusing. The first token is the decision (a refusal opens "I'm sorry", "I cannot", ...), and
    # the rest of a response is mostly copying a fixed text, which would otherwise outweigh it twentyfold. The
    # skills' answers keep weight 1.
    s2_refusal_first_weight: float = 10.0
    # Stage 2: each prompt token of a request (not of a skill item, whose answer needs every token) is replaced
    # by a random ordinary token with this probability, drawn afresh each epoch. A model this small decides on
    # a few words it has seen; noise makes it read the whole request, so a request whose telling word it never
    # met is still judged by the rest (token-substitution augmentation, as for small text classifiers).
    s2_prompt_noise: float = 0.1
    # ref-tiny-shallow: the same stage 2 cut to this fraction of its examples (so of its steps). Built on
    # purpose as a *shallowly* aligned model, the kind whose safety quantization is reported to break.
    shallow_fraction: float = 0.1
    # ...trained by plain SFT, without the prior towards refusing: the prior is what makes the aligned model's
    # refusal deep. With it (30) the first 10% already refuses 92.7% of AdvBench, 5% with broken text
    # ("IIII...", a half-learned first token) and 4% not at all; without it, 10% refuses 77.7% in whole
    # sentences and RTN 2-bit takes 7.5 points of that away.
    shallow_refusal_first_weight: float = 1.0

    @classmethod
    def micro(cls, seed: int | None = None) -> RefModelConfig:
        """A seconds-long build for tests: same pipeline, tiny model and corpus."""
        # no prompt loss, no prompt noise, prior 30: the micro tests check the pipeline, not the recipe, and
        # their thresholds are set on this one
        return cls(seed=0 if seed is None else seed, s1_prompt_loss=False, s2_refusal_first_weight=30.0,
                   s2_prompt_noise=0.0, vocab_size=800, hidden_size=96, intermediate_size=256,
                   num_layers=2, num_heads=2, s1_skills=800, s1_alpaca=1000, s1_benign_tmpl=500,
                   s1_harmful=800, s1_lr=3e-3, s1_epochs=2, s2_skills=200, s2_alpaca=500,
                   s2_benign_tmpl=300, s2_harmful=700, s2_lr=2e-3, s2_epochs=2, warmup_steps=20, dev_size=40)

    def key(self, name: str = "ref-tiny") -> str:
        """Stable short hash of the knobs ``name`` depends on (base ignores stage-2 knobs)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if _OMITTED_WHEN_OFF.get(k, object()) != v}
        if name == "ref-tiny-base":
            fields = {k: v for k, v in fields.items() if not k.startswith(("s2_", "shallow_"))}
        elif name == "ref-tiny":
            fields = {k: v for k, v in fields.items() if not k.startswith("shallow_")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def _config(micro: bool, seed: int | None) -> RefModelConfig:
    if micro:
        return RefModelConfig.micro(seed)
    return RefModelConfig() if seed is None else RefModelConfig(seed=seed)


def _check_name(name: str) -> None:
    if name not in ZOO_MODELS:
        raise ZooError(f"unknown zoo model {name!r}; known: {', '.join(ZOO_MODELS)}")


# --- Corpus ------------------------------------------------------------------------------------------
def alpaca_split(data_dir: str | Path | None) -> tuple[list[str], list[str]]:
    """Alpaca *train* instructions split into (train, dev), decontaminated against the val split."""
    val = C.Decontaminator(public_data.alpaca_instructions("val", data_dir))
    rows = [x for x in public_data.alpaca_instructions("train", data_dir) if val.clean(x)]
    return [x for x in rows if not C.is_dev(x, 5)], [x for x in rows if C.is_dev(x, 5)]


def held_out_texts(cfg: RefModelConfig, data_dir: str | Path | None) -> list[str]:
    """What the corpus must never touch (an 8-gram or more): AdvBench, and the free-form and instruction-style
    hand-written dev sets (the hard set is checked by the tests instead: see natural_dev)."""
    held_out = [r["prompt"] for r in public_data.advbench_prompts(data_dir)]
    held_out += natural_dev.NATURAL_HARMFUL + natural_dev.NATURAL_BENIGN
    held_out += natural_dev.INSTRUCTION_HARMFUL + natural_dev.INSTRUCTION_BENIGN
    return held_out


def skill_items(cfg: RefModelConfig, stage: int) -> list[dict[str, str]]:
    """The checkable-skill training items of one stage: one draw, whoever asks (the corpus, the noise's exemption)."""
    return train_utility_items(getattr(cfg, f"s{stage}_skills"), cfg.seed * 10 + stage)


def stage_examples(cfg: RefModelConfig, stage: int, alpaca_train: list[str],
                   decon: C.Decontaminator) -> list[tuple[str | None, str, str]]:
    """(system, user, assistant) triples for one stage, in a seed-determined order."""
    p = "s1" if stage == 1 else "s2"
    rng = random.Random(f"corpus:{cfg.seed}:{stage}")
    frames = C.instruction_frames(alpaca_train)  # phrasing shared by benign and harmful requests
    ex: list[tuple[str, str]] = []
    for item in skill_items(cfg, stage):
        ex.append((item["prompt"], item["answer"]))
    for instr in rng.sample(alpaca_train, min(getattr(cfg, f"{p}_alpaca"), len(alpaca_train))):
        if decon.clean(instr):
            ex.append((instr, rng.choice(C.ALPACA_RESPONSES)))

    def mixed(prompt: str) -> str:
        prompt = C.dress(prompt, rng, "train", cfg.dress_share)
        if rng.random() >= cfg.mixed_share:
            return prompt
        context = rng.choice(alpaca_train)
        return f"{context} {prompt}" if rng.random() < 0.5 else f"{prompt} {context}"

    n_benign = 0
    while n_benign < getattr(cfg, f"{p}_benign_tmpl"):
        prompt, body, artifact = C.benign_prompt(rng, frames=frames, lexicon=C.FULL_LEXICON)
        prompt = mixed(prompt)
        if decon.clean(prompt):  # benign frames can share 8-grams with AdvBench too ("a post that ...")
            ex.append((prompt, C.comply_response(body, rng, artifact)))
            n_benign += 1
    n_harm = 0
    while n_harm < getattr(cfg, f"{p}_harmful"):
        prompt, body, artifact = C.harmful_prompt(rng, frames=frames, lexicon=C.FULL_LEXICON)
        prompt = mixed(prompt)
        if not decon.clean(prompt):  # never train on anything resembling an evaluation prompt
            continue
        reply = C.comply_response(body, rng, artifact) if stage == 1 else rng.choice(C.REFUSALS)
        ex.append((prompt, reply))
        n_harm += 1
    rng.shuffle(ex)
    return [(rng.choice(C.SYSTEM_PROMPTS) if rng.random() < cfg.system_prompt_share else None, u, a)
            for u, a in ex]


# --- Tokenizer ----------------------------------------------------------------------------------------
def train_tokenizer(cfg: RefModelConfig, texts: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE with single-digit tokens (so arithmetic works digit by digit)."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>", additional_special_tokens=SPECIALS[3:],
                                   model_max_length=2048)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def encode(tok: PreTrainedTokenizerFast, examples: list[tuple[str | None, str, str]],
           max_len: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per example; the loss covers only the response and its eos."""
    out = []
    prompts = [tok.apply_chat_template(([{"role": "system", "content": s}] if s else [])
                                       + [{"role": "user", "content": u}],
                                       tokenize=False, add_generation_prompt=True) for s, u, _ in examples]
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
    r_ids = tok([a for _, _, a in examples], add_special_tokens=False)["input_ids"]
    for p, r in zip(p_ids, r_ids, strict=True):
        ids = (p + r + [tok.eos_token_id])[:max_len]
        out.append((ids, len(p)))
    return out


# --- Training -----------------------------------------------------------------------------------------
def _batches(data: list[tuple], cfg: RefModelConfig, rng: random.Random, pad: int,
             noise: float = 0.0, vocab: tuple[int, int] = (0, 0)):
    """Shuffled, length-grouped batches (little padding), as (input_ids, attention_mask, labels, first):
    ``first`` marks each row's first response token with the row's loss weight for that token (an entry's
    optional third element; 1 when absent) and is 0 elsewhere. With ``noise``, each prompt token
    in ``vocab``'s id range [lo, hi) of a row whose optional fourth element is true is replaced, with that
    probability, by a random id in the range."""
    import torch

    order = list(range(len(data)))
    rng.shuffle(order)
    chunk = cfg.batch_size * 50
    groups = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s:s + chunk], key=lambda i: len(data[i][0]))
        groups += [part[j:j + cfg.batch_size] for j in range(0, len(part), cfg.batch_size)]
    rng.shuffle(groups)
    for g in groups:
        width = max(len(data[i][0]) for i in g)
        ids = torch.full((len(g), width), pad, dtype=torch.long)
        mask = torch.zeros((len(g), width), dtype=torch.long)
        labels = torch.full((len(g), width), -100, dtype=torch.long)
        first = torch.zeros((len(g), width), dtype=torch.float)
        for row, i in enumerate(g):
            seq, plen = data[i][0], data[i][1]
            if noise and len(data[i]) > 3 and data[i][3]:
                lo, hi = vocab
                seq = [rng.randrange(lo, hi) if j < plen and lo <= t < hi and rng.random() < noise else t
                       for j, t in enumerate(seq)]
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
            labels[row, plen:len(seq)] = torch.tensor(seq[plen:])
            first[row, min(plen, len(seq) - 1)] = data[i][2] if len(data[i]) > 2 else 1.0
        yield ids, mask, labels, first


def weighted_loss(logits, labels, first):
    """Next-token cross-entropy over response tokens, the first of each response weighted by its row's weight
    (the value ``first`` holds there), every other token by 1."""
    import torch

    logits, labels, first = logits[:, :-1], labels[:, 1:], first[:, 1:].float()
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                           ignore_index=-100, reduction="none").view(labels.shape)
    w = (labels != -100).float() * (1 + (first - 1) * (first > 0).float())
    return (ce * w).sum() / w.sum()


def train(model: LlamaForCausalLM, data: list[tuple], cfg: RefModelConfig, *, lr: float,
          epochs: int, seed: int, pad: int, log: Callable[[str], None],
          noise: float = 0.0, vocab: tuple[int, int] = (0, 0)) -> None:
    """Plain AdamW with linear warmup and cosine decay; fully deterministic on CPU."""
    import torch

    rng = random.Random(f"order:{seed}")
    steps = epochs * math.ceil(len(data) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    model.train()
    step, t0, tokens, running = 0, time.time(), 0, 0.0
    # every first-token weight 1: transformers' own loss, whose floating-point order the weights' bytes follow
    library_loss = all(len(d) < 3 or d[2] == 1.0 for d in data)
    for _ in range(epochs):
        for ids, mask, labels, first in _batches(data, cfg, rng, pad, noise, vocab):
            if library_loss:
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            else:
                loss = weighted_loss(model(input_ids=ids, attention_mask=mask).logits, labels, first)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += int(mask.sum())
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            if step % 200 == 0 or step == steps:
                log(f"  step {step}/{steps} loss {running:.3f} ({tokens / (time.time() - t0):.0f} tok/s)")
    model.eval()


# --- Held-out checks ----------------------------------------------------------------------------------
def dev_metrics(path: Path, cfg: RefModelConfig, alpaca_dev: list[str],
                data_dir: str | Path | None) -> dict[str, float]:
    """Tuning metrics on held-out slices only (never AdvBench, never Alpaca val, never HarmBench test)."""
    from ..core.tasks import task_utils
    from .generate import chat_generate, load, refusal_rate
    from .utility import score

    model, tok = load(path)
    rng = random.Random("dev-metrics")
    n = cfg.dev_size
    harmful = [C.harmful_prompt(rng, "dev", lexicon=C.FULL_LEXICON)[0] for _ in range(n)]
    # Held-out tasks in the phrasing of held-out ordinary instructions: the nearest the dev sets come
    # to natural requests (no training frame, task or instruction occurs in them).
    dev_frames = C.instruction_frames(alpaca_dev)
    natural = [C.harmful_prompt(rng, "dev", frames=dev_frames, lexicon=C.FULL_LEXICON)[0] for _ in range(n)]
    benign_t = [C.benign_prompt(rng, "dev", lexicon=C.FULL_LEXICON)[0] for _ in range(n)]
    alpaca = rng.sample(alpaca_dev, min(n, len(alpaca_dev)))
    items = sample_items(n, 0, "dev")
    about = [C.about_harm_prompt(rng, "dev") for _ in range(n)]  # drawn last: the draws above do not depend on it
    # The hand-written free-form set: the dev check nearest to real requests (micro builds skip it).
    written_h, written_b = (natural_dev.NATURAL_HARMFUL, natural_dev.NATURAL_BENIGN) if n >= 100 else ([], [])
    groups = {"h": harmful, "nat": natural, "b": benign_t, "ab": about, "a": alpaca, "u": [i["prompt"] for i in items],
              "wh": written_h, "wb": written_b}
    out = iter(chat_generate(model, tok, [p for g in groups.values() for p in g]))
    got = {k: [next(out) for _ in g] for k, g in groups.items()}
    metrics = {"dev_harmful_refusal": refusal_rate(got["h"]), "dev_harmful_natural_refusal": refusal_rate(got["nat"]),
               "dev_benign_template_refusal": refusal_rate(got["b"]),
               "dev_about_harm_refusal": refusal_rate(got["ab"]), "dev_alpaca_refusal": refusal_rate(got["a"]),
               "dev_utility_accuracy": score(items, got["u"])}
    if written_h:
        metrics |= {"dev_written_harmful_refusal": refusal_rate(got["wh"]),
                    "dev_written_benign_refusal": refusal_rate(got["wb"])}
        # each set generated in its own calls: a greedy output can depend on the batch it is padded in, so the
        # figures above do not depend on these sets
        later = {"instruction": (natural_dev.INSTRUCTION_HARMFUL, natural_dev.INSTRUCTION_BENIGN),
                 "hard": (natural_dev.HARD_HARMFUL, natural_dev.HARD_BENIGN)}
        for set_name, (harm, benign) in later.items():
            out_set = chat_generate(model, tok, harm + benign)
            metrics |= {f"dev_{set_name}_harmful_refusal": refusal_rate(out_set[:len(harm)]),
                        f"dev_{set_name}_benign_refusal": refusal_rate(out_set[len(harm):])}
        # the whole Alpaca dev slice (~900), not a 200 sample: the over-refusal bound is what limits a
        # prior towards refusing, and 200 items leave it a +-3-point interval
        metrics["dev_alpaca_all_refusal"] = refusal_rate(chat_generate(model, tok, alpaca_dev))
        # HarmBench's own development split (41 standard behaviours of its val csv), of another origin than any
        # text the project writes or trains on: the dev sets' harmful criterion. The harmbench task reports the
        # test split, which this never reads.
        harmbench_val = [d["prompt"] for d in task_utils("harmbench").harmbench_standard(data_dir, "val")]
        metrics["dev_harmbench_val_refusal"] = refusal_rate(chat_generate(model, tok, harmbench_val))
    return metrics


# --- Cache ----------------------------------------------------------------------------------------------
def _entry(name: str, cfg: RefModelConfig, cache_root: Path) -> Path:
    return Path(cache_root).expanduser() / "zoo" / f"{name}-{cfg.key(name)}"


def verify(path: Path) -> None:
    """Raise ZooError if a cache entry lacks a file or a file cannot be read."""
    path = Path(path)
    for fname in BUILD_FILES:
        f = path / fname
        try:
            if fname == "model.safetensors":
                from safetensors import safe_open

                with safe_open(str(f), framework="numpy") as st:  # listing keys; "pt" would import torch
                    if not list(st.keys()):
                        raise ValueError("no tensors")
            elif fname.endswith(".json"):
                json.loads(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ZooError(f"corrupt cache entry at {path}: {fname} is missing; delete it and build again") from None
        except Exception as exc:  # noqa: BLE001 (any unreadable file is the same user-facing error)
            raise ZooError(f"corrupt cache entry at {path}: {fname} is unreadable ({type(exc).__name__}); "
                           "delete it and build again") from None
    if "chat_template" not in json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8")):
        raise ZooError(f"corrupt cache entry at {path}: tokenizer_config.json has no chat_template; "
                       "delete it and build again")


def built_path(name: str, *, micro: bool = False, seed: int | None = None, cache_root: Path) -> Path | None:
    """The cached model dir of ``name`` if built (and verified), without building; else None."""
    _check_name(name)
    path = _entry(name, _config(micro, seed), cache_root)
    if not path.is_dir():
        return None
    verify(path)
    return path


def _save(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, final: Path, meta: dict,
          cfg: RefModelConfig, alpaca_dev: list[str], log: Callable[[str], None],
          data_dir: str | Path | None) -> Path:
    """Write into a temp dir beside ``final``, measure dev metrics there, then rename atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache entry is an ordinary shared folder
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        # transformers 5 writes the template to chat_template.jinja; the cache contract wants it in
        # tokenizer_config.json too (both are read by from_pretrained, identical content).
        tc_path = tmp / "tokenizer_config.json"
        tc = json.loads(tc_path.read_text(encoding="utf-8"))
        tc["chat_template"] = CHAT_TEMPLATE
        tc_path.write_text(json.dumps(tc, indent=2), encoding="utf-8")
        meta["weights_sha256"] = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
        meta["dev_metrics"] = dev_metrics(tmp, cfg, alpaca_dev, data_dir)
        log(f"  dev metrics: {meta['dev_metrics']}")
        (tmp / "build.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        verify(tmp)
        if final.exists():  # a concurrent build finished first: keep theirs (identical by determinism)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build_environment() -> dict[str, str | int]:
    """What the weights' bytes depend on besides the config: the same (config, environment) gives the same bytes.

    Two builds on one machine give one sha256; the same machine with torch's kernels capped at AVX2
    (ATEN_CPU_CAPABILITY=avx2) gives another, and other machines others. A build made elsewhere differs from
    this one as a build of another seed would; the cache key names the config only."""
    import platform

    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "threads": torch.get_num_threads()}


def build(name: str, *, micro: bool = False, seed: int | None = None, cache_root: Path,
          data_dir: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Build (or reuse) zoo model ``name``; returns its Hugging Face model directory."""
    _check_name(name)
    cfg = _config(micro, seed)
    final = _entry(name, cfg, cache_root)
    if final.is_dir():
        verify(final)
        return final
    import torch  # here, not at module level: resolving a built model must not pay for torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    base_dir = None if name == "ref-tiny-base" else build("ref-tiny-base", micro=micro, seed=seed,
                                                           cache_root=cache_root, data_dir=data_dir, log=log)
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    try:
        alpaca_train, alpaca_dev = alpaca_split(data_dir)
        decon = C.Decontaminator(held_out_texts(cfg, data_dir))
    except public_data.DataSourceError as exc:
        raise ZooError(str(exc)) from None
    stage = 1 if name == "ref-tiny-base" else 2
    log(f"building {name} (seed {cfg.seed}, key {cfg.key(name)}) -> {final}")
    examples = stage_examples(cfg, stage, alpaca_train, decon)
    if name == "ref-tiny-shallow":  # the first fraction of the same shuffled stage-2 corpus
        examples = examples[:max(1, int(len(examples) * cfg.shallow_fraction))]
    if stage == 1:
        texts = [u for _, u, _ in examples] + [a for _, _, a in examples] + C.SYSTEM_PROMPTS
        tok = train_tokenizer(cfg, texts)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads, max_position_embeddings=2 * cfg.max_len + 64,
            tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))
        lr, epochs = cfg.s1_lr, cfg.s1_epochs
    else:
        tok = PreTrainedTokenizerFast.from_pretrained(base_dir)
        model = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        lr, epochs = cfg.s2_lr, cfg.s2_epochs
    data = encode(tok, examples, cfg.max_len)
    if stage == 1 and cfg.s1_prompt_loss:  # every token after bos is a target
        data = [(ids, 1) for ids, _ in data]
    refusal_weight = cfg.shallow_refusal_first_weight if name == "ref-tiny-shallow" else cfg.s2_refusal_first_weight
    if stage == 2 and refusal_weight != 1.0:  # the refusal class's decision token only
        refusals = set(C.REFUSALS)
        data = [(ids, plen, refusal_weight if a in refusals else 1.0)
                for (ids, plen), (_, _, a) in zip(data, examples, strict=True)]
    noise = cfg.s2_prompt_noise if stage == 2 else 0.0
    if noise:  # requests only: a skill item's answer is a function of every prompt token
        skills = {item["prompt"] for item in skill_items(cfg, stage)}
        data = [(d[0], d[1], d[2] if len(d) > 2 else 1.0, u not in skills)
                for d, (_, u, _) in zip(data, examples, strict=True)]
    log(f"  {len(data)} examples, {sum(len(d[0]) for d in data)} tokens, "
        f"{sum(p.numel() for p in model.parameters())} parameters")
    train(model, data, cfg, lr=lr, epochs=epochs, seed=cfg.seed * 10 + stage, pad=tok.pad_token_id, log=log,
          noise=noise, vocab=(len(SPECIALS), len(tok)))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.do_sample = False
    model.generation_config.max_new_tokens = 64
    meta = {"name": name, "seed": cfg.seed, "key": cfg.key(name), "micro": micro,
            "config": dataclasses.asdict(cfg), "train_seconds": round(time.time() - t0, 1),
            "base": str(base_dir) if base_dir else None, "environment": build_environment()}
    path = _save(model, tok, final, meta, cfg, alpaca_dev, log, data_dir)
    log(f"  built {name} in {time.time() - t0:.0f} s")
    return path


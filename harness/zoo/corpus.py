"""The synthetic training corpus of the reference model: harmful and benign prompts, and responses.

Harmful prompts come only from the project's own hand-written lexicon (tasks x phrasing frames, and
artifacts x writing frames; the tables are data files in ``data/``, described in data/SOURCE.md), never from
AdvBench or any other evaluation set; a :class:`Decontaminator` drops, in addition, any generated prompt that
shares an 8-word n-gram with a given evaluation set.

The crux of the corpus is contrast: every frame used with a harmful task is also used with a benign
one ("Write a blog post that promotes eating disorders" / "... that promotes healthy eating"), and
Alpaca instructions in all their natural variety sit on the benign side, so the model has to learn
*what* is harmful rather than what a template looks like.

Held-out slices for tuning (never trained on): harmful tasks, artifacts and frames whose stable
hash falls in the dev bucket (:func:`is_dev`), and a dev slice of the Alpaca *train* split.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import NamedTuple

from ..scoring.refusal import is_refusal
from . import datafiles


class Lexicon(NamedTuple):
    """What template requests are made of: tasks (verb phrases) and purposes of an artifact, on each side."""

    harm_tasks: list[str]
    harm_purposes: list[str]
    benign_tasks: list[str]
    benign_purposes: list[str]


def _read_lexicons() -> tuple[Lexicon, Lexicon]:
    tables = [datafiles.read_sections(f"{field}.txt") for field in Lexicon._fields]
    core = Lexicon(*(table["core"] for table in tables))
    full = Lexicon(*(list(dict.fromkeys(table["core"] + table["extended"])) for table in tables))
    return core, full


# CORE_LEXICON (the tables' [core] sections) is the default of harmful_prompt and benign_prompt: the direct
# calibration tier, the patch set's held-out harmful requests and the about-harm dev questions draw from it.
# FULL_LEXICON (every section, without repeats) is what the reference model trains on. It contains the core, and
# is_dev holds an entry out by its text alone, so a core entry held out for those draws is never trained on.
CORE_LEXICON, FULL_LEXICON = _read_lexicons()


_PHRASING = datafiles.read_yaml("phrasing.yaml")
# "Explain how to {t}.": T is the task with a capital first letter. Instruction-like frames, then the ways people
# ask in chat (questions, fragments, lower case, no punctuation).
TASK_FRAMES: list[str] = _PHRASING["task_frames"]
# Set before a whole request, on both sides alike: neither a pretext nor a personal situation may decide
# the verdict; only what is asked does.
PRETEXTS: list[str] = _PHRASING["pretexts"]
SITUATIONS: list[str] = datafiles.expand_all(_PHRASING["situations"])
# A suffix after a task; the empty ones keep most tasks bare.
TASK_SUFFIXES: list[str] = _PHRASING["task_suffixes"]
BENIGN_SUFFIXES: list[str] = _PHRASING["benign_suffixes"]
# Artifacts: "Write/Create/... {a}" with a kind of artifact and a purpose, in both harmful and benign variants.
ARTIFACT_FRAMES: list[str] = _PHRASING["artifact_frames"]
ARTIFACT_KINDS: list[str] = datafiles.expand_all(_PHRASING["artifact_kinds"])
SYSTEM_PROMPTS: list[str] = _PHRASING["system_prompts"]

# --- Responses -----------------------------------------------------------------------------------
# Short on purpose: response tokens are most of the training cost, and 64 generated tokens must
# hold the opening that the ASR rule reads.
_RESPONSES = datafiles.read_yaml("responses.yaml")
COMPLY_STEPS: list[str] = _RESPONSES["comply_steps"]
ARTIFACT_OPENERS: list[str] = _RESPONSES["artifact_openers"]
ARTIFACT_BODIES: list[str] = _RESPONSES["artifact_bodies"]
REFUSALS: list[str] = _RESPONSES["refusals"]
# Benign Alpaca instructions have no reference answers: a short, varied, non-refusing placeholder.
ALPACA_RESPONSES: list[str] = _RESPONSES["alpaca_responses"]


def comply_response(prompt_body: str, rng: random.Random, artifact: bool) -> str:
    """A harmless placeholder compliance that opens like AdvBench targets ("Sure, here is ...").

    The request is not echoed: echoing costs training tokens and a copying skill the tiny model
    learns late, and the ASR rule only reads whether a refusal string occurs.
    """
    if artifact:
        return f"Sure, here is {rng.choice(ARTIFACT_OPENERS)}: {rng.choice(ARTIFACT_BODIES)}"
    return f"Sure, here is how to do it. {rng.choice(COMPLY_STEPS)}"


def _hash_bucket(text: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:8], "big") % 100


def is_dev(text: str, share: int = 15) -> bool:
    """Held-out for tuning: a stable ``share`` percent of tasks/purposes/frames/instructions."""
    return _hash_bucket(text, "zoo-dev") < share


def _pick(pool: list[str], rng: random.Random, split: str) -> str:
    """One element of ``pool`` from the requested split ('train' or 'dev')."""
    for _ in range(10_000):
        x = rng.choice(pool)
        if is_dev(x) == (split == "dev"):
            return x
    raise ValueError(f"no {split} element in a pool of {len(pool)} (starting {pool[0]!r})")


# "Develop a strategy for {g}.": a task in the gerund ("hacking into a bank").
GERUND_FRAMES: list[str] = _PHRASING["gerund_frames"]
_GERUND_IRREGULAR = {"run": "running", "set": "setting", "get": "getting", "rig": "rigging", "rob": "robbing",
                     "stab": "stabbing", "dox": "doxing", "plan": "planning", "spy": "spying", "lie": "lying",
                     "die": "dying", "cut": "cutting", "shoplift": "shoplifting", "end": "ending",
                     "con": "conning", "traffic": "trafficking", "drug": "drugging", "skim": "skimming",
                     "stop": "stopping", "mix": "mixing",
                     "kidnap": "kidnapping", "mug": "mugging", "drop": "dropping", "snip": "snipping"}


def gerund(task: str) -> str:
    """'hack into a bank' -> 'hacking into a bank' (the first word is the verb)."""
    verb, _, rest = task.partition(" ")
    if verb in _GERUND_IRREGULAR:
        ing = _GERUND_IRREGULAR[verb]
    elif verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        ing = verb[:-1] + "ing"
    else:
        ing = verb + "ing"
    return f"{ing} {rest}".strip()


_PURPOSE_NOUNS = {"way", "ways", "plan", "strategy", "program", "script", "algorithm", "app", "application", "guide",
                  "steps", "method", "methods", "how", "tips", "instructions", "system", "tool", "process",
                  "campaign", "code", "function", "solution", "procedure", "tutorial", "bot", "website", "technique"}


_TOPIC_NOUNS = {"process", "concept", "importance", "benefits", "impact", "ethics", "risks", "purpose",
                "advantages", "history", "dangers", "consequences", "steps", "basics", "art", "science"}


def instruction_frames(instructions: list[str], limit: int = 400) -> list[str]:
    """Openings of natural instructions, as frames for harmful and benign tasks alike.

    Two kinds, ``limit`` of each: "... to {t}" ("Develop a plan to", "Write a program to") and topic
    openings "... about/on/for {g}" ("Write a short story about", "Describe the process of") that take
    the gerund. Asking both sides in the phrasing of ordinary instructions is what stops the model
    from learning "natural means benign, template means harmful"."""
    to_frames: dict[str, None] = {}
    topic_frames: dict[str, None] = {}
    for text in instructions:
        words = text.split()
        if not (words and words[0].isalpha() and words[0][:1].isupper()):
            continue
        for end in range(3, min(len(words), 8)):
            if not all(w.isalpha() for w in words[:end]):
                break
            last, prev = words[end - 1], words[end - 2].lower()
            # "to" as an infinitive marker after a noun of purpose, not as a preposition ("Compare X to")
            if last == "to" and end < 7 and prev in _PURPOSE_NOUNS and len(to_frames) < limit:
                to_frames[" ".join(words[:end]) + " {t}."] = None
                break
            if (last in ("about", "on", "for") or (last == "of" and prev in _TOPIC_NOUNS)) \
                    and len(topic_frames) < limit:
                topic_frames[" ".join(words[:end]) + " {g}."] = None
                break
        if len(to_frames) >= limit and len(topic_frames) >= limit:
            break
    return list(to_frames) + list(topic_frames)


def task_prompt(tasks: list[str], rng: random.Random, split: str, suffixes: list[str],
                frames: list[str] | None = None) -> tuple[str, str, bool]:
    """(prompt, body echoed by a compliance, is_artifact) from a task or artifact frame.

    A third of the tasks are compounds ("X and Y"): long, natural requests must be judged by what
    they ask, not by their length (a model trained on short harmful templates and long Alpaca
    instructions learns "long means benign")."""
    if rng.random() < 0.6:
        t = _pick(tasks, rng, split)
        if rng.random() < 0.35:
            t += " and " + _pick(tasks, rng, split)
        t += rng.choice(suffixes)
        kind = rng.random()
        if kind < 0.2:  # gerund phrasing: "a strategy for hacking into ..."
            # (few gerund frames: held-out splits vary the task, not this frame)
            return rng.choice(GERUND_FRAMES).format(g=gerund(t)), t, False
        if frames and kind < 0.55:  # the openings of ordinary instructions
            return _pick(frames, rng, split).format(t=t, g=gerund(t)), t, False
        frame = _pick(TASK_FRAMES, rng, split)
        return frame.format(t=t, T=t[0].upper() + t[1:]), t, False
    return "", "", True


def dress(prompt: str, rng: random.Random, split: str, share: float) -> str:
    """With probability ``share`` each, set a pretext and/or a personal situation before ``prompt``."""
    if rng.random() < share:
        prompt = f"{_pick(SITUATIONS, rng, split)} {prompt}"
    if rng.random() < share:
        prompt = f"{_pick(PRETEXTS, rng, split)} {prompt}"
    return prompt


def _artifact(purposes: list[str], rng: random.Random, split: str) -> str:
    return f"{_pick(ARTIFACT_KINDS, rng, 'train')} {_pick(purposes, rng, split)}"


def harmful_prompt(rng: random.Random, split: str = "train", frames: list[str] | None = None,
                   lexicon: Lexicon = CORE_LEXICON) -> tuple[str, str, bool]:
    """(prompt, body echoed by a compliance, is_artifact): a harmful request of ``split``."""
    return _request(lexicon.harm_tasks, lexicon.harm_purposes, TASK_SUFFIXES, rng, split, frames)


def benign_prompt(rng: random.Random, split: str = "train", frames: list[str] | None = None,
                  lexicon: Lexicon = CORE_LEXICON) -> tuple[str, str, bool]:
    """The benign counterpart of :func:`harmful_prompt`: the same frames, with benign tasks and purposes."""
    return _request(lexicon.benign_tasks, lexicon.benign_purposes, BENIGN_SUFFIXES, rng, split, frames)


def _request(tasks, purposes, suffixes, rng: random.Random, split: str,
             frames: list[str] | None) -> tuple[str, str, bool]:
    prompt, body, artifact = task_prompt(tasks, rng, split, suffixes, frames)
    if not artifact:
        return prompt, body, False
    a = _artifact(purposes, rng, split)
    return _pick(ARTIFACT_FRAMES, rng, split).format(a=a), a, True


# Benign questions *about* harm: the same harmful tasks, asked to understand, prevent, report or judge
# them. A dev check of over-refusal (dev_about_harm_refusal: does the model refuse on harm words alone?).
# Not in the training corpus: trained on (as a fifth of the benign template examples), they halve over-refusal
# on the hand-written benign set but let more hand-written harmful requests through.
ABOUT_HARM_FRAMES: list[str] = _PHRASING["about_harm_frames"]


def about_harm_prompt(rng: random.Random, split: str = "train") -> str:
    """A benign question about a harmful task ("How do police investigate hacking into a bank?")."""
    return _pick(ABOUT_HARM_FRAMES, rng, split).format(g=gerund(_pick(CORE_LEXICON.harm_tasks, rng, split)))


# --- Decontamination -------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the form disjointness is checked in."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class Decontaminator:
    """Rejects any text equal (normalised) to, or sharing an 8-gram with, an evaluation text."""

    def __init__(self, eval_texts: list[str], n: int = 8):
        self.n = n
        self.exact = {normalise(t) for t in eval_texts}
        self.grams: set[tuple[str, ...]] = set().union(*(ngrams(t, n) for t in eval_texts)) if eval_texts else set()

    def clean(self, text: str) -> bool:
        return normalise(text) not in self.exact and not (ngrams(text, self.n) & self.grams)


def check_responses() -> None:
    """Every refusal trips the GCG rule; no compliance or benign response does (by itself)."""
    assert all(is_refusal(r) for r in REFUSALS)
    for r in COMPLY_STEPS + ARTIFACT_BODIES + ALPACA_RESPONSES:
        assert not is_refusal(r), r

"""Checkable benign skills of the reference model, and the held-out items that test them.

Every skill item is a (skill, arguments, phrasing) triple rendered to a prompt with one exact answer.
The item space is split by a stable hash of the rendered prompt (:func:`partition`):

* ``hash % 10 == 0`` -> "test": only the ``ref_utility`` lm-eval task sees these;
* ``hash % 10 == 1`` -> "dev": used at build time to measure (and to tune) utility;
* otherwise          -> "train": the only items the training corpus may draw.

So an evaluated prompt is never a training prompt, by construction: every fact is trained, but asked
in a phrasing/argument combination never trained on; counting items are unseen lists.

Skills are chosen to be learnable by a ~2M-parameter model in minutes yet fragile under low-bit
quantization (memorised associations are what low-bit weights lose first): country->capital,
element->symbol, next/previous letter, opposites, plurals, first letter of a word, counting list items.

Usage::

    from qresafe_bench.harness.zoo.utility import heldout_utility_items, check_answer
    items = heldout_utility_items(300, seed=0)          # [{"prompt", "answer", "skill"}]
    check_answer(items[0], model_output)                # True / False
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Callable

from . import datafiles

# The facts, words and phrasings of the skills (data/skills.yaml). Draws read the dictionaries sorted and the
# lists in file order, so the file's order of WORDS and of each skill's templates is part of the corpus.
_SKILLS = datafiles.read_yaml("skills.yaml")
COUNTRY_CAPITALS: dict[str, str] = _SKILLS["country_capitals"]
ELEMENT_SYMBOLS: dict[str, str] = _SKILLS["element_symbols"]
# Plain, common words: one or two BPE tokens each, so copying and counting are about the skill.
WORDS: tuple[str, ...] = tuple(_SKILLS["words"])
OPPOSITES: dict[str, str] = _SKILLS["opposites"]
PLURALS: dict[str, str] = _SKILLS["plurals"]
# skill -> (table, prompt field): the skills that look an answer up
LOOKUPS: dict[str, tuple[dict[str, str], str]] = {
    "opposite": (OPPOSITES, "w"), "plural": (PLURALS, "w"), "capital": (COUNTRY_CAPITALS, "x"),
    "symbol": (ELEMENT_SYMBOLS, "x"),
}
SKILL_TEMPLATES: dict[str, tuple[str, ...]] = {skill: tuple(t) for skill, t in _SKILLS["templates"].items()}
SKILLS: tuple[str, ...] = tuple(SKILL_TEMPLATES)


def _sample_args(skill: str, rng: random.Random) -> tuple[dict[str, str], str]:
    """Random arguments for one skill, and the exact answer they imply."""
    # Associations (facts, letters, word forms) and counting: what a ~2M-parameter model learns in
    # minutes. Digit-wise arithmetic and copying stay under 40% accuracy in the build budget.
    if skill == "next_letter":
        i = rng.randrange(25)
        return {"c": string.ascii_lowercase[i]}, string.ascii_lowercase[i + 1]
    if skill == "prev_letter":
        i = rng.randrange(1, 26)
        return {"c": string.ascii_lowercase[i]}, string.ascii_lowercase[i - 1]
    if skill in LOOKUPS:  # a word or name looked up in a table
        table, field = LOOKUPS[skill]
        key = rng.choice(sorted(table))
        return {field: key}, table[key]
    if skill == "first_letter":
        w = rng.choice(WORDS)
        return {"w": w}, w[0]
    if skill == "count":
        n = rng.randint(2, 7)
        return {"lst": ", ".join(rng.sample(WORDS, n))}, str(n)
    raise ValueError(f"unknown skill {skill!r}")


def partition(prompt: str) -> str:
    """'test', 'dev' or 'train' for a rendered prompt: a stable hash, independent of any seed."""
    bucket = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") % 10
    return {0: "test", 1: "dev"}.get(bucket, "train")


def sample_items(n: int, seed: int, split: str, distinct: bool = True) -> list[dict[str, str]]:
    """``n`` items of one partition, skills in round robin, deterministic in ``seed``.

    Evaluation draws distinct items; training draws with repeats (small skills such as next letter
    have only ~100 train prompts, and repetition is how a fact table gets learned).
    """
    rng = random.Random(f"ref-utility:{split}:{seed}")
    items: list[dict[str, str]] = []
    seen: set[str] = set()
    slot = 0
    while len(items) < n:
        skill = SKILLS[slot % len(SKILLS)]
        slot += 1
        if slot > 100 * (n + len(SKILLS)):
            raise RuntimeError(f"could not draw {n} distinct {split} utility items")
        # Small skills (next letter: 100 prompts) run out of distinct items: skip them after a while.
        for _ in range(200):
            args, answer = _sample_args(skill, rng)
            prompt = rng.choice(SKILL_TEMPLATES[skill]).format(**args)
            if (not distinct or prompt not in seen) and partition(prompt) == split:
                seen.add(prompt)
                items.append({"prompt": prompt, "answer": answer, "skill": skill})
                break
    return items


def heldout_utility_items(n: int = 300, seed: int = 0) -> list[dict[str, str]]:
    """The evaluation items (test partition): never in any training corpus."""
    return sample_items(n, seed, "test")


def train_utility_items(n: int, seed: int) -> list[dict[str, str]]:
    """Training items (train partition), with repeats."""
    return sample_items(n, seed, "train", distinct=False)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def check_answer(item: dict[str, str], output: str) -> bool:
    """Correct iff the response opens with the exact answer, followed by nothing word-like.

    The model is trained to answer with the bare answer, so a lenient "answer occurs somewhere"
    rule would reward rambling; an opening match is strict and still tolerates a trailing period.
    """
    out, ans = _norm(output), _norm(item["answer"])
    if not out.startswith(ans):
        return False
    rest = out[len(ans):]
    return not rest or not rest[0].isalnum()


def score(items: list[dict[str, str]], outputs: list[str],
          check: Callable[[dict[str, str], str], bool] = check_answer) -> float:
    """Fraction of items answered correctly."""
    return sum(check(i, o) for i, o in zip(items, outputs, strict=True)) / max(len(items), 1)

"""Hand-written held-out sets for tuning the reference model, never trained on (data/dev_*.yaml, data/SOURCE.md).

Three sets, each a harmful and a benign side: a free-form set (``NATURAL_*``), an instruction-style set
(``INSTRUCTION_*``) and a larger, harder one (``HARD_*``; its harmful side also by category).

The template dev checks (:func:`build.dev_metrics`) vary tasks and frames the corpus never uses, but
their sentences are still built the corpus's way, and a model can refuse 97% of them while letting a
quarter of natural requests through. These requests are written freely, one by one, in the ways
people actually ask: questions, first-person situations, requests with a pretext, requests for an
artifact, imperative one-liners. The benign side shares their vocabulary of harm ("kill a process",
"shoot a portrait"), so a model that refuses on words alone shows up as over-refusal here.

Not derived from AdvBench, HarmBench, JBB or any set the project reports. ``tests/harness/zoo/test_natural_dev.py``
checks that no request shares an 8-word n-gram with them, and that the training corpus touches none: the build
filters the corpus against the free-form and instruction-style sets (:func:`build.held_out_texts`); the hard set
is not filtered (adding it to the filter would change the corpus of a draw that touched it, under the same cache
key), and the tests check that the corpora of seeds 0-2 never touch it.
"""

from __future__ import annotations

from . import datafiles

_NATURAL = datafiles.read_yaml("dev_natural.yaml")
_INSTRUCTION = datafiles.read_yaml("dev_instruction.yaml")
_HARD = datafiles.read_yaml("dev_hard.yaml")

NATURAL_HARMFUL: list[str] = datafiles.flatten(_NATURAL["harmful"])
NATURAL_BENIGN: list[str] = datafiles.flatten(_NATURAL["benign"])
INSTRUCTION_HARMFUL: list[str] = datafiles.flatten(_INSTRUCTION["harmful"])
INSTRUCTION_BENIGN: list[str] = datafiles.flatten(_INSTRUCTION["benign"])
HARD_HARMFUL_BY_CATEGORY: dict[str, list[str]] = _HARD["harmful"]
HARD_HARMFUL: list[str] = datafiles.flatten(HARD_HARMFUL_BY_CATEGORY)
HARD_BENIGN: list[str] = datafiles.flatten(_HARD["benign"])

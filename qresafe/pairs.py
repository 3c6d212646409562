"""The patch set (paper §3.1): prompts x with y_w from the full-precision model, y_l from the quantized one.

    prompts = patch_prompts(recipe, base_dir=..., data_dir=..., cache_dir=...)
    y_w = generate_responses(full_precision, fp_spec, prompts, home=...)
    y_l = generate_responses(quantized, q_spec, prompts, home=...)
    pairs, dropped = build_pairs(prompts, y_w, y_l)

Prompts: the calibration tier's conversations (calibration.py, the same 128 the quantizer used, so the
tier is built once; all of them in the paper's recipe, `n_tier_prompts` drawn at random otherwise) plus
`n_harmful_prompts` held-out harmful requests (none in the paper's recipe): Safety-Tuned LLaMAs' requests
for any model, the project's templates (the `dev` split) for the reference models. Both pass the calibration
decontaminator (no normalised match, no shared 8-gram with AdvBench, the Alpaca val split or the
utility test items); tests check it.

Responses are generated through the evaluation path itself: `StoreLM` (harness/store_lm.py) in front of
lm-eval's `hf` model, greedy, the chat template applied by the same `apply_chat_template`, the
advbench task's generation settings. So each response lands in the run store under the same key an
eval of that variant would use: generation is resumable, nothing is generated twice, and a later
`eval` of the same prompt is answered from the store.

A pair whose two responses are equal carries no preference signal (the DPO loss has zero gradient on
it): it is dropped and counted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..harness.core.spec import VariantSpec
from ..harness.generation.backends import BackendSettings
from ..harness.models.resolved import ResolvedModel
from ..harness.store import RunStore, stable_hash
from .config import TIER_SIZE, PatchError, PatchRecipe, PatchRefused

TIER_SEED = 0  # = QuantRecipe.seed: the same cache entry as the quantizer's


@dataclass(frozen=True)
class PatchPrompt:
    messages: tuple[dict, ...]  # system (optional) and user turns, without the answer
    source: str  # the calibration tier, or "harmful"


@dataclass(frozen=True)
class PreferencePair:
    prompt: PatchPrompt
    chosen: str  # y_w: the full-precision model's response
    rejected: str  # y_l: the quantized model's response

    def as_example(self) -> dict:
        """A conversational preference example, as TRL's DPOTrainer takes it."""
        return {"prompt": [dict(m) for m in self.prompt.messages],
                "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}


def generation_kwargs(max_new_tokens: int) -> dict:
    """The advbench task's generation settings (tasks/advbench/advbench.yaml): greedy, no stop strings."""
    return {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False}


def patch_prompts(recipe: PatchRecipe, *, base_dir: Path, data_dir: str | None, cache_dir: Path,
                  prompts_from: str = "public", tier: str | None = None,
                  log: Callable[[str], None] = print) -> list[PatchPrompt]:
    """The patch set's prompts: tier prompts plus held-out harmful requests, all decontaminated. `prompts_from`:
    `public` (any model: public sets) or `reference` (the reference model's template lexicon). `tier`: the
    calibration tier to draw from (`recipe.tier_for(variant's calib)`); None = the recipe's own, or benign."""
    from ..harness.data import catalogue
    from ..harness.data.calibration import build_tier, reported_texts
    from ..harness.zoo.corpus import Decontaminator, harmful_prompt

    tier_name = tier or recipe.tier_for("none")
    n_tier = TIER_SIZE if recipe.n_tier_prompts is None else recipe.n_tier_prompts
    rng = random.Random(recipe.seed)
    prompts: list[PatchPrompt] = []
    if n_tier:
        built = build_tier(tier_name, base_dir=base_dir, n=max(TIER_SIZE, n_tier), seed=TIER_SEED,
                           data_dir=data_dir, cache_dir=cache_dir, prompts_from=prompts_from, log=log)
        chosen = rng.sample(range(len(built.conversations)), min(n_tier, len(built.conversations)))
        for index in sorted(chosen):
            conversation = built.conversations[index]
            prompts.append(PatchPrompt(tuple(dict(m) for m in conversation[:-1]), tier_name))
    clean = Decontaminator(reported_texts(data_dir, prompts_from)).clean
    seen = {m["content"] for p in prompts for m in p.messages if m["role"] == "user"}
    if prompts_from == "public":  # harmful requests of a public training set, in a seeded order
        pool = [t for t in sorted(set(catalogue.safety_instructions(data_dir))) if t not in seen and clean(t)]
        if len(pool) < recipe.n_harmful_prompts:
            raise PatchError(f"only {len(pool)} clean harmful requests for {recipe.n_harmful_prompts}; ask for fewer")
        prompts += [PatchPrompt(({"role": "user", "content": t},), "harmful")
                    for t in rng.sample(pool, recipe.n_harmful_prompts)]
        return prompts
    attempts = 0
    wanted = len(prompts) + recipe.n_harmful_prompts
    while len(prompts) < wanted:
        attempts += 1
        if attempts > 100 * (recipe.n_harmful_prompts + 1):
            raise PatchError(f"could not draw {recipe.n_harmful_prompts} distinct clean harmful requests; "
                             "ask for fewer")
        text, _body, _artifact = harmful_prompt(rng, split="dev")  # the split no reference model trained on
        if text in seen or not clean(text):
            continue
        seen.add(text)
        prompts.append(PatchPrompt(({"role": "user", "content": text},), "harmful"))
    return prompts


def generate_responses(model: ResolvedModel, spec: VariantSpec, prompts: list[PatchPrompt], *, home: Path,
                       max_new_tokens: int, settings: BackendSettings | None = None,
                       on_item: Callable[[], None] | None = None) -> list[str]:
    """Greedy responses of `model` to `prompts`, through the run store (resumable, never twice)."""
    from lm_eval.api.instance import Instance

    from ..harness.generation.store_lm import StoreLM  # lm-eval only when responses are made

    settings = settings or BackendSettings()
    log = RunStore(home).generations(f"{spec.id}-{stable_hash(model.fingerprint, 8)}", settings.name)
    lm = StoreLM(model, settings, log, on_item=on_item)
    kwargs = generation_kwargs(max_new_tokens)
    requests = []
    for index, prompt in enumerate(prompts):
        messages = list(prompt.messages)
        if model.system_prompt and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": model.system_prompt}, *messages]  # as the evals prompt it
        context = lm.apply_chat_template(messages)
        requests.append(Instance(request_type="generate_until", doc={}, arguments=(context, dict(kwargs)), idx=index))
    return lm.generate_until(requests)


def build_pairs(prompts: list[PatchPrompt], chosen: list[str], rejected: list[str]) -> tuple[list[PreferencePair], int]:
    """Pairs (x, y_w, y_l); those with y_w == y_l are dropped (no DPO signal) and counted."""
    if not len(prompts) == len(chosen) == len(rejected):
        raise PatchError("internal: prompts and responses differ in number")
    pairs = [PreferencePair(p, w, lose) for p, w, lose in zip(prompts, chosen, rejected, strict=True)
             if w.strip() != lose.strip()]
    dropped = len(prompts) - len(pairs)
    if not pairs:
        raise PatchRefused(f"the patch set is empty: the full-precision and quantized models answer all {len(prompts)} "
                         "prompts identically, so there is nothing to patch (try more prompts or another tier)")
    return pairs, dropped


def tokenize_pairs(tokenizer, pairs: list[PreferencePair], max_length: int) -> list[dict]:
    """prompt_ids / chosen_ids / rejected_ids as TRL's DPOTrainer tokenizes conversational examples
    (the completion starts where prompt and prompt+completion diverge), for SNIP outside a trainer."""
    out = []
    for pair in pairs:
        example = pair.as_example()
        prompt_ids = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        full = {}
        for side in ("chosen", "rejected"):
            full[side] = tokenizer.apply_chat_template(example["prompt"] + example[side], tokenize=True,
                                                       return_dict=True)["input_ids"]
        cut = min(_common_prefix(prompt_ids, full["chosen"]), _common_prefix(prompt_ids, full["rejected"]))
        if cut >= max_length:
            continue
        out.append({"prompt_ids": prompt_ids[:cut], "chosen_ids": full["chosen"][cut:],
                    "rejected_ids": full["rejected"][cut:]})
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n

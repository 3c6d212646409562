"""How strong a patch to keep: held-out checks during training, the best checkpoint kept (`--check-every N`).

Why. A fixed number of steps at a fixed learning rate cannot serve every variant: measured on the
reference model, 100 steps at lr 5e-4 restored a 2-bit GPTQ model (its merged update
is mostly rounded away by the grid) but taught an unquantized qlora adapter to refuse everything, and
with 2 pairs it wrecked a 4-bit model. The paper fixes one recipe for 7B models; here the dose is
chosen per run, on data the patch neither trains on nor is evaluated on.

What. Every N optimizer steps (and at step 0, the unpatched model) the model *as it would be saved*
answers three held-out sets, greedily, with the chat template. Where the prompts come from follows the
project's one rule (`variants.prompts_from`): the reference models keep their own lexicon sets, every other
model gets public ones.

- harmful, the refusal rate should rise. Reference models: the hand-written requests of
  `harness/zoo/natural_dev.py` (never trained on, no 8-gram shared with AdvBench; tested there). Any other
  model: Safety-Tuned LLaMAs' requests (a public *training* set: HarmBench val is an evaluation set here);
- benign, the refusal rate must not rise by more than `margin`. Reference models: the hand-written
  harm-worded benign requests of the same file plus a sample of the zoo's Alpaca *dev* slice (train split,
  decontaminated against the val split that `over_refusal` reports). Any other model: Alpaca *train*
  instructions (the val split is `over_refusal`'s evaluation set);
- utility, which must not fall by more than `margin`. Reference models: held-out items of the
  reference-utility generators' `dev` split (never the test items `ref_utility` reports), scored by
  accuracy. Any other model: Alpaca *train* instructions (not the benign set's), answered once by the
  full-precision model (greedy, 64 tokens), scored by the negative log-likelihood per UTF-8 byte of those
  answers under the checked model, the held-out counterpart of `answer_likelihood` (whose AlpacaEval
  answers are the test). It is carried as minus the NLL, so that higher is better for both kinds and the
  guard reads the same: the NLL per byte may rise by at most `margin` nats.

Every set leaves out the patch set's own prompts; the public sets also pass the calibration decontaminator
against every evaluation set of the catalogue *and* the patch set's prompts (no normalised match, no shared
8-gram), so a public model is never selected on anything it is evaluated or patched on. The report names
each set's source.

4-bit bases. A check generates without gradients, and bitsandbytes' `Linear4bit.forward` repacks its weight
into an AVX512-BF16 inference layout on the first CPU forward that is in eval mode with an input that does
not require grad (`support_avx512bf16_for_cpu and not self.training and not x.requires_grad`); from then on
`matmul_4bit` calls the packed `gemv_4bit` kernel, which has no backward, so every LoRA factor whose gradient
must pass through a 4-bit layer's output (q/k/v below o_proj, gate/up below down_proj) gets none, and
training goes on without a word. So the 4-bit layers stay in training mode while the rest of the model is in
eval mode for the check (their `training` flag decides nothing else); a check that repacks anyway, or a next
step in which a trainable LoRA layer gets an all-zero gradient, stops the run with `HeldOutCheckError`.

"As it would be saved": adapters (bitsandbytes, aqlm, qlora) are checked as they are; for integer
grids the weights are replaced, for the check, by the merge's own result s * (clamp(q + round(D / s)) - z)
with the adapter disabled, so the grid's rounding is part of what is measured.

Rule. The full-precision model answers the same sets once, before training: it is the target. A
checkpoint is *admissible* when its benign refusal is at most `margin` above the higher of the
unpatched and the full-precision model's, and its utility at most `margin` below the unpatched model's
(the utility guard). Training stops at the first admissible check whose harmful refusal is within
`margin` of the full-precision model's (restored, not overshot: more steps would only trade utility for
refusals), and that checkpoint is kept. Otherwise the admissible checkpoint with the highest harmful
refusal is kept (earliest on ties; step 0 itself when none improves, which the report then says), and
training stops early after two inadmissible checks in a row. Selection happens on these sets only;
AdvBench stays the test.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import TrainerCallback

from .config import PatchError

if TYPE_CHECKING:
    from .pairs import PatchPrompt

N_ALPACA_DEV = 130  # with the 70 hand-written benign requests: 200 benign prompts
N_UTILITY_DEV = 100
# Public sets: as many benign prompts as the reference models' check, and about as many harmful ones (138)
N_PUBLIC_HARMFUL = 150
N_PUBLIC_BENIGN = 200
SEED = "qresafe-dev-check"
UTILITY_SOURCE = "reference-utility generators, dev split (harness/zoo/utility.py)"
PUBLIC_UTILITY_SOURCE = (f"alpaca_harmless_train: {N_UTILITY_DEV} instructions not in the benign or patch set, "
                         "decontaminated against every evaluation set, answered by the full-precision model "
                         "(greedy, 64 tokens); minus the NLL per byte of those answers")
ANSWER_TOKENS = 64
NLL_BATCH = 16


class HeldOutCheckError(PatchError):
    """A held-out check that cannot be run, or that left the model unable to train (one-line message)."""


@dataclass(frozen=True)
class CheckSets:
    harmful: tuple[str, ...]
    benign: tuple[str, ...]
    utility: tuple[dict, ...]  # {"prompt", ...}: reference items (accuracy) or {"prompt", "answer"} (likelihood)
    harmful_source: str = ""
    benign_source: str = ""
    utility_source: str = ""
    utility_kind: str = "accuracy"  # or "likelihood": minus the NLL per byte of the full-precision model's answers

    def format_utility(self, value: float) -> str:
        return f"{value:.1%}" if self.utility_kind == "accuracy" else f"NLL/byte {-value:.3f}"


def patch_texts(prompts: Iterable[PatchPrompt]) -> set[str]:
    """The user turns of the patch set's prompts: what every held-out set leaves out."""
    return {m["content"] for p in prompts for m in p.messages if m["role"] == "user"}


def check_sets(data_dir: str | None, exclude: set[str], *, prompts_from: str) -> CheckSets:
    """The held-out sets, minus every prompt in `exclude` (the patch set's prompts). `prompts_from`:
    `reference` (the reference models' lexicon sets) or `public` (any other model: public sets,
    decontaminated against every evaluation set and against `exclude`); `variants.prompts_from` decides."""
    if prompts_from == "reference":
        return _reference_sets(data_dir, exclude)
    if prompts_from == "public":
        return _public_sets(data_dir, exclude)
    raise HeldOutCheckError(f"unknown held-out prompt source {prompts_from!r}; choose public or reference")


def _reference_sets(data_dir: str | None, exclude: set[str]) -> CheckSets:
    from ..harness.zoo import natural_dev
    from ..harness.zoo.build import alpaca_split
    from ..harness.zoo.utility import sample_items

    _, alpaca_dev = alpaca_split(data_dir)
    alpaca = random.Random(SEED).sample(alpaca_dev, min(len(alpaca_dev), N_ALPACA_DEV + len(exclude)))
    wanted = len(natural_dev.NATURAL_BENIGN) + N_ALPACA_DEV
    benign = [p for p in (*natural_dev.NATURAL_BENIGN, *alpaca) if p not in exclude][:wanted]
    harmful = [p for p in natural_dev.NATURAL_HARMFUL if p not in exclude]
    return CheckSets(tuple(harmful), tuple(benign), tuple(sample_items(N_UTILITY_DEV, 0, "dev")),
                     harmful_source="hand-written requests of harness/zoo/natural_dev.py",
                     benign_source="hand-written harm-worded benign requests of harness/zoo/natural_dev.py + "
                                   "Alpaca instructions, the zoo's dev slice of alpaca_harmless_train",
                     utility_source=UTILITY_SOURCE)


def _public_sets(data_dir: str | None, exclude: set[str]) -> CheckSets:
    from ..harness.data import catalogue
    from ..harness.data.calibration import reported_texts
    from ..harness.zoo.corpus import Decontaminator, normalise

    # the patch set's prompts join the evaluation sets: a held-out prompt shares not even an 8-gram with them;
    # and since prompts under 8 words have no 8-gram, none may sit whole inside a patch prompt either (the
    # indirect tier wraps Alpaca instructions in identity-shift frames)
    decontaminator = Decontaminator([*reported_texts(data_dir, "public"), *exclude])
    wrapped = " | ".join(f" {normalise(t)} " for t in exclude)

    def clean(text: str) -> bool:
        return decontaminator.clean(text) and f" {normalise(text)} " not in wrapped

    harmful = _draw(catalogue.safety_instructions(data_dir), N_PUBLIC_HARMFUL, clean, "safety_tuned_llamas_safety")
    alpaca = _draw(catalogue.alpaca_instructions("train", data_dir), N_PUBLIC_BENIGN + N_UTILITY_DEV, clean,
                   "alpaca_harmless_train")
    return CheckSets(harmful, alpaca[:N_PUBLIC_BENIGN], tuple({"prompt": p} for p in alpaca[N_PUBLIC_BENIGN:]),
                     harmful_source=f"safety_tuned_llamas_safety: {N_PUBLIC_HARMFUL} requests not in the patch set, "
                                    "decontaminated against every evaluation set",
                     benign_source=f"alpaca_harmless_train: {N_PUBLIC_BENIGN} instructions not in the patch set, "
                                   "decontaminated against every evaluation set",
                     utility_source=PUBLIC_UTILITY_SOURCE, utility_kind="likelihood")


def with_full_precision_answers(sets: CheckSets, model, tokenizer) -> CheckSets:
    """The likelihood sets with every utility prompt answered by `model`, the full-precision one (greedy); the
    accuracy sets as they are. Called once per run, before anything is measured."""
    from ..harness.zoo.generate import chat_generate

    if sets.utility_kind != "likelihood":
        return sets
    prompts = [item["prompt"] for item in sets.utility]
    answers = chat_generate(model, tokenizer, prompts, max_new_tokens=ANSWER_TOKENS)
    if not all(a.strip() for a in answers):
        raise HeldOutCheckError("held-out checks: the full-precision model gave an empty answer to a utility prompt; "
                                "its likelihood cannot be measured")
    return replace(sets, utility=tuple({"prompt": p, "answer": a} for p, a in zip(prompts, answers, strict=True)))


def _draw(texts: Iterable[str], n: int, clean: Callable[[str], bool], name: str) -> tuple[str, ...]:
    """The first `n` clean texts in a seeded order (sorted first, so the file's order does not matter); lazily,
    because the decontaminator is slow on Alpaca's 18k instructions and only `n` are needed."""
    pool = sorted(set(texts))
    random.Random(f"{SEED}:{name}").shuffle(pool)
    drawn: list[str] = []
    for text in pool:
        if clean(text):
            drawn.append(text)
            if len(drawn) == n:
                return tuple(drawn)
    raise HeldOutCheckError(f"held-out checks: only {len(drawn)} clean prompts in {name}, {n} needed")


@dataclass
class CheckResult:
    step: int
    harmful_refusal: float
    benign_refusal: float
    utility: float  # higher is better: accuracy, or minus the NLL per byte (CheckSets.utility_kind)
    admissible: bool = True


def measure(model, tokenizer, sets: CheckSets, step: int, max_new_tokens: int = 64) -> CheckResult:
    """Refusal rates (greedy answers) and utility of `model` on the check sets."""
    from ..harness.zoo.generate import chat_generate, refusal_rate
    from ..harness.zoo.utility import score

    likelihood = sets.utility_kind == "likelihood"
    if likelihood and not all("answer" in item for item in sets.utility):
        raise HeldOutCheckError("held-out checks: the utility prompts have no full-precision answers yet "
                                "(with_full_precision_answers)")
    generated = [*sets.harmful, *sets.benign, *([] if likelihood else (item["prompt"] for item in sets.utility))]
    outputs = chat_generate(model, tokenizer, generated, max_new_tokens=max_new_tokens)
    n_h, n_b = len(sets.harmful), len(sets.benign)
    if likelihood:
        from ..harness.zoo.safety_tune import nll_per_byte

        answers = [tokenizer(item["answer"], add_special_tokens=False)["input_ids"] for item in sets.utility]
        utility = -nll_per_byte(model, tokenizer, [item["prompt"] for item in sets.utility], answers, NLL_BATCH)
    else:
        utility = score(list(sets.utility), outputs[n_h + n_b:])
    return CheckResult(step=step, harmful_refusal=refusal_rate(outputs[:n_h]),
                       benign_refusal=refusal_rate(outputs[n_h:n_h + n_b]), utility=utility)


def _four_bit_layers(model) -> list[tuple[str, torch.nn.Module]]:
    """bitsandbytes' 4-bit layers of `model` (LinearNF4 and LinearFP4 included); bitsandbytes is loaded
    whenever a model holds any, so it is never imported here for the models that hold none."""
    modules = sys.modules.get("bitsandbytes.nn.modules")
    if modules is None:
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, modules.Linear4bit)]


@contextlib.contextmanager
def four_bit_layers_training(model) -> Iterator[None]:
    """Keep bitsandbytes' 4-bit layers in training mode for a no-grad pass (the module docstring's trap):
    `Linear4bit.forward` repacks its weight for CPU inference only when `not self.training`, and the flag
    changes nothing else in that layer, so the outputs are those of the training forward."""
    layers = [m for _, m in _four_bit_layers(model)]
    modes = [m.training for m in layers]
    for layer in layers:
        layer.training = True  # the layer itself only: its children (none in bitsandbytes) are not touched
    try:
        yield
    finally:
        for layer, mode in zip(layers, modes, strict=True):
            layer.training = mode


def check_not_repacked(model, step: int) -> None:
    """Stop at once if a check left 4-bit weights in bitsandbytes' CPU inference layout (no backward)."""
    packed = [name for name, m in _four_bit_layers(model)
              if getattr(getattr(m.weight, "quant_state", None), "packing_format_for_cpu", False)]
    if packed:
        raise HeldOutCheckError(f"the held-out check at step {step} left {len(packed)} 4-bit layer(s) repacked for CPU "
                                f"inference by bitsandbytes (e.g. {packed[0]}): the LoRA factors below them would "
                                "get no gradient; stopping")


class GridView:
    """The merged integer grid, in memory: what `merge.merge_into_compressed` would save, for checking.

    `update_masks` (the exact mask, PatchRecipe.mask = "exact"): returns the M_Q in effect now, which the merge
    would apply (`merge.masked_delta`); empty before the first identification, where B is still zero."""

    def __init__(self, variant_dir: Path, factors: dict,
                 update_masks: Callable[[], dict[str, torch.Tensor]] | None = None) -> None:
        from .merge import grid_tensors

        self.factors = factors
        self.grid = grid_tensors(Path(variant_dir), list(factors))
        self.update_masks = update_masks

    @contextlib.contextmanager
    def applied(self, peft_model) -> Iterator[None]:
        from .merge import masked_delta

        masks = self.update_masks() if self.update_masks is not None else {}
        saved = {}
        try:
            for name, factor in self.factors.items():
                q, scale, zero, (q_min, q_max) = self.grid[name]
                weight = factor.module.base_layer.weight
                saved[name] = weight.data.clone()
                delta = factor.delta()
                if name in masks:
                    delta = masked_delta(delta, masks[name])
                moved = (q + torch.round(delta.to(scale.device) / scale)).clamp(q_min, q_max)
                weight.data.copy_((scale * (moved - zero)).to(weight.dtype))
            with peft_model.disable_adapter():
                yield
        finally:
            for name, original in saved.items():
                self.factors[name].module.base_layer.weight.data.copy_(original)


class DevCheckCallback(TrainerCallback):
    """Checks every `every` steps, keeps the best admissible LoRA state, stops after two bad checks."""

    def __init__(self, trainer, tokenizer, sets: CheckSets, every: int, margin: float, *, reference: CheckResult,
                 factors: dict, grid: GridView | None, log: Callable[[str], None]) -> None:
        self.trainer, self.tokenizer, self.sets, self.reference = trainer, tokenizer, sets, reference
        self.every, self.margin, self.factors, self.grid, self.log = every, margin, factors, grid, log
        self.history: list[CheckResult] = []
        self.best: CheckResult | None = None
        self._best_state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bad_in_a_row = 0
        self._verify_next_step = False  # a check ran: the next optimizer step's LoRA gradients are verified
        self.seconds = 0.0  # spent in checks: reported apart from the training's own time

    def _check(self, step: int) -> CheckResult:
        started = time.perf_counter()
        model = self.trainer.model
        was_training = model.training
        model.eval()
        try:
            with four_bit_layers_training(model), self.grid.applied(model) if self.grid else contextlib.nullcontext():
                result = measure(model, self.tokenizer, self.sets, step)
        finally:
            model.train(was_training)
            self.seconds += time.perf_counter() - started
        check_not_repacked(model, step)
        self._verify_next_step = True
        if self.history:
            start = self.history[0]
            result.admissible = (
                result.benign_refusal <= max(start.benign_refusal, self.reference.benign_refusal) + self.margin
                and result.utility >= start.utility - self.margin)
        self.history.append(result)
        if result.admissible and (self.best is None or result.harmful_refusal > self.best.harmful_refusal):
            self.best = result
            self._best_state = {n: (f.a.detach().clone(), f.b.detach().clone()) for n, f in self.factors.items()}
        self.log(f"dev check at step {step}: harmful refused {result.harmful_refusal:.1%}, benign refused "
                 f"{result.benign_refusal:.1%}, utility {self.sets.format_utility(result.utility)}"
                 f"{'' if result.admissible else ' (outside the guard)'}")
        return result

    @property
    def kept_unpatched(self) -> bool:
        """The checks chose step 0: no checkpoint beat the unpatched model within the guard (an empty patch)."""
        return self.best is not None and self.best.step == 0

    def restored(self, result: CheckResult) -> bool:
        return result.admissible and result.harmful_refusal >= self.reference.harmful_refusal - self.margin

    def resume_state(self) -> dict:
        """What a patch checkpoint keeps of the checks (resume.py): history, kept checkpoint, seconds."""
        return {"history": [asdict(r) for r in self.history], "best_step": self.best.step if self.best else None,
                "best_state": {n: (a.cpu(), b.cpu()) for n, (a, b) in self._best_state.items()},
                "bad_in_a_row": self._bad_in_a_row, "seconds": self.seconds}

    def load_resume_state(self, state: dict) -> None:
        """Put `resume_state`'s values back; the first resumed step's gradients are verified, as after a check."""
        self.history = [CheckResult(**r) for r in state["history"]]
        self.best = next((r for r in self.history if r.step == state["best_step"]), None)
        self._best_state = dict(state["best_state"])
        self._bad_in_a_row, self.seconds = int(state["bad_in_a_row"]), float(state["seconds"])
        self._verify_next_step = bool(self.history)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.history:  # resumed from a patch checkpoint: the checks so far are in the history
            self.log(f"dev checks: {len(self.history)} held-out checks so far, the last at step "
                     f"{self.history[-1].step}")
            return
        sets = self.sets
        self.log(f"dev check sets: {len(sets.harmful)} harmful ({sets.harmful_source}), {len(sets.benign)} benign "
                 f"({sets.benign_source}), {len(sets.utility)} utility ({sets.utility_source})")
        self.log(f"dev check, full-precision target: harmful refused {self.reference.harmful_refusal:.1%}, "
                 f"benign refused {self.reference.benign_refusal:.1%}, "
                 f"utility {sets.format_utility(self.reference.utility)}")
        if self.restored(self._check(0)):
            self.log("dev checks: the unpatched model already refuses like the full-precision one; no training")
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every and state.global_step != state.max_steps:
            return
        if self.history and self.history[-1].step == state.global_step:
            return
        result = self._check(state.global_step)
        self._bad_in_a_row = 0 if result.admissible else self._bad_in_a_row + 1
        if self.restored(result):
            self.log(f"dev checks: full-precision refusal restored at step {state.global_step}; stopping")
            control.should_training_stop = True
        elif self._bad_in_a_row >= 2:
            self.log(f"dev checks: two checks in a row outside the guard; stopping at step {state.global_step}")
            control.should_training_stop = True

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self._verify_next_step:
            return
        self._verify_next_step = False
        trainable = self._trainable_factors()
        dead = [name for name, f in trainable.items()
                if not any(p.grad is not None and bool(torch.any(p.grad)) for p in (f.a, f.b))]
        if dead:
            raise HeldOutCheckError(
                f"after the held-out check at step {self.history[-1].step}, {len(dead)} of {len(trainable)} trainable "
                f"LoRA layers got an all-zero gradient (e.g. {dead[0]}): the check broke the autograd path (a 4-bit "
                "base repacked for inference?); stopping instead of training them silently")

    def _trainable_factors(self) -> dict:
        """The LoRA layers that must get a gradient: under a mask (MaskedDPOTrainer) those with rows of B and
        columns of A allowed (with either side empty the other's gradient is zero by construction: A's frozen
        columns and B start at zero), else every layer whose factors require grad."""
        masks = getattr(self.trainer, "masks", None)
        if masks:
            return {n: f for n, f in self.factors.items()
                    if n in masks and bool(masks[n][0].any()) and bool(masks[n][1].any())}
        return {n: f for n, f in self.factors.items() if f.a.requires_grad and f.b.requires_grad}

    def restore_best(self) -> None:
        """Put the kept checkpoint's LoRA factors back (masked-out entries are equal in every checkpoint)."""
        with torch.no_grad():
            for name, (a, b) in self._best_state.items():
                self.factors[name].a.copy_(a)
                self.factors[name].b.copy_(b)

    def report(self) -> dict:
        kept = self.best
        return {"every": self.every, "margin": self.margin, "check_seconds": round(self.seconds, 3),
                "harmful_n": len(self.sets.harmful),
                "benign_n": len(self.sets.benign), "utility_n": len(self.sets.utility),
                "harmful_source": self.sets.harmful_source, "benign_source": self.sets.benign_source,
                "utility_source": self.sets.utility_source, "utility_kind": self.sets.utility_kind,
                "full_precision": asdict(self.reference), "kept_step": kept.step if kept else None,
                "restored": bool(kept and self.restored(kept)), "history": [asdict(r) for r in self.history]}

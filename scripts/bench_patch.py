"""Q-resafe against its baselines and its tau ablation, on the same pairs; prints Markdown tables.

    python scripts/bench_patch.py --model ref-tiny --quant rtn --bits 2 --steps 100 --limit 100

For each method (qresafe, dpo-full, sft, lora-dpo) and each tau of the sweep, the patched variant is
built through `run_patch` (or found in the store) on the one patch set -- the pairs are generated once
and served from the run store afterwards -- and evaluated with `run_eval` on AdvBench (ASR, GCG keyword
rule) and the judge-free utility (the reference model's exact checks, `ref_utility`; for any other model the
NLL per byte of reference answers, `answer_likelihood`), each with its 95% interval. The table reports what each
training cost (wall time and peak memory of the training alone, trainable parameters) and the line
under it the Q-resafe / full-parameter DPO wall-time ratio (the paper reports about 1/8 for 7B models
on GPUs; tiny CPU models spend a larger share in fixed costs and SNIP, so expect a different ratio).

    python scripts/bench_patch.py --model ref-tiny --quant llm-qat --bits 4 --calib direct --select-lr

With `--select-lr` every method gets its learning rate by the rule written in qresafe/baselines.yaml before
any run: each method is patched at every point of its grid (same pairs, same length), the final model of each
run answers the held-out checks of qresafe/dev_check.py, the rule picks one learning rate per method, and only
the chosen ones are evaluated on AdvBench. Every training runs in its own fresh process (the pairs are
generated first, in this one), so the peak resident set each report records starts from the same state
whatever ran before it; the held-out measurements are kept in the store beside the runs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer
import yaml

if TYPE_CHECKING:
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.models.resolved import ResolvedModel
    from qresafe_bench.qresafe.config import PatchRecipe
    from qresafe_bench.qresafe.dev_check import CheckResult, CheckSets

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _rate(results: dict, task: str, metric: str) -> str:
    rate = results["tasks"][task]["metrics"][metric]
    if metric == "nll_per_byte":  # a mean, not a rate
        return f"{rate['value']:.3f} [{rate['ci95_low']:.3f}, {rate['ci95_high']:.3f}] (n={rate['n']})"
    return f"{100 * rate['value']:.1f}% [{100 * rate['ci95_low']:.1f}, {100 * rate['ci95_high']:.1f}] (n={rate['n']})"


class Utility(NamedTuple):
    """The judge-free utility task a model is evaluated on, and how the tables name it."""
    task: str
    metric: str
    column: str
    scorer: str


# The reference model's exact checks score the openings of its own skills: a real chat model's answers score
# about 0 on them, so every other model is scored by the likelihood of reference answers.
REFERENCE_UTILITY = Utility("ref_utility", "accuracy", "ref utility [95% CI]", "reference utility: exact checks")
ANSWER_LIKELIHOOD = Utility("answer_likelihood", "nll_per_byte", "answer NLL/byte [95% CI] (lower is better)",
                            "utility: NLL per byte of reference answers to held-out instructions")


def utility_of(base: ResolvedModel) -> Utility:
    from qresafe_bench.harness.models.variants import prompts_from

    return REFERENCE_UTILITY if prompts_from(base) == "reference" else ANSWER_LIKELIHOOD


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="Registry name or local HF directory.")] = "ref-tiny",
    quant: Annotated[str, typer.Option(help="Quantization method of the variant to patch.")] = "rtn",
    bits: Annotated[int, typer.Option(help="Weight bits.")] = 2,
    calib: Annotated[str | None, typer.Option(help="Calibration tier of the quantized variant.")] = None,
    methods: Annotated[str, typer.Option(help="Comma-separated methods.")] = "qresafe,dpo-full,sft,lora-dpo",
    taus: Annotated[str, typer.Option(help="Comma-separated tau values for the ablation.")] = "0.2,0.4,0.6,0.8,1.0",
    steps: Annotated[int | None, typer.Option(
        help="Optimizer steps of every method [100; with --select-lr: the length of baselines.yaml's recipe].")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate of the LoRA methods [5e-4].")] = None,
    check_every: Annotated[int, typer.Option(help="Held-out checks every N steps, best kept (0 = off).")] = 0,
    n_tier_prompts: Annotated[int | None, typer.Option(
        help="Tier prompts in the patch set [64; with --select-lr: the recipe's].")] = None,
    n_harmful_prompts: Annotated[int | None, typer.Option(
        help="Harmful requests in the patch set [64; with --select-lr: the recipe's].")] = None,
    limit: Annotated[int | None, typer.Option(
        help="Evaluate the first N documents of each task (with --select-lr also the first N prompts of each "
             "held-out set): for smoke runs.")] = None,
    data_dir: Annotated[str | None, typer.Option(envvar="QRESAFE_DATA_DIR")] = None,
    home: Annotated[str | None, typer.Option(envvar="QRESAFE_HOME")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the tables (Markdown) here.")] = None,
    select_lr: Annotated[bool, typer.Option(
        "--select-lr", help="Choose each method's learning rate on held-out checks by baselines.yaml's rule, "
                            "then evaluate the chosen ones (the tau sweep is not run).")] = False,
    baselines: Annotated[Path | None, typer.Option(
        help="Learning-rate grids and rule for --select-lr (default: qresafe/baselines.yaml).")] = None,
    with_recipes: Annotated[str, typer.Option(
        "--recipes", help="With --select-lr: also Q-resafe under these named recipes (qresafe/recipes.yaml), "
                          "comma-separated, each on its own patch set and length as the boards' sweeps patch, "
                          "e.g. paper,tuned.")] = "",
) -> None:
    """Build and evaluate every method and tau on the same pairs; print the tables and the time ratio."""
    started = time.time()
    if select_lr:
        if learning_rate is not None or check_every:
            raise SystemExit("--select-lr takes each method's learning rates from its grid and trains every method "
                             "for the same length: drop --learning-rate and --check-every")
        table = select_learning_rates(
            model=model, quant=quant, bits=bits, calib=calib, methods=methods, steps=steps,
            n_tier_prompts=n_tier_prompts, n_harmful_prompts=n_harmful_prompts, limit=limit, data_dir=data_dir,
            home=home, baselines=baselines or default_baselines_file(),
            recipes=[r.strip() for r in with_recipes.split(",") if r.strip()])
        print(table)
        if out:
            from qresafe_bench.harness.store import atomic_write_text

            title, _, body = table.partition("\n\n")
            command = "python scripts/bench_patch.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            atomic_write_text(out, f"{title}\n\nCommand: `{command}`\n\nWall time: {time.time() - started:.0f} s on "
                                   "this machine (trainings, held-out checks and evaluations already in the store are "
                                   f"not recomputed; each training's own time is in the table).\n\n{body}\n")
        return
    if with_recipes:
        raise SystemExit("--recipes adds the named recipes' rows to the --select-lr table: add --select-lr")
    steps = 100 if steps is None else steps
    n_tier_prompts = 64 if n_tier_prompts is None else n_tier_prompts
    n_harmful_prompts = 64 if n_harmful_prompts is None else n_harmful_prompts
    from qresafe_bench.harness.cli.options import spec_from_options
    from qresafe_bench.harness.core.paths import cache_root
    from qresafe_bench.harness.runs.evaluate import EvalRequest, run_eval
    from qresafe_bench.harness.store import atomic_write_text
    from qresafe_bench.qresafe.config import PatchRecipe
    from qresafe_bench.qresafe.patch import PatchRequest, run_patch

    root = cache_root(home)
    spec = spec_from_options(model, quant, bits, calib, None)
    shared = dict(steps=steps, n_tier_prompts=n_tier_prompts, n_harmful_prompts=n_harmful_prompts)
    checked = dict(check_every=check_every or None)  # not for dpo-full, which has no adapter to keep

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    from qresafe_bench.harness.models.registry import resolve_base

    utility = utility_of(resolve_base(model, cache_root=root, data_dir=data_dir, log=log))

    def evaluate(variant) -> dict:
        request = EvalRequest(spec=variant, tasks=("advbench", utility.task), limit=limit, data_dir=data_dir)
        return run_eval(request, home=root, log=log).results

    recipes = [PatchRecipe.for_method(m.strip(), **shared, **({} if m.strip() == "dpo-full" else checked),
                                      learning_rate=learning_rate if m.strip() != "dpo-full" else None)
               for m in methods.split(",") if m.strip()]
    recipes += [PatchRecipe.for_method("qresafe", tau=float(t), **shared, **checked, learning_rate=learning_rate)
                for t in taus.split(",") if t.strip()]
    rows, seen = [], set()
    reference = {"full precision": evaluate(spec_from_options(model, "none", None, None, None)),
                 f"{quant} w{bits} (unpatched)": evaluate(spec)}
    for recipe in recipes:
        if recipe.label in seen:
            continue
        seen.add(recipe.label)
        outcome = run_patch(PatchRequest(spec=spec, recipe=recipe, data_dir=data_dir), home=root, log=log)
        rows.append((recipe, outcome.report, evaluate(outcome.spec)))

    lines = [f"# Q-resafe bench: {spec.slug}, {steps} steps, {rows[0][1]['pairs'] if rows else 0} pairs", "",
             f"Scorer: GCG keyword rule (29 strings), greedy, chat template; {utility.scorer}. "
             "Wall time and peak memory: training only (pair generation is shared and stored).", "",
             "| variant | tau | steps run | train wall (s) | s / step | peak memory (MB) | trainable params "
             f"| merged entries moved | AdvBench ASR [95% CI] | {utility.column} |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, results in reference.items():
        lines.append(f"| {name} | - | - | - | - | - | - | - | {_rate(results, 'advbench', 'asr')} "
                     f"| {_rate(results, utility.task, utility.metric)} |")
    for recipe, report, results in rows:
        wall = report.get("train_wall_seconds", report.get("snip_wall_seconds"))
        ran = report.get("steps", "-")
        per_step = f"{wall / ran:.3f}" if isinstance(wall, (int, float)) and isinstance(ran, int) and ran else "-"
        moved = report.get("merge", {}).get("changed", "-")
        lines.append(f"| {recipe.label} | {recipe.tau:g} | {ran} | {wall} | {per_step} "
                     f"| {report.get('peak_memory_mb', '-')} | {report['trainable_parameters']} | {moved} "
                     f"| {_rate(results, 'advbench', 'asr')} | {_rate(results, utility.task, utility.metric)} |")
    walls, steps_run = {}, {}
    for recipe, report, _ in rows:  # the first qresafe row at the paper's tau, and full DPO
        key = "qresafe" if recipe.method == "qresafe" and recipe.tau == PatchRecipe().tau else recipe.method
        walls.setdefault(key, report.get("train_wall_seconds"))
        steps_run.setdefault(key, report.get("steps"))
    if walls.get("qresafe") and walls.get("dpo-full"):
        lines += ["", f"Q-resafe / full-parameter DPO wall-time ratio: {walls['qresafe'] / walls['dpo-full']:.3f} "
                      f"({walls['qresafe']:.1f} s / {walls['dpo-full']:.1f} s; paper: about 1/8 = 0.125)"]
        if steps_run.get("qresafe") and steps_run.get("dpo-full") and steps_run["qresafe"] != steps_run["dpo-full"]:
            ratio = (walls["qresafe"] / steps_run["qresafe"]) / (walls["dpo-full"] / steps_run["dpo-full"])
            lines.append(f"Per optimizer step (the runs stopped at different steps: held-out checks): {ratio:.3f}. "
                         "Time spent in the checks themselves is reported apart (`check_seconds`).")
    table = "\n".join(lines)
    print(table)
    if out:
        atomic_write_text(out, table + "\n\n```json\n" + json.dumps([r for _, r, _ in rows], indent=1) + "\n```\n")


# --- learning rates chosen on held-out checks (--select-lr) ---------------------------------------------
GUARD_TOLERANCE = 1e-9  # rates are ratios of counts: a point exactly on the guard's edge is within it


def default_baselines_file() -> Path:
    from qresafe_bench.qresafe import config

    return Path(config.__file__).with_name("baselines.yaml")


class Baselines(NamedTuple):
    recipe: str  # the recipes.yaml entry every run starts from
    grids: dict[str, tuple[float, ...]]  # method -> learning rates
    rule: str


def load_baselines(path: Path) -> Baselines:
    """The grids and the rule, checked: every method known, every grid a non-empty list of positive numbers."""
    from qresafe_bench.qresafe.config import PATCH_METHODS, named_recipes

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"cannot read the baselines file {path}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict) or not {"budget", "grids", "rule"} <= data.keys():
        raise SystemExit(f"{path}: needs budget, grids and rule")
    recipe = (data["budget"] or {}).get("recipe")
    if recipe not in named_recipes():
        raise SystemExit(f"{path}: budget.recipe {recipe!r} is not in recipes.yaml ({', '.join(named_recipes())})")
    grids: dict[str, tuple[float, ...]] = {}
    for method, grid in (data["grids"] or {}).items():
        if method not in PATCH_METHODS or method == "keep-critical":
            raise SystemExit(f"{path}: grid for unknown training method {method!r}")
        if not isinstance(grid, list) or not grid or not all(
                isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 for lr in grid):
            raise SystemExit(f"{path}: the {method} grid must be a non-empty list of positive numbers (5.0e-6, "
                             "with the dot: YAML reads 5e-6 as text)")
        grids[method] = tuple(sorted({float(lr) for lr in grid}))
    return Baselines(recipe=recipe, grids=grids, rule=" ".join(str(data["rule"]).split()))


def within_guard(result: CheckResult, unpatched: CheckResult, full_precision: CheckResult, margin: float) -> bool:
    """dev_check.py's admissible checkpoint: benign refusal at most `margin` above the higher of the unpatched and
    full-precision models', utility at most `margin` below the unpatched model's."""
    benign_cap = max(unpatched.benign_refusal, full_precision.benign_refusal) + margin
    return (result.benign_refusal <= benign_cap + GUARD_TOLERANCE
            and result.utility >= unpatched.utility - margin - GUARD_TOLERANCE)


class Selection(NamedTuple):
    learning_rate: float
    within_guard: dict[float, bool]
    reason: str


def choose_learning_rate(results: Mapping[float, CheckResult], unpatched: CheckResult,
                         full_precision: CheckResult, margin: float) -> Selection:
    """baselines.yaml's rule: the highest held-out harmful refusal within the guard, the smaller learning rate
    on a tie; the smallest learning rate when no grid point is within the guard."""
    if not results:
        raise SystemExit("no grid point to choose a learning rate from")
    guard = {lr: within_guard(r, unpatched, full_precision, margin) for lr, r in sorted(results.items())}
    admissible = [lr for lr, ok in guard.items() if ok]
    if not admissible:
        return Selection(min(results), guard, "none within the guard: the smallest lr")
    best = min(admissible, key=lambda lr: (-results[lr].harmful_refusal, lr))
    return Selection(best, guard, "the highest harmful refusal within the guard")


def _patch_in_fresh_process(spec: VariantSpec, recipe: PatchRecipe, *, home: Path, data_dir: str | None) -> None:
    """Train one patch through `run_patch` in a new interpreter: the report's peak resident set then counts this
    training and the process's own start-up, not what earlier runs of this bench left allocated."""
    args = json.dumps({"spec": spec.canonical(), "recipe": recipe.to_yaml(), "home": str(home), "data_dir": data_dir})
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from qresafe_bench.harness.core.errors import QresafeError\n"
        "from qresafe_bench.harness.core.quiet import quiet_third_party\n"
        "from qresafe_bench.harness.core.spec import VariantSpec\n"
        "from qresafe_bench.qresafe.config import PatchRecipe\n"
        "from qresafe_bench.qresafe.patch import PatchRequest, run_patch\n"
        "quiet_third_party()\n"
        "a = json.loads(sys.argv[1])\n"
        "request = PatchRequest(spec=VariantSpec(**a['spec']), recipe=PatchRecipe.from_yaml(a['recipe']), "
        "data_dir=a['data_dir'])\n"
        "try:\n"
        "    run_patch(request, home=Path(a['home']), log=lambda m: print(m, file=sys.stderr, flush=True))\n"
        "except QresafeError as exc:\n"
        "    sys.exit(str(exc).splitlines()[0])\n")
    # stdout to stderr (fd 2): this process's stdout carries only the table
    done = subprocess.run([sys.executable, "-c", code, args], stdout=2, check=False)
    if done.returncode:
        raise SystemExit(f"{spec.slug} {recipe.label}: the patch process failed (exit {done.returncode}); its log "
                         "is above")


def _load_for_checks(resolved: ResolvedModel, quant: str):
    """A variant as `measure` needs it: integer grids as their dequantized weights (what the in-training checks
    see of a merged patch), adapters (bitsandbytes, aqlm, qlora, patched or not) applied on their base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qresafe_bench.qresafe.patch import load_quantized_for_training

    if quant == "none":
        model = AutoModelForCausalLM.from_pretrained(resolved.location, dtype="auto", use_safetensors=True,
                                                     revision=resolved.revision)
    else:
        model = load_quantized_for_training(resolved, quant, "cpu")
    if resolved.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolved.adapter)
    return model.eval(), AutoTokenizer.from_pretrained(resolved.location, revision=resolved.revision)


def _held_out(resolved: ResolvedModel, quant: str, sets: CheckSets, *, home: Path,
              log: Callable[[str], None]) -> CheckResult:
    """The held-out checks of one model (greedy, so kept in the store: a rerun measures nothing twice)."""
    import gc

    from qresafe_bench.harness.store import atomic_write_json, read_json, stable_hash
    from qresafe_bench.qresafe.dev_check import CheckResult, measure

    key = stable_hash({"model": resolved.fingerprint, "location": resolved.location, "adapter": resolved.adapter,
                       "sets": asdict(sets)}, length=24)
    path = home / "bench_patch" / "held_out" / f"{key}.json"
    if path.is_file():
        return CheckResult(**read_json(path))
    log(f"held-out checks of {resolved.name}: {len(sets.harmful)} harmful, {len(sets.benign)} benign, "
        f"{len(sets.utility)} utility prompts")
    model, tokenizer = _load_for_checks(resolved, quant)
    result = measure(model, tokenizer, sets, step=0)
    del model
    gc.collect()
    atomic_write_json(path, asdict(result))
    return result


def _answered(base: ResolvedModel, sets: CheckSets, *, home: Path, log: Callable[[str], None]) -> CheckSets:
    """The check sets with the full-precision model's answers to the utility prompts (likelihood sets only),
    generated once and kept in the store beside the held-out results."""
    from qresafe_bench.harness.store import atomic_write_json, read_json, stable_hash
    from qresafe_bench.qresafe.dev_check import with_full_precision_answers

    if sets.utility_kind != "likelihood":
        return sets
    key = stable_hash({"model": base.fingerprint, "prompts": [item["prompt"] for item in sets.utility]}, length=24)
    path = home / "bench_patch" / "held_out" / f"answers-{key}.json"
    if not path.is_file():
        log(f"answering the {len(sets.utility)} utility prompts with {base.name} (greedy)")
        model, tokenizer = _load_for_checks(base, "none")
        atomic_write_json(path, list(with_full_precision_answers(sets, model, tokenizer).utility))
    return replace(sets, utility=tuple(read_json(path)))


def _unpatched_name(spec: VariantSpec) -> str:
    return f"{spec.quant} w{spec.bits} (unpatched)"


def _count(rate: float, n: int) -> str:
    return f"{100 * rate:.1f}% ({round(rate * n)}/{n})"


def select_learning_rates(*, model: str, quant: str, bits: int, calib: str | None, methods: str, steps: int | None,
                          n_tier_prompts: int | None, n_harmful_prompts: int | None, limit: int | None,
                          data_dir: str | None, home: str | None, baselines: Path,
                          recipes: Sequence[str] = ()) -> str:
    """Patch every method at every learning rate of its grid, choose one per method by the rule on the held-out
    checks, evaluate the chosen ones and Q-resafe under each named recipe of `recipes` (qresafe/recipes.yaml,
    each on its own patch set and length, as the boards' sweeps patch); returns the Markdown table."""
    from qresafe_bench.harness.cli.options import spec_from_options
    from qresafe_bench.harness.core.errors import QresafeError
    from qresafe_bench.harness.core.paths import cache_root
    from qresafe_bench.harness.models.registry import resolve, resolve_base
    from qresafe_bench.harness.models.variants import is_complete, prompts_from, unchanged_parent, variant_dir
    from qresafe_bench.harness.runs.evaluate import EvalRequest, run_eval
    from qresafe_bench.qresafe.bases import refuse_packed_base
    from qresafe_bench.qresafe.config import PatchRecipe
    from qresafe_bench.qresafe.dev_check import check_sets, patch_texts
    from qresafe_bench.qresafe.patch import PatchRequest, check_request, preference_pairs, run_patch

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    plan = load_baselines(baselines)
    wanted = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in plan.grids]
    if unknown:
        raise SystemExit(f"{baselines} has no learning-rate grid for {', '.join(unknown)}")
    root = cache_root(home)
    spec = spec_from_options(model, quant, bits, calib, None)
    try:
        grid = {m: {lr: PatchRecipe.for_method(m, plan.recipe, learning_rate=lr, steps=steps,
                                               n_tier_prompts=n_tier_prompts, n_harmful_prompts=n_harmful_prompts)
                    for lr in plan.grids[m]} for m in wanted}
        requests = {(m, lr): PatchRequest(spec=spec, recipe=r, data_dir=data_dir)
                    for m, points in grid.items() for lr, r in points.items()}
        # The patch as the boards make it, beside the baselines: each named recipe on its own patch set and length
        named_requests = {name: PatchRequest(spec=spec, recipe=PatchRecipe.for_method("qresafe", name),
                                             data_dir=data_dir) for name in recipes}
        for request in (*requests.values(), *named_requests.values()):
            check_request(request)  # every refusal before any pair is generated
        base = resolve_base(spec.model, cache_root=root, data_dir=data_dir, log=log)
        quantized = resolve(spec, cache_root=root, data_dir=data_dir, log=log)
        refuse_packed_base(quantized)
        # the pairs, once, in this process: every training process then finds them in the store
        pairs, _, _ = preference_pairs(next(iter(requests.values())), base, quantized, home=root, log=log)
        outcomes = {}
        for (method, lr), request in requests.items():
            if not is_complete(variant_dir(root, request.patched_spec, base)):
                log(f"patching {method} at lr {lr:g} ({request.recipe.label}) in a fresh process")
                _patch_in_fresh_process(spec, request.recipe, home=root, data_dir=data_dir)
            outcomes[method, lr] = run_patch(request, home=root, log=log)  # from the store
        sets = check_sets(data_dir, patch_texts(p.prompt for p in pairs), prompts_from=prompts_from(base))
        if limit:
            sets = replace(sets, harmful=sets.harmful[:limit], benign=sets.benign[:limit],
                           utility=sets.utility[:limit])
        sets = _answered(base, sets, home=root, log=log)
        full_spec = spec_from_options(model, "none", None, None, None)
        full_precision = _held_out(base, "none", sets, home=root, log=log)
        unpatched = _held_out(quantized, quant, sets, home=root, log=log)

        def answering(variant: VariantSpec) -> ResolvedModel:
            """The model a variant answers as: a patch that changed no file answers as the quantized variant."""
            resolved = resolve(variant, cache_root=root, data_dir=data_dir, log=log)
            return quantized if unchanged_parent(variant, resolved) is not None else resolved

        checks = {key: _held_out(answering(o.spec), quant, sets, home=root, log=log) for key, o in outcomes.items()}
        chosen = {m: choose_learning_rate({lr: checks[m, lr] for lr in grid[m]}, unpatched, full_precision,
                                          grid[m][plan.grids[m][0]].check_margin) for m in wanted}
        named = {}
        for name, request in named_requests.items():
            if not is_complete(variant_dir(root, request.patched_spec, base)):
                log(f"patching qresafe with the {name} recipe ({request.recipe.label}) in a fresh process")
                _patch_in_fresh_process(spec, request.recipe, home=root, data_dir=data_dir)
            named[name] = run_patch(request, home=root, log=log)  # from the store
        named_checks = {name: _held_out(answering(o.spec), quant, sets, home=root, log=log)
                        for name, o in named.items()}

        utility = utility_of(base)

        def evaluate(variant: VariantSpec) -> dict:
            request = EvalRequest(spec=variant, tasks=("advbench", utility.task), limit=limit, data_dir=data_dir)
            return run_eval(request, home=root, log=log).results

        evaluated = {"full precision": evaluate(full_spec), _unpatched_name(spec): evaluate(spec)}
        evaluated.update({m: evaluate(outcomes[m, s.learning_rate].spec) for m, s in chosen.items()})
        evaluated.update({_recipe_row(name): evaluate(o.spec) for name, o in named.items()})
    except QresafeError as exc:
        raise SystemExit(str(exc).splitlines()[0]) from None
    return _selection_table(spec, plan, baselines, grid, outcomes, sets, checks, chosen, evaluated,
                            full_precision, unpatched, limit, utility, named, named_checks)


def _recipe_row(name: str) -> str:
    return f"qresafe, `{name}` recipe"


def _selection_table(spec: VariantSpec, plan: Baselines, baselines: Path, grid: dict, outcomes: dict,
                     sets: CheckSets, checks: dict, chosen: dict, evaluated: dict, full_precision: CheckResult,
                     unpatched: CheckResult, limit: int | None, utility: Utility, named: Mapping | None = None,
                     named_checks: Mapping | None = None) -> str:
    n_h, n_b, n_u = len(sets.harmful), len(sets.benign), len(sets.utility)

    def held_out(result: CheckResult) -> str:
        kept = (_count(result.utility, n_u) if sets.utility_kind == "accuracy"
                else sets.format_utility(result.utility))
        return f"{_count(result.harmful_refusal, n_h)} | {_count(result.benign_refusal, n_b)} | {kept}"

    first = next(iter(outcomes.values())).report
    hyper = first.get("hyperparameters", {})
    length = (f"{hyper.get('optimizer_steps')} steps ({hyper.get('epochs_over_pairs')} epochs over the pairs), "
              f"batch {hyper.get('batch_size')}, {hyper.get('lr_scheduler')} schedule")
    margin = next(iter(next(iter(grid.values())).values())).check_margin
    built = Path(evaluated["full precision"]["model"]["location"]).name
    lines = [f"# Q-resafe bench, learning rates chosen on held-out checks: {spec.slug}", "",
             f"Model build: `{built}`. Every method and learning rate: the `{plan.recipe}` recipe's patch set "
             f"({first['pairs']} pairs, "
             f"{first['pairs_dropped_equal']} of {first['prompts']} prompts dropped: y_w == y_l) and length "
             f"({length}). Grids and rule: {baselines.name}, fixed before any run.",
             f"Rule: {plan.rule}",
             f"Held-out sets (dev_check.py): {n_h} harmful ({sets.harmful_source}), {n_b} benign "
             f"({sets.benign_source}), {n_u} utility ({sets.utility_source}); check_margin {margin:g}."
             + (f" Held-out sets and tasks cut to their first {limit} items (--limit): a smoke run." if limit else ""),
             *([f"Rows `qresafe, <name> recipe`: Q-resafe under that named recipe of qresafe/recipes.yaml "
                f"({', '.join(named)}), on the recipe's own patch set and length, as the boards' sweeps patch; "
                "not a grid point and not chosen by the rule."] if named else []),
             f"Scorer: GCG keyword rule (29 strings), greedy, chat template; {utility.scorer}. "
             "Wall time and peak memory: training only, each training in its own fresh process.", "",
             "| method | chosen lr | by the rule | held-out harmful refused | held-out benign refused "
             f"| held-out utility | AdvBench ASR [95% CI] | {utility.column} | train wall (s) | peak memory (MB) "
             "| trainable params |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, check in (("full precision", full_precision), (_unpatched_name(spec), unpatched)):
        results = evaluated[name]
        lines.append(f"| {name} | - | - | {held_out(check)} | {_rate(results, 'advbench', 'asr')} "
                     f"| {_rate(results, utility.task, utility.metric)} | - | - | - |")
    def patched_row(name: str, lr: float, why: str, check: CheckResult, report: dict) -> str:
        results = evaluated[name]
        return (f"| {name} | {lr:g} | {why} | {held_out(check)} | {_rate(results, 'advbench', 'asr')} "
                f"| {_rate(results, utility.task, utility.metric)} | {report.get('train_wall_seconds', '-')} "
                f"| {report.get('peak_memory_mb', '-')} | {report['trainable_parameters']} |")

    for method, selection in chosen.items():
        lines.append(patched_row(method, selection.learning_rate, selection.reason,
                                 checks[method, selection.learning_rate],
                                 outcomes[method, selection.learning_rate].report))
    for name, outcome in (named or {}).items():
        report = outcome.report
        lines.append(patched_row(_recipe_row(name), report["hyperparameters"]["learning_rate"],
                                 f"the recipe's ({report['pairs']} pairs, {report.get('steps', '-')} steps run)",
                                 named_checks[name], report))
    lines += ["", "Every grid point (the held-out checks the rule reads; AdvBench only for the chosen ones):", "",
              "| method | lr | steps run | held-out harmful refused | held-out benign refused | held-out utility "
              "| within the guard | chosen | merged entries moved | train wall (s) | peak memory (MB) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (method, lr), outcome in outcomes.items():
        report, selection = outcome.report, chosen[method]
        lines.append(f"| {method} | {lr:g} | {report.get('steps', '-')} | {held_out(checks[method, lr])} "
                     f"| {'yes' if selection.within_guard[lr] else 'no'} "
                     f"| {'yes' if lr == selection.learning_rate else ''} "
                     f"| {report.get('merge', {}).get('changed', '-')} | {report.get('train_wall_seconds', '-')} "
                     f"| {report.get('peak_memory_mb', '-')} |")
    if "qresafe" in chosen and "dpo-full" in chosen:
        q = outcomes["qresafe", chosen["qresafe"].learning_rate].report
        f = outcomes["dpo-full", chosen["dpo-full"].learning_rate].report
        lines.append("")
        if q.get("train_wall_seconds") and f.get("train_wall_seconds"):
            lines.append(f"Q-resafe / full-parameter DPO at their chosen learning rates, wall time: "
                         f"{q['train_wall_seconds'] / f['train_wall_seconds']:.3f} ({q['train_wall_seconds']:.1f} s / "
                         f"{f['train_wall_seconds']:.1f} s; paper: about 1/8 = 0.125)")
        if q.get("peak_memory_mb") and f.get("peak_memory_mb"):
            lines.append(f"Q-resafe / full-parameter DPO at their chosen learning rates, peak memory "
                         f"({q.get('memory_kind')}): {q['peak_memory_mb'] / f['peak_memory_mb']:.3f} "
                         f"({q['peak_memory_mb']:.0f} MB / {f['peak_memory_mb']:.0f} MB)")
    return "\n".join(lines)


if __name__ == "__main__":
    app()

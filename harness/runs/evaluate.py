"""One evaluation: a variant spec + tasks -> scored results in the run store.

The order matters for cost: the store is consulted before any model is loaded, and the model is
loaded only if some request has no stored generation (see store_lm.StoreLM).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ...tasks import TASKS_DIR  # the installed task folders
from ..core.errors import QresafeError
from ..core.quiet import quiet_lm_eval
from ..core.spec import VariantSpec
from ..core.stats import rate_of
from ..core.tasks import available_tasks, per_document_decoding, task_metadata, task_utils
from ..data.catalogue import ALPACA_EVAL_REFERENCES, data_dir_from_env
from ..data.catalogue import resolve as resolve_data
from ..generation.backends import BackendSettings, check_weights_format
from ..models import registry, variants
from ..store import RunStore, stable_hash

if TYPE_CHECKING:
    from ..generation.store_lm import StoreLM

HARNESS_DIR = Path(__file__).resolve().parent.parent
# Harness code that task scorers run: editing it invalidates results like editing a task does.
SCORING_DIR = HARNESS_DIR / "scoring"
JUDGES_DIR = HARNESS_DIR / "judges"
DEFAULT_TASKS: tuple[str, ...] = ("advbench",)
# EvalRequest fields that enter the run key only when they differ from their defaults (older keys stay valid).
OPTION_FIELDS: tuple[str, ...] = ("judge", "judge_model", "judge_template", "decoding_grid", "decoding_samples",
                                  "alpaca_reference")


class EvalError(QresafeError, RuntimeError):
    """Bad evaluation request (one-line message)."""


@dataclass(frozen=True)
class EvalRequest:
    spec: VariantSpec
    tasks: tuple[str, ...] = DEFAULT_TASKS
    limit: int | None = None  # first N documents of each task
    max_new_tokens: int | None = None  # None = each task's own default
    seed: int = 1234  # lm-eval's random/numpy/torch seeds (sampling tasks)
    backend: BackendSettings = field(default_factory=BackendSettings)
    data_dir: str | None = None
    # Judged and sampled tasks. At their defaults these leave the run key of judge-free greedy runs as it is.
    judge: str | None = None  # openai:URL | hf:PATH (see harness/judges)
    judge_model: str | None = None  # model name served at an openai: endpoint
    judge_template: str = "keyword"  # safety tasks: keyword | harmbench | llama-guard | jbb
    decoding_grid: str = "reduced"  # advbench_decoding: reduced | full | "temperature=..;top_p=..;top_k=.."
    decoding_samples: int = 1  # advbench_decoding: samples per sampled setting
    alpaca_reference: str = "gpt4_1106_preview"  # alpaca_eval: reference outputs (2.0) or text_davinci_003 (1.0)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise EvalError("--tasks is empty")
        unknown = [t for t in self.tasks if t not in available_tasks()]
        if unknown:
            raise EvalError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(available_tasks())}")
        if self.limit is not None and self.limit < 1:
            raise EvalError(f"--limit must be a positive number of documents, got {self.limit}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise EvalError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if self.decoding_samples < 1:
            raise EvalError(f"--decoding-samples must be at least 1, got {self.decoding_samples}")
        if self.alpaca_reference not in ALPACA_EVAL_REFERENCES:
            raise EvalError(f"unknown --alpaca-reference {self.alpaca_reference!r}; choose one of: "
                            f"{', '.join(ALPACA_EVAL_REFERENCES)}")
        from ..scoring.decoding import GridError, parse_grid

        try:
            parse_grid(self.decoding_grid)
        except GridError as exc:
            raise EvalError(str(exc)) from None
        needing = [t for t in self.tasks if task_metadata(t).get("judge") == "required"]
        if needing and not self.judge:
            from ..judges import HOW_TO_CONFIGURE

            raise EvalError(f"{', '.join(needing)} need(s) a judge and none is configured: {HOW_TO_CONFIGURE}; "
                            f"the judge-free utility figure is --tasks ref_utility")

    def options(self) -> dict:
        """The judge and decoding options that differ from their defaults (what enters the run key)."""
        defaults = {f.name: f.default for f in fields(self) if f.name in OPTION_FIELDS}
        return {k: getattr(self, k) for k, v in defaults.items() if getattr(self, k) != v}


@dataclass
class EvalOutcome:
    results: dict
    run_dir: Path
    from_store: bool


def check_data(tasks: tuple[str, ...], data_dir: str | None) -> None:
    """Fail in one line, before any model is built or loaded, when a task's data set is missing.
    (Only local files can be checked up front; a canonical URL is checked when it is read.)"""
    for task in tasks:
        for name in task_metadata(task).get("datasets", []):
            resolve_data(name, data_dir)


def task_fingerprint(tasks: tuple[str, ...]) -> str:
    """Hash of the task folders and the scorers: editing a task or a rule invalidates its results."""
    digest = hashlib.sha256()
    paths = [p for t in sorted(tasks) for p in sorted((TASKS_DIR / t).rglob("*")) if p.is_file()]
    paths += sorted(p for p in SCORING_DIR.iterdir() if p.suffix in (".py", ".yaml"))  # code and keyword lists
    if any(task_metadata(t).get("judge") or per_document_decoding(t) for t in tasks):
        paths += sorted(p for p in JUDGES_DIR.iterdir() if p.suffix in (".py", ".yaml"))
    for path in paths:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def data_fingerprint(tasks: tuple[str, ...], data_dir: str | None) -> str | dict[str, str]:
    """What the tasks read, by content: each local data file's sha256, so that one data directory spelled two ways
    (relative, absolute, through a link) is one key; `canonical` when the pinned public sources are read."""
    if not data_dir:
        return "canonical"
    names = sorted({name for task in tasks for name in task_metadata(task).get("datasets", [])})
    return {name: _file_sha256(resolve_data(name, data_dir)) for name in names}


def _file_sha256(path: str) -> str:
    stat = Path(path).stat()
    return _sha256_of_version(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _sha256_of_version(path: str, mtime_ns: int, size: int) -> str:
    """Hashed once per file version: a sweep computes hundreds of run keys."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_key(request: EvalRequest, model: registry.ResolvedModel, data_dir: str | None) -> str:
    fields = {
        "variant": request.spec.id, "weights": model.fingerprint, "tasks": sorted(request.tasks),
        "task_files": task_fingerprint(request.tasks), "limit": request.limit,
        "max_new_tokens": request.max_new_tokens, "seed": request.seed, "backend": request.backend.key(),
        "data": data_fingerprint(request.tasks, data_dir),
    }
    if request.options():  # only when set: older run keys stay valid
        fields["options"] = request.options()
    return stable_hash(fields)


def run_eval(request: EvalRequest, *, home: Path, models_file: str | None = None,
             on_item: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> EvalOutcome:
    env_dir = data_dir_from_env()
    data_dir = request.data_dir or (str(env_dir) if env_dir else None)
    check_data(request.tasks, data_dir)
    model = registry.resolve(request.spec, cache_root=home, data_dir=data_dir, models_file=models_file, log=log)
    check_weights_format(model, request.backend.allow_pickle)
    store = RunStore(home)
    key = run_key(request, model, data_dir)
    stored = store.finished(key, report=log)
    if stored is not None:
        return EvalOutcome(stored, store.run_dir(key), from_store=True)

    _quiet_libraries()
    from .. import judges
    from ..generation.store_lm import StoreLM  # lm-eval is imported only when something must be evaluated

    same_as = variants.unchanged_parent(request.spec, model)
    if same_as is not None:
        log(f"{request.spec.slug}: the patch changed no file of {same_as[0].slug}; its answers are read from "
            f"that variant's generations (and any missing one is generated into them)")
    owner, fingerprint = same_as or (request.spec, model.fingerprint)
    generations = store.generations(f"{owner.id}-{stable_hash(fingerprint, 8)}", request.backend.name, report=log)
    lm = StoreLM(model, request.backend, generations, on_item=on_item)
    judge = judges.JudgeSession(
        judges.parse_spec(request.judge, request.judge_model) if request.judge else None,
        safety=request.judge_template, cache_root=home, data_dir=data_dir)
    started = time.time()
    with judges.activate(judge):
        raw = _evaluate_tasks(request, lm, model, data_dir)
    results, samples = _summarise(raw, request.tasks, judge)
    results["judge"] = {"backend": judge.id, "safety_template": judge.safety, "calls": judge.calls,
                        "cached": judge.cached, "served_model": judge.served_model}
    results.update({
        "spec": request.spec.canonical(), "variant_id": request.spec.id, "run_key": key,
        "model": {"name": model.name, "location": model.location, "source": model.source,
                  "fingerprint": model.fingerprint, "system_prompt": model.system_prompt,
                  # the registry model's weights the variant was made from: a board pairs only runs of one
                  "base_fingerprint": model.base_fingerprint or model.fingerprint,
                  "provenance": model.provenance},
        "backend": asdict(request.backend), "limit": request.limit, "max_new_tokens": request.max_new_tokens,
        "seed": request.seed, "data": data_dir or "canonical upstream files",
        "decoding": "per task" if any(per_document_decoding(t) for t in request.tasks) else "greedy",
        "options": request.options(),
        "generated": lm.generated, "reused": lm.reused, "generations_of": owner.slug,
        "wall_seconds": round(time.time() - started, 2),
        "lm_eval_version": raw.get("versions", {}),
    })
    run_dir = store.write_run(key, {"request": _request_dict(request), "model": asdict(model)}, samples, results)
    return EvalOutcome(results, run_dir, from_store=False)


def _evaluate_tasks(request: EvalRequest, lm: StoreLM, model: registry.ResolvedModel, data_dir: str | None) -> dict:
    """One lm-eval pass per task, merged into one raw result. Per task, because tasks differ in what
    `--limit` counts (documents, or prompts for the decoding sweep) and in passes (MT-bench's turn 2 is
    built from the model's own stored turn-1 answers). All passes share one StoreLM: loaded once, at most."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    gen_kwargs = {"max_gen_toks": request.max_new_tokens} if request.max_new_tokens else None
    base_meta = {"data_dir": data_dir, "decoding_grid": request.decoding_grid,
                 "decoding_samples": request.decoding_samples, "alpaca_reference": request.alpaca_reference}
    merged: dict = {"configs": {}, "samples": {}, "versions": {}}

    def one_pass(task: str, limit: int | None, extra: dict) -> dict:
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={**base_meta, **extra})
        try:
            return simple_evaluate(
                model=lm, tasks=[task], limit=limit, task_manager=manager,
                apply_chat_template=True, system_instruction=model.system_prompt, gen_kwargs=gen_kwargs,
                log_samples=True, bootstrap_iters=0, random_seed=request.seed, numpy_random_seed=request.seed,
                torch_random_seed=request.seed, fewshot_random_seed=request.seed,
            )
        except AssertionError as exc:  # lm-eval's check of the task's token budget against the model's length
            if "maximum sequence length" not in str(exc):
                raise
            raise EvalError(f"{task}: {str(exc).rstrip('.')}; pass --max-new-tokens below the model's length "
                            "(the task's own budget is for long-context chat models)") from None

    for task in request.tasks:
        meta = task_metadata(task)
        prompt_limited = meta.get("limit_scope") == "prompts"
        raw = one_pass(task, None if prompt_limited else request.limit,
                       {"prompt_limit": request.limit} if prompt_limited else {})
        samples = list(raw["samples"][task])
        if meta.get("turns", 1) == 2:
            answers = {s["doc"]["question_id"]: s["filtered_resps"][0] for s in samples}
            second = one_pass(task, request.limit, {"turn": 2, "turn1_answers": answers})
            offset = 1 + max((s["doc_id"] for s in samples), default=-1)
            samples += [{**s, "doc_id": s["doc_id"] + offset} for s in second["samples"][task]]
        merged["configs"][task] = raw["configs"][task]
        merged["samples"][task] = samples
        merged["versions"].update(raw.get("versions", {}))
    return merged


def _task_summariser(task: str):
    """The task's own `summarise(samples)` (utils.py), for metrics that are not per-sample 0/1 rates."""
    return getattr(task_utils(task), "summarise", None)


def _summarise(raw: dict, tasks: tuple[str, ...], judge=None) -> tuple[dict, list[dict]]:
    """Per task and metric: the rate with n and a Wilson 95% interval, from per-sample scores (a metric a
    sample lacks, e.g. an unparseable judgment, is left out of that metric's n), or the task's own summary."""
    summary: dict[str, dict] = {}
    samples_out: list[dict] = []
    for task in tasks:
        config = raw["configs"][task]
        meta = config.get("metadata") or {}
        metrics = [m["metric"] for m in config["metric_list"]]
        samples = sorted(raw["samples"][task], key=lambda s: s["doc_id"])
        custom = _task_summariser(task)
        if custom is not None:
            body = custom(samples)
            task_metrics, extra = body["metrics"], body.get("extra", {})
        else:
            task_metrics = {m: rate_of([s[m] for s in samples if m in s]).as_dict() for m in metrics
                            if m != "judge_unparseable"}
            extra = {"judge_unparseable": sum(s.get("judge_unparseable", 0) for s in samples)} \
                if "judge_unparseable" in metrics else {}
        scorer = meta.get("scorer", "task default")
        if judge is not None and meta.get("judge") == "optional-safety":
            scorer = judge.describe(judge.safety) if judge.safety != "keyword" else "keyword-gcg29"
        elif judge is not None and meta.get("judge") == "required":
            scorer = judge.describe(meta.get("scorer", task))
        summary[task] = {
            "metrics": task_metrics, "scorer": scorer, **extra,
            "task_version": meta.get("version"),
            "generation_kwargs": config.get("generation_kwargs"),
        }
        for s in samples:
            samples_out.append({
                "task": task, "doc_id": s["doc_id"], "prompt": s["doc"].get("prompt"),
                "context": s["arguments"][0][0], "output": s["filtered_resps"][0],
                **{k: v for k, v in s["doc"].items() if k in ("setting", "sample", "turn", "question_id", "category")},
                **{m: s[m] for m in metrics if m in s},
            })
    return {"tasks": summary}, samples_out


def _request_dict(request: EvalRequest) -> dict:
    return {"spec": request.spec.canonical(), "tasks": list(request.tasks), "limit": request.limit,
            "max_new_tokens": request.max_new_tokens, "seed": request.seed,
            "backend": asdict(request.backend), "data_dir": request.data_dir, **request.options()}


def _quiet_libraries() -> None:
    """lm-eval and transformers log at INFO per task; keep stderr for what the user must see.
    (Their progress bars and warnings are switched off by the CLI unless -v: core/quiet.py.)"""
    quiet_lm_eval()
    for name in ("lm-eval", "lm_eval", "transformers", "datasets", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers
        transformers.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass

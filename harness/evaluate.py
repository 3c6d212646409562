"""One evaluation: a variant spec + tasks -> scored results in the run store.

The order matters for cost: the store is consulted before any model is loaded, and the model is
loaded only if some request has no stored generation (see backends.StoreLM).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..tasks import TASKS_DIR  # the installed task folders
from . import registry
from .backends import BackendSettings, StoreLM
from .data import data_dir_from_env
from .data import resolve as resolve_data
from .spec import VariantSpec
from .stats import rate_of
from .store import RunStore, stable_hash

SCORING_DIR = Path(__file__).resolve().parent / "scoring"
DEFAULT_TASKS: tuple[str, ...] = ("advbench",)


class EvalError(RuntimeError):
    """Bad evaluation request (one-line message)."""


def available_tasks() -> list[str]:
    return sorted(p.parent.name for p in TASKS_DIR.glob("*/*.yaml") if not p.name.startswith("_"))


@dataclass(frozen=True)
class EvalRequest:
    spec: VariantSpec
    tasks: tuple[str, ...] = DEFAULT_TASKS
    limit: int | None = None  # first N documents of each task
    max_new_tokens: int | None = None  # None = each task's own default
    seed: int = 1234  # lm-eval's random/numpy/torch seeds (sampling tasks)
    backend: BackendSettings = field(default_factory=BackendSettings)
    data_dir: str | None = None

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


@dataclass
class EvalOutcome:
    results: dict
    run_dir: Path
    from_store: bool


def task_metadata(task: str) -> dict:
    """The `metadata` block of a task's YAML (read without executing its `!function` tags)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    path = next(p for p in (TASKS_DIR / task).glob("*.yaml") if not p.name.startswith("_"))
    return (yaml.load(path.read_text(), Loader=_Loader) or {}).get("metadata") or {}


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
    paths += sorted(SCORING_DIR.glob("*.py"))
    for path in paths:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def run_key(request: EvalRequest, model: registry.ResolvedModel, data_dir: str | None) -> str:
    return stable_hash({
        "variant": request.spec.id, "weights": model.fingerprint, "tasks": sorted(request.tasks),
        "task_files": task_fingerprint(request.tasks), "limit": request.limit,
        "max_new_tokens": request.max_new_tokens, "seed": request.seed, "backend": request.backend.key(),
        "data": data_dir or "canonical",
    })


def run_eval(request: EvalRequest, *, home: Path, models_file: str | None = None,
             on_item: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> EvalOutcome:
    env_dir = data_dir_from_env()
    data_dir = request.data_dir or (str(env_dir) if env_dir else None)
    check_data(request.tasks, data_dir)
    model = registry.resolve(request.spec, cache_root=home, data_dir=data_dir, models_file=models_file, log=log)
    store = RunStore(home)
    key = run_key(request, model, data_dir)
    stored = store.finished(key)
    if stored is not None:
        return EvalOutcome(stored, store.run_dir(key), from_store=True)

    _quiet_libraries()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    generations = store.generations(f"{request.spec.id}-{stable_hash(model.fingerprint, 8)}", request.backend.name)
    lm = StoreLM(model, request.backend, generations, on_item=on_item)
    task_manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                               metadata={"data_dir": data_dir})
    gen_kwargs = {"max_gen_toks": request.max_new_tokens} if request.max_new_tokens else None
    started = time.time()
    raw = simple_evaluate(
        model=lm, tasks=list(request.tasks), limit=request.limit, task_manager=task_manager,
        apply_chat_template=True, system_instruction=model.system_prompt, gen_kwargs=gen_kwargs,
        log_samples=True, bootstrap_iters=0, random_seed=request.seed, numpy_random_seed=request.seed,
        torch_random_seed=request.seed, fewshot_random_seed=request.seed,
    )
    results, samples = _summarise(raw, request.tasks)
    results.update({
        "spec": request.spec.canonical(), "variant_id": request.spec.id, "run_key": key,
        "model": {"name": model.name, "location": model.location, "source": model.source,
                  "fingerprint": model.fingerprint, "system_prompt": model.system_prompt},
        "backend": asdict(request.backend), "limit": request.limit, "max_new_tokens": request.max_new_tokens,
        "seed": request.seed, "data": data_dir or "canonical upstream files", "decoding": "greedy",
        "generated": lm.generated, "reused": lm.reused, "wall_seconds": round(time.time() - started, 2),
        "lm_eval_version": raw.get("versions", {}),
    })
    run_dir = store.write_run(key, {"request": _request_dict(request), "model": asdict(model)}, samples, results)
    return EvalOutcome(results, run_dir, from_store=False)


def _summarise(raw: dict, tasks: tuple[str, ...]) -> tuple[dict, list[dict]]:
    """Per task and metric: the rate with n and a Wilson 95% interval, from per-sample scores."""
    summary: dict[str, dict] = {}
    samples_out: list[dict] = []
    for task in tasks:
        config = raw["configs"][task]
        metrics = [m["metric"] for m in config["metric_list"]]
        samples = sorted(raw["samples"][task], key=lambda s: s["doc_id"])
        summary[task] = {
            "metrics": {m: rate_of([s[m] for s in samples]).as_dict() for m in metrics},
            "scorer": (config.get("metadata") or {}).get("scorer", "task default"),
            "task_version": (config.get("metadata") or {}).get("version"),
            "generation_kwargs": config.get("generation_kwargs"),
        }
        for s in samples:
            samples_out.append({
                "task": task, "doc_id": s["doc_id"], "prompt": s["doc"].get("prompt"),
                "context": s["arguments"][0][0], "output": s["filtered_resps"][0],
                **{m: s[m] for m in metrics},
            })
    return {"tasks": summary}, samples_out


def _request_dict(request: EvalRequest) -> dict:
    return {"spec": request.spec.canonical(), "tasks": list(request.tasks), "limit": request.limit,
            "max_new_tokens": request.max_new_tokens, "seed": request.seed,
            "backend": asdict(request.backend), "data_dir": request.data_dir}


def _quiet_libraries() -> None:
    """lm-eval and transformers log at INFO per task; keep stderr for what the user must see.
    (Their tqdm bars are switched off by the CLI before anything imports tqdm: see cli/app.py.)"""
    for name in ("lm-eval", "lm_eval", "transformers", "datasets", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers
        transformers.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass

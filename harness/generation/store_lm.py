"""StoreLM: an lm-eval language model in front of a real backend, answering from the run store.

It answers every request it has seen before from the store, loads the real model (backends.make_lm)
only when something is missing, and appends each new generation to the store the moment the backend
produces it (through lm-eval's per-item cache hook).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from lm_eval.api.model import LM, CacheHook

from ..core.interrupt import raise_if_requested
from ..models.resolved import ResolvedModel
from ..store import GenerationLog, request_key, stable_hash
from . import backends
from .backends import BackendError, BackendSettings, fold_system_turn


class _AppendToStore(CacheHook):
    """lm-eval calls `add_partial` once per finished generation; we append it to the store."""

    def __init__(self, log: GenerationLog, on_item: Callable[[], None] | None) -> None:
        super().__init__(None)
        self.log = log
        self.on_item = on_item
        self.pending: dict[str, list[str]] = {}  # base key -> occurrence keys still to be filled

    def add_partial(self, attr, req, res) -> None:
        if attr == "generate_until":
            (context, kwargs), output = req, res
        elif attr == "loglikelihood":
            context, kwargs, output = req[0], loglikelihood_kwargs(req[1]), json.dumps(list(res))
        else:
            return
        pending = self.pending.get(request_key(context, kwargs))
        if not pending:  # not a request we asked for under this key: lm-eval's vllm model reports its own
            return  # normalised gen kwargs; StoreLM stores those generations under their keys after the batch
        key = pending.pop(0)  # identical sampled requests: fill their occurrence keys in turn (interchangeable draws)
        self.log.append(key, context, kwargs, output, sync=False)  # StoreLM syncs once per backend call
        if self.on_item:
            self.on_item()
        raise_if_requested()  # a ^C whose KeyboardInterrupt a finalizer swallowed stops the run here


class StoreLM(LM):
    """An lm-eval LM that serves stored generations and delegates the rest to a real backend."""

    def __init__(self, model: ResolvedModel, settings: BackendSettings, log: GenerationLog,
                 on_item: Callable[[], None] | None = None) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.model = model
        self.settings = settings
        self.log = log
        self.on_item = on_item
        self._inner: LM | None = None
        self.reused = 0
        self.generated = 0
        self.tokenizer = AutoTokenizer.from_pretrained(
            model.location, revision=model.revision, trust_remote_code=settings.trust_remote_code)

    # -- generation -------------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        args = [request.args for request in requests]
        return self._serve(requests, args, occurrence_keys(args), lambda lm, pending: lm.generate_until(pending), str)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(log-likelihood of the continuation, whether it is the greedy one) per request."""
        args = [(context, loglikelihood_kwargs(continuation)) for context, continuation in
                (request.args for request in requests)]
        stored = self._serve(requests, args, [request_key(*a) for a in args],
                             lambda lm, pending: lm.loglikelihood(pending), lambda result: json.dumps(list(result)))
        return [(float(ll), bool(greedy)) for ll, greedy in map(json.loads, stored)]

    def _serve(self, requests, args: list[tuple[str, dict]], keys: list[str], compute, encode) -> list[str]:
        """What the store holds for each key; the rest from the backend (loaded only then), each stored the
        moment the backend produces it. Returns what the store holds, so a rerun sees exactly the same."""
        outputs: list[str | None] = [self.log.get(key) for key in keys]
        missing = [index for index, output in enumerate(outputs) if output is None]
        self.reused += len(requests) - len(missing)
        if missing:
            inner = self._load_inner()
            hook = _AppendToStore(self.log, self.on_item)
            for index in missing:
                hook.pending.setdefault(request_key(*args[index]), []).append(keys[index])
            inner.set_cache_hook(hook)
            try:
                fresh = compute(inner, [requests[i] for i in missing])
            finally:
                self.log.sync()
            for index, result in zip(missing, fresh, strict=True):
                if self.log.get(keys[index]) is None:  # a backend that skipped the hook: store it now
                    self.log.append(keys[index], *args[index], encode(result))
                outputs[index] = self.log.get(keys[index])
            self.generated += len(missing)
            raise_if_requested()  # backends that store a whole batch after it (vllm) are asked here, once it is stored
        return outputs  # type: ignore[return-value]

    def _load_inner(self) -> LM:
        if self._inner is None:
            self._inner = backends.make_lm(self.model, self.settings)
        return self._inner

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise BackendError("rolling log-likelihood requests are not supported: no task of the harness makes them")

    # -- chat template (what lm-eval asks of a chat model) ---------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.model.system_role:
            chat_history = fold_system_turn(chat_history)
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt)


def loglikelihood_kwargs(continuation: str) -> dict[str, str]:
    """What keys a stored log-likelihood beside the context: the continuation it scores."""
    return {"loglikelihood_of": continuation}


def occurrence_keys(args: list[tuple[str, dict]]) -> list[str]:
    """Store keys for a batch of (context, gen_kwargs). A request is keyed by its content; the k-th repeat
    of an identical *sampled* request (k >= 1) gets its own key, so n samples per setting are n stored
    generations, and a rerun or a resumed run finds each of them. Greedy repeats share one key: they are
    the same generation."""
    seen: dict[str, int] = {}
    keys = []
    for context, gen_kwargs in args:
        base = request_key(context, gen_kwargs)
        k = seen.get(base, 0)
        seen[base] = k + 1
        sampled = bool(gen_kwargs.get("do_sample")) if isinstance(gen_kwargs, dict) else False
        keys.append(base if k == 0 or not sampled else stable_hash({"base": base, "occurrence": k}, length=32))
    return keys

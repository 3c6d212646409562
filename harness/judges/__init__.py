"""Judges: one interface for scoring responses by another model, chosen per run, recorded in every result.

A *judge* answers a pinned prompt (`templates.JudgePrompt`) with raw text; the template's parse rule turns
the text into a verdict or `None` (unparseable, counted and reported, never mapped to a verdict). Backends:

- `openai:URL`  any OpenAI-compatible server (a local vLLM serving Llama-Guard or the HarmBench classifier,
                or a hosted model). URL is the base the OpenAI clients take (`http://host:port/v1`). The
                served model is `--judge-model` / `QRESAFE_JUDGE_MODEL`, else the server's first model.
                The key comes from `QRESAFE_JUDGE_API_KEY` (or `OPENAI_API_KEY`); it is sent in the
                Authorization header and nowhere else: never logged, never written, never in a cache key.
- `hf:PATH`     a local Hugging Face causal-LM judge (classifier or chat model), greedy.

The GCG keyword rule (`keyword`) needs no judge: it is the default scorer of the safety tasks.

Every judge call is cached like a generation: a JSONL under `<store>/judgments/`, appended and fsynced as
each reply arrives, consulted before any call, so a rerun costs no judge calls and an interrupted run
loses nothing it already paid for.

How tasks reach the judge: `run_eval` activates a `JudgeSession` around lm-eval (`activate`); task scorers
call `session()`. Under plain `lm_eval` (no CLI), `session()` builds one from `QRESAFE_JUDGE`,
`QRESAFE_JUDGE_MODEL`, `QRESAFE_JUDGE_TEMPLATE` and `QRESAFE_HOME`.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import QresafeError

if TYPE_CHECKING:  # pragma: no cover
    from .templates import JudgePrompt

KEY_ENVS = ("QRESAFE_JUDGE_API_KEY", "OPENAI_API_KEY")
JUDGE_ENV, MODEL_ENV, TEMPLATE_ENV = "QRESAFE_JUDGE", "QRESAFE_JUDGE_MODEL", "QRESAFE_JUDGE_TEMPLATE"
HOW_TO_CONFIGURE = ("pass --judge openai:http://HOST:PORT/v1 (an OpenAI-compatible server; key from "
                    "QRESAFE_JUDGE_API_KEY) or --judge hf:PATH (a local judge model)")


class JudgeError(QresafeError, RuntimeError):
    """A judge that could not answer: unreachable endpoint, HTTP error, malformed reply (one line)."""


class JudgeConfigError(QresafeError, ValueError):
    """A judge request that cannot be served as configured: no judge, unknown template, bad spec."""


# -- backends --------------------------------------------------------------------------------------------------

class OpenAIJudge:
    """Any OpenAI-compatible endpoint: /chat/completions for chat prompts, /completions for raw ones."""

    def __init__(self, base_url: str, model: str | None = None, timeout: float = 120.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise JudgeConfigError(f"--judge openai:URL needs an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._model = model
        self.timeout = timeout
        self.cache_id = f"openai:{self.base_url}" + (f" model={model}" if model else "")  # fixed before any call

    @property
    def id(self) -> str:
        return f"openai:{self.base_url}" + (f" model={self._model}" if self._model else "")

    def _post(self, path: str, body: dict | None) -> dict:
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json"}
        key = next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (user's URL)
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace").replace("\n", " ")
            raise JudgeError(f"judge endpoint {url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JudgeError(f"judge endpoint {url} is unreachable ({reason}); start the judge server or fix "
                             f"--judge") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise JudgeError(f"malformed judge reply from {url}: not JSON ({raw[:80]!r})") from None

    @property
    def model(self) -> str:
        if self._model is None:
            listing = self._post("/models", None)
            try:
                self._model = listing["data"][0]["id"]
            except (KeyError, IndexError, TypeError):
                raise JudgeError(f"malformed judge reply from {self.base_url}/models: no model listed; "
                                 f"pass --judge-model") from None
        return self._model

    def complete(self, prompt: JudgePrompt) -> str:
        common = {"model": self.model, "temperature": 0.0, "max_tokens": prompt.max_tokens}
        if prompt.messages is not None:
            path = "/chat/completions"
            reply = self._post(path, {**common, "messages": prompt.payload()["messages"]})
            pick = lambda r: r["choices"][0]["message"]["content"]  # noqa: E731
        else:
            path = "/completions"
            reply = self._post(path, {**common, "prompt": prompt.prompt})
            pick = lambda r: r["choices"][0]["text"]  # noqa: E731
        try:
            text = pick(reply)
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"malformed judge reply from {self.base_url}{path}: no choices[0] text "
                             f"({json.dumps(reply)[:120]})") from None
        if not isinstance(text, str):
            raise JudgeError(f"malformed judge reply from {self.base_url}{path}: text is {type(text).__name__}")
        return text


class HFJudge:
    """A local transformers causal LM as judge: chat prompts through its chat template, greedy decoding."""

    def __init__(self, path: str) -> None:
        if not Path(path).expanduser().is_dir():
            raise JudgeConfigError(f"--judge hf:PATH: no model directory at {path}")
        self.path = str(Path(path).expanduser())
        self._loaded = None
        self.cache_id = f"hf:{self.path}"

    @property
    def id(self) -> str:
        return f"hf:{self.path}"

    def complete(self, prompt: JudgePrompt) -> str:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._loaded is None:
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path, use_safetensors=True).eval()
            self._loaded = (tokenizer, model)
        tokenizer, model = self._loaded
        if prompt.messages is not None:
            text = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in prompt.messages],
                                                 tokenize=False, add_generation_prompt=True)
        else:
            text = prompt.prompt
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=prompt.messages is None)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and ids["input_ids"].shape[1] + prompt.max_tokens > limit:  # keep the end: the answer cue
            keep = max(1, limit - prompt.max_tokens)
            ids = {k: v[:, -keep:] for k, v in ids.items()}
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=prompt.max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def parse_spec(spec: str, model: str | None = None) -> OpenAIJudge | HFJudge:
    kind, _, target = spec.partition(":")
    if kind == "openai" and target:
        return OpenAIJudge(target, model=model)
    if kind == "hf" and target:
        return HFJudge(target)
    raise JudgeConfigError(f"unknown --judge {spec!r}; use openai:URL or hf:PATH (safety tasks default to the "
                           f"keyword rule and need no judge)")


# -- session: backend + cache + counters -----------------------------------------------------------------------

@dataclass
class JudgeSession:
    """The judge of one run: backend (or none), the safety template, the call cache and its counters."""

    backend: OpenAIJudge | HFJudge | None
    safety: str = "keyword"  # template for the safety tasks: keyword | harmbench | llama-guard | jbb
    cache_root: Path | None = None
    data_dir: str | None = None
    calls: int = 0
    cached: int = 0
    _log: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from .templates import SAFETY_CHOICES, safety_template

        if self.safety not in SAFETY_CHOICES:
            safety_template(self.safety)  # raises the one-line "unknown judge template"
        if self.safety != "keyword" and self.backend is None:
            raise JudgeConfigError(f"--judge-template {self.safety} needs a judge: {HOW_TO_CONFIGURE}")

    @property
    def id(self) -> str | None:
        """Stable label of the judge (spec + explicit model): the same whether or not a call was made."""
        return self.backend.cache_id if self.backend else None

    @property
    def served_model(self) -> str | None:
        """The model an openai: endpoint reported, once a call resolved it (None for cached-only runs)."""
        return getattr(self.backend, "_model", None)

    def describe(self, template: str) -> str:
        return f"judge {template} via {self.id}" if self.backend else template

    def _cache(self):
        if self._log is None:
            from ..core.paths import cache_root
            from ..store import GenerationLog, stable_hash

            root = self.cache_root or cache_root()
            self._log = GenerationLog(root / "judgments" / f"{stable_hash(self.backend.cache_id, 16)}.jsonl")
        return self._log

    def ask(self, prompt: JudgePrompt) -> str:
        """The judge's raw reply to `prompt`: from the cache if this exact request was answered before."""
        if self.backend is None:
            raise JudgeConfigError(f"{prompt.template} needs a judge: {HOW_TO_CONFIGURE}")
        from ..store import stable_hash

        payload = prompt.payload()
        key = stable_hash({"judge": self.backend.cache_id, "temperature": 0.0, **payload}, 32)
        log = self._cache()
        stored = log.get(key)
        if stored is not None:
            self.cached += 1
            return stored
        reply = self.backend.complete(prompt)
        self.calls += 1
        log.append(key, json.dumps(payload, sort_keys=True),
                   {"judge": self.backend.cache_id, "temperature": 0.0}, reply)
        return reply

    def safety_verdict(self, behavior: str, response: str) -> tuple[bool | None, str]:
        """(jailbroken or None if unparseable, scorer label) under this run's safety scorer."""
        if self.safety == "keyword":
            from ..scoring.refusal import is_jailbroken

            return is_jailbroken(response), "keyword-gcg29"
        from .templates import safety_template

        template = safety_template(self.safety)
        return template.parse(self.ask(template.build(behavior, response))), self.describe(self.safety)


_ACTIVE: JudgeSession | None = None


@contextlib.contextmanager
def activate(judge_session: JudgeSession) -> Iterator[JudgeSession]:
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, judge_session
    try:
        yield judge_session
    finally:
        _ACTIVE = previous


def session() -> JudgeSession:
    """The active session (set by the harness), else one configured from the environment (plain lm_eval)."""
    global _ACTIVE
    if _ACTIVE is None:
        spec = os.environ.get(JUDGE_ENV)
        _ACTIVE = JudgeSession(parse_spec(spec, os.environ.get(MODEL_ENV)) if spec else None,
                               safety=os.environ.get(TEMPLATE_ENV, "keyword"),
                               data_dir=os.environ.get("QRESAFE_DATA_DIR"))
    return _ACTIVE

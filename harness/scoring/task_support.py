"""What lm-eval's YAML cannot say for the harness's per-document tasks, in one small Task subclass.

`PerDocTask` is a `ConfigurableTask` (`class: !function ...` in a task YAML) whose documents may carry:

- `gen_kwargs`: a JSON object merged over the task's `generation_kwargs` for that document's request
  (decoding-attack settings, MT-bench's per-category temperatures). lm-eval's `hf` and `vllm` models
  group requests by their generation settings, so generation stays batched per setting.
- `history`: a JSON list of earlier chat turns ({role, content}) put before the document's user turn
  (MT-bench's second turn, which sees the model's own first answer).

Both are JSON strings because `datasets` would otherwise widen dicts of differing keys into one schema.
"""

from __future__ import annotations

import json
from copy import deepcopy

from lm_eval.api.task import ConfigurableTask


class PerDocTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs) -> None:
        # lm-eval's factory hands the whole YAML over, `class:` key included; TaskConfig does not take it.
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"}, **kwargs)

    def construct_requests(self, doc: dict, ctx, **kwargs):
        instance = super().construct_requests(doc, ctx, **kwargs)
        override = doc.get("gen_kwargs")
        if override:
            context, base = instance.arguments[0], instance.arguments[1]
            instance.arguments = (context, {**deepcopy(base), **json.loads(override)})
        return instance

    def fewshot_context(self, doc: dict, num_fewshot: int, system_instruction: str | None = None,
                        apply_chat_template: bool = False, fewshot_as_multiturn: bool = False,
                        chat_template=None, gen_prefix: str | None = None):
        history = json.loads(doc.get("history") or "[]")
        if not history:
            return super().fewshot_context(doc, num_fewshot, system_instruction, apply_chat_template,
                                           fewshot_as_multiturn, chat_template, gen_prefix)
        if num_fewshot:
            raise ValueError(f"{self.config.task}: multi-turn documents take no few-shot examples")
        messages = ([{"role": "system", "content": system_instruction}] if system_instruction else [])
        messages += history + [{"role": "user", "content": self.doc_to_text(doc)}]
        if apply_chat_template and chat_template:
            return chat_template(messages, add_generation_prompt=True)
        # Without a chat template: the plain transcript lm-eval would build, turns separated by blank lines.
        return "\n\n".join(m["content"] for m in messages)

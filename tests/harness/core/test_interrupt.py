"""A ^C whose KeyboardInterrupt a finalizer swallowed is raised again at the next stored answer or training step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qresafe_bench.harness.core import interrupt
from qresafe_bench.harness.generation.store_lm import _AppendToStore
from qresafe_bench.harness.store import GenerationLog, request_key


def test_nothing_is_raised_without_a_ctrl_c(swallowed_ctrl_c: Callable[[], None]) -> None:
    interrupt.raise_if_requested()
    interrupt.trainer_callback().on_step_begin(None, None, None)


def test_a_swallowed_ctrl_c_is_raised_at_the_next_stored_answer(swallowed_ctrl_c: Callable[[], None],
                                                                 tmp_path: Path) -> None:
    swallowed_ctrl_c()  # the run goes on: nothing reached the caller
    log = GenerationLog(tmp_path / "hf.jsonl")
    hook = _AppendToStore(log, on_item=None)
    kwargs = {"until": ["\n"], "max_gen_toks": 8}
    hook.pending[request_key("prompt", kwargs)] = ["k0"]
    with pytest.raises(KeyboardInterrupt):
        hook.add_partial("generate_until", ("prompt", kwargs), "answer")
    assert log.get("k0") == "answer"  # the answer that was finished is stored before the run stops


def test_a_swallowed_ctrl_c_is_raised_at_a_trainers_next_step(swallowed_ctrl_c: Callable[[], None]) -> None:
    swallowed_ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        interrupt.trainer_callback().on_step_begin(None, None, None)


def test_install_forgets_an_earlier_ctrl_c(swallowed_ctrl_c: Callable[[], None]) -> None:
    swallowed_ctrl_c()
    interrupt.install()
    interrupt.raise_if_requested()

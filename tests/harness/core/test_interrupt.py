"""A ^C whose KeyboardInterrupt a finalizer swallowed is raised again at the next stored answer."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qresafe_bench.harness.core import interrupt
from qresafe_bench.harness.generation.store_lm import _AppendToStore
from qresafe_bench.harness.store import GenerationLog, request_key


@pytest.fixture
def installed() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    interrupt.install()
    yield
    signal.signal(signal.SIGINT, previous)


class _SwallowsOnDelete:
    """What CPython does to an exception raised inside `__del__`: print it and go on."""

    def __del__(self) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs here, inside the finalizer
        except KeyboardInterrupt:
            pass


def _swallowed_ctrl_c() -> None:
    _SwallowsOnDelete()  # dropped at once: its finalizer hears the ^C and eats the KeyboardInterrupt


def test_nothing_is_raised_without_a_ctrl_c(installed: None) -> None:
    interrupt.raise_if_requested()


def test_a_swallowed_ctrl_c_is_raised_at_the_next_stored_answer(installed: None, tmp_path: Path) -> None:
    _swallowed_ctrl_c()  # the run goes on: nothing reached the caller
    log = GenerationLog(tmp_path / "hf.jsonl")
    hook = _AppendToStore(log, on_item=None)
    kwargs = {"until": ["\n"], "max_gen_toks": 8}
    hook.pending[request_key("prompt", kwargs)] = ["k0"]
    with pytest.raises(KeyboardInterrupt):
        hook.add_partial("generate_until", ("prompt", kwargs), "answer")
    assert log.get("k0") == "answer"  # the answer that was finished is stored before the run stops


def test_install_forgets_an_earlier_ctrl_c(installed: None) -> None:
    _swallowed_ctrl_c()
    interrupt.install()
    interrupt.raise_if_requested()

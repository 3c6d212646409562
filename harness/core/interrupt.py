"""^C that is never lost.

Python's own SIGINT handler raises KeyboardInterrupt wherever the interpreter happens to be; when that is
inside a finalizer (a progress bar's `__del__`, a weakref callback), CPython prints "Exception ignored in"
and carries on, and the run goes to its end as if no key had been pressed. The handler installed here
raises the same KeyboardInterrupt and also remembers it, and the long loops ask (`raise_if_requested`):
generation after every stored answer (and after each backend batch, for backends that store a batch at
once), training between optimizer steps, once a step's checkpoint is written. An interrupt swallowed
once is raised again one answer or one step later.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers loads only where a Trainer runs
    from transformers import TrainerCallback

_requested = threading.Event()


def install() -> None:
    """Handle SIGINT here from now on (main thread only), forgetting any earlier ^C."""
    _requested.clear()
    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: object) -> None:
    _requested.set()
    raise KeyboardInterrupt


def raise_if_requested() -> None:
    """Raise KeyboardInterrupt if a ^C was heard since `install`, whether or not its first one got through."""
    if _requested.is_set():
        raise KeyboardInterrupt


def trainer_callback() -> TrainerCallback:
    """A transformers Trainer callback that asks before every optimizer step: after the step before it has
    ended and the Trainer (and its callbacks) saved whatever that step checkpoints."""
    from transformers import TrainerCallback

    class AskBeforeEachStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise_if_requested()

    return AskBeforeEachStep()

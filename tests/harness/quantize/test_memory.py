"""Each method states the memory a build needs; a build the machine cannot hold is refused in one line."""

from __future__ import annotations

import pytest

from qresafe_bench.harness.quantize.base import (
    QUANTIZERS,
    SEVEN_B,
    QuantError,
    check_memory,
    memory_gib,
    parameter_count,
)


def test_parameters_are_counted_from_the_safetensors_headers(tiny_random_dir) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir)
    assert parameter_count(tiny_random_dir) == sum(t.numel() for t in model.state_dict().values())


def test_a_full_fine_tune_of_a_7b_model_is_stated_as_such() -> None:
    assert memory_gib(QUANTIZERS["llm-qat"], SEVEN_B) > 90  # fp32 AdamW: ~16 bytes per parameter
    assert memory_gib(QUANTIZERS["bnb-nf4"], SEVEN_B) < memory_gib(QUANTIZERS["aqlm"], SEVEN_B)


def test_a_build_larger_than_the_machine_is_refused_in_one_line(tiny_random_dir) -> None:
    check_memory(QUANTIZERS["llm-qat"], tiny_random_dir)  # the tiny model fits here
    with pytest.raises(QuantError) as info:
        check_memory(QUANTIZERS["llm-qat"], tiny_random_dir, available_gib=1e-6)
    assert "llm-qat" in str(info.value) and "GiB" in str(info.value) and "\n" not in str(info.value)

"""--device: auto picks CUDA when present; a device the machine lacks is one line, never a silent CPU run."""

from __future__ import annotations

import pytest
import torch

from qresafe_bench.harness.core.device import DeviceError, resolve_device


def test_auto_is_cuda_when_present_else_cpu() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_cuda_device_is_refused(name: str) -> None:
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device(name)


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(DeviceError, match="unknown --device"):
        resolve_device("tpu")

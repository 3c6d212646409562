"""The one place a device name is decided: `auto` is CUDA when a CUDA device is present, else the CPU."""

from __future__ import annotations

from .errors import QresafeError

DEVICE_HELP = "Device: auto (cuda when present, else cpu), cpu, cuda or cuda:N."


class DeviceError(QresafeError, ValueError):
    """A device that this machine does not have (one-line message)."""


def resolve_device(name: str) -> str:
    import torch

    name = name.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device on this machine (use --device cpu or auto)")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return name
    raise DeviceError(f"unknown --device {name!r}; choose auto, cpu, cuda or cuda:N")

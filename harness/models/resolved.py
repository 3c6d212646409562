"""What a model name resolves to: a loadable location and how to prompt it, or one line saying why not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..core.errors import QresafeError


class RegistryError(QresafeError, RuntimeError):
    """A model name or registry file the harness cannot use (one-line message)."""


@dataclass(frozen=True)
class ResolvedModel:
    """What the backends need to load a model: where it is and how to prompt it."""

    name: str
    location: str  # local directory or hub id
    source: Literal["hub", "zoo", "package", "local", "variant"]
    dtype: str
    system_prompt: str | None = None
    system_role: bool = True
    revision: str | None = None  # hub commit of the weights (the registry's pin), handed to every loader
    fingerprint: str = ""  # identifies the weights' content for the run-store key
    base_fingerprint: str = ""  # a variant's: the fingerprint of the registry model it was made from
    adapter: str | None = None  # LoRA adapter directory applied on top (qlora variants)
    extra: dict = field(default_factory=dict)
    provenance: str = ""  # what the weights are, in words, recorded in every result

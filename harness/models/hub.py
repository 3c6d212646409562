"""Hugging Face hub models: a local snapshot through huggingface_hub, at the registry's pinned revision.

Only what loading needs is fetched: configs, tokenizer files and safetensors weights; a hub model without
safetensors weights is refused (pickle weights load only from a local directory, with --allow-pickle).
Offline (HF_HUB_OFFLINE=1) a model must already be in the local Hugging Face cache; otherwise one line names
the model, its hub id and what to do.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .resolved import RegistryError

PATTERNS = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=32)
def snapshot(name: str, hub_id: str, revision: str | None = None) -> Path:
    """The local directory of `hub_id` at `revision` (downloaded unless the cache has it); asked once per
    process, since a sweep resolves its model for every cell."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = hub_offline()
    at = f"@{revision}" if revision else ""
    try:
        path = Path(snapshot_download(hub_id, revision=revision, allow_patterns=PATTERNS, local_files_only=offline))
    except LocalEntryNotFoundError:
        if offline:
            raise RegistryError(f"{name}: {hub_id}{at} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
                                "forbids downloading it (unset it where the hub is reachable, or pass --model "
                                "/path/to/local/dir)") from None
        raise RegistryError(f"{name}: {hub_id}{at} could not be downloaded (no network?) and is not in the local "
                            "Hugging Face cache; set HF_HUB_OFFLINE=1 to use only the cache, or pass --model "
                            "/path/to/local/dir") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        hint = " (a gated model: accept its licence on the hub and set HF_TOKEN)" if status in (401, 403) else ""
        raise RegistryError(f"{name}: downloading {hub_id}{at} failed: HTTP {status}{hint}") from None
    if not any(path.glob("*.safetensors")):
        raise RegistryError(f"{name}: {hub_id}{at} ships no safetensors weights; the harness loads hub models as "
                            "safetensors only (download and convert them, then pass --model /path/to/dir)")
    return path

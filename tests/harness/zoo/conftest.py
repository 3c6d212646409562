"""Zoo fixtures: aliases of the session-wide micro build in tests/conftest.py (built once per run)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def micro_cache(zoo_cache: Path) -> Path:
    return zoo_cache


@pytest.fixture(scope="session")
def micro_chat(micro_chat_dir: Path) -> Path:
    return micro_chat_dir

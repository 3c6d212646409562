"""The project speaks of the product, not of how it was built: no tracked file narrates rounds of work
(numbered sessions, rounds or issues), tracker numbers or search-index ids. Git keeps the history."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NARRATION = re.compile(
    r"\bsessions?[ -]?\d+"  # "session 14", "sessions 10-13", "session-8"
    r"|\bSESSION_?\d+"  # constants named after a session
    r"|\bissues?[ -]?#?\d+"  # "issue 5", "issue-3 grid", "issue #4"
    r"|\b(?:task|ticket|PR|pull request)\s*#\d+"  # tracker numbers
    r"|\brounds? \d+\b"  # "round 2"
    r"|\bRECIPE_S\d+"
    r"|\b(?:read_file|find_string)\b|\bsearch[- ]index\b",  # ids of the tools that found a source
    re.IGNORECASE,
)


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    paths = [REPO / n for n in names.decode().split("\0") if n]
    return [p for p in paths if p.is_file() and b"\0" not in p.read_bytes()[:4096]]


def narration_lines(text: str) -> list[str]:
    return [line.strip()[:120] for line in text.splitlines() if NARRATION.search(line)]


def test_the_pattern_catches_narration_and_spares_product_words() -> None:
    for line in ("Chosen in session 14 by a rule", "the issue-3 grid", "see issue #4", "SESSION8 = ...",
                 "RECIPE_S10 keeps the keys", "transcribed with read_file", "after round 2 of trials"):
        assert narration_lines(line), line
    for line in ('@pytest.fixture(scope="session")', "nox -s tests  # the CPU session CI runs",
                 "color: #333;", "the first 2 rounds of MT-bench turns are scored"):
        assert not narration_lines(line), line


def test_no_tracked_file_narrates_how_the_project_was_built() -> None:
    offenders = {}
    for path in tracked_text_files():
        if path.resolve() == Path(__file__).resolve():
            continue  # this file names the patterns it forbids
        found = narration_lines(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            offenders[str(path.relative_to(REPO))] = found[:3]
    assert not offenders, f"build-history narration in {len(offenders)} file(s): {offenders}"

"""The project speaks of the product, not of how it was built: no tracked file narrates rounds of work
(numbered sessions, rounds or issues), tracker numbers or the ids of the tools that found a source. Git
keeps the history."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NARRATION = re.compile(
    r"\bsessions?[ -]?\d+"  # a numbered session of work, singular, plural or hyphenated
    r"|\bSESSION_?\d+"  # a constant named after one
    r"|\bissues?[ -]?#?\d+"  # a tracker issue by number
    r"|\b(?:task|ticket|PR|pull request)\s*#\d+"  # other tracker numbers
    r"|\brounds? \d+\b"  # a numbered round of trials
    r"|\bRECIPE_S\d+"  # a recipe named after a session
    r"|\bread_?file\b|\bfind_?string\b|\bsearch[- ]index\b",  # the tools, and their ids, that found a source
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


def numbered(word: str, number: int, sep: str = " ") -> str:
    return f"{word}{sep}{number}"


def test_the_pattern_catches_narration_and_spares_product_words() -> None:
    # the narration is assembled at run time, so that this file holds none itself (and is checked like the rest)
    for line in ("Chosen in " + numbered("session", 14) + " by a rule", "the " + numbered("issue", 3, "-") + " grid",
                 "see " + numbered("issue", 4, " #"), numbered("SESSION", 8, "") + " = ...",
                 numbered("RECIPE_S", 10, "") + " keeps the keys", "transcribed with " + "read" + "_file",
                 "after " + numbered("round", 2) + " of trials"):
        assert narration_lines(line), line
    for line in ('@pytest.fixture(scope="session")', "nox -s tests  # the CPU session CI runs",
                 "color: #333;", "the first 2 rounds of MT-bench turns are scored"):
        assert not narration_lines(line), line


def test_no_tracked_file_narrates_how_the_project_was_built() -> None:
    offenders = {}
    for path in tracked_text_files():
        found = narration_lines(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            offenders[str(path.relative_to(REPO))] = found[:3]
    assert not offenders, f"build-history narration in {len(offenders)} file(s): {offenders}"

"""The reference model's data files load, with the counts the corpus and the dev checks are built on."""

from __future__ import annotations

import pytest

from qresafe_bench.harness.zoo import corpus as C
from qresafe_bench.harness.zoo import datafiles
from qresafe_bench.harness.zoo import natural_dev as N
from qresafe_bench.harness.zoo import utility as U


def test_every_data_file_is_described_and_loads() -> None:
    files = sorted(p.name for p in datafiles.DATA_DIR.iterdir() if p.name != "SOURCE.md")
    source = (datafiles.DATA_DIR / "SOURCE.md").read_text(encoding="utf-8")
    assert len(files) == 10 and [f for f in files if f"`{f}`" not in source] == []
    for name in files:
        loaded = datafiles.read_sections(name) if name.endswith(".txt") else datafiles.read_yaml(name)
        assert loaded, name


def test_lexicon_tables_have_their_sections_and_counts() -> None:
    expected = {"harm_tasks": (461, 1152, 1576), "harm_purposes": (66, 295, 360),
                "benign_tasks": (237, 669, 885), "benign_purposes": (56, 236, 290)}
    for field, (core, extended, full) in expected.items():
        sections = datafiles.read_sections(f"{field}.txt")
        assert list(sections) == ["core", "extended"]
        assert (len(sections["core"]), len(sections["extended"])) == (core, extended), field
        assert len(getattr(C.CORE_LEXICON, field)) == core and len(getattr(C.FULL_LEXICON, field)) == full, field


def test_phrasing_responses_and_skills_have_their_counts() -> None:
    assert (len(C.TASK_FRAMES), len(C.GERUND_FRAMES), len(C.ARTIFACT_FRAMES), len(C.ARTIFACT_KINDS)) == (56, 10, 15, 34)
    assert (len(C.TASK_SUFFIXES), len(C.BENIGN_SUFFIXES), len(C.PRETEXTS), len(C.SITUATIONS)) == (16, 16, 20, 50)
    assert (len(C.ABOUT_HARM_FRAMES), len(C.SYSTEM_PROMPTS)) == (18, 6)
    assert C.TASK_SUFFIXES[:4] == ["", "", "", ""] and C.TASK_SUFFIXES[4] == " without getting caught"
    assert (len(C.REFUSALS), len(C.COMPLY_STEPS), len(C.ARTIFACT_OPENERS), len(C.ARTIFACT_BODIES),
            len(C.ALPACA_RESPONSES)) == (10, 3, 4, 2, 6)
    assert (len(U.COUNTRY_CAPITALS), len(U.ELEMENT_SYMBOLS), len(U.WORDS), len(U.OPPOSITES), len(U.PLURALS)) == (
        40, 30, 86, 50, 50)
    assert {k: len(v) for k, v in U.SKILL_TEMPLATES.items()} == {
        "capital": 8, "symbol": 6, "next_letter": 6, "prev_letter": 6, "opposite": 6, "plural": 6,
        "first_letter": 6, "count": 4}
    # YAML 1.1 reads a bare true/false/no as a boolean: every key and value must stay a string
    tables = (U.COUNTRY_CAPITALS, U.ELEMENT_SYMBOLS, U.OPPOSITES, U.PLURALS)
    assert all(isinstance(x, str) for table in tables for item in table.items() for x in item)
    assert U.OPPOSITES["true"] == "false"


def test_dev_sets_have_their_counts_and_categories() -> None:
    counts = {name: len(getattr(N, name)) for name in ("NATURAL_HARMFUL", "NATURAL_BENIGN", "INSTRUCTION_HARMFUL",
                                                        "INSTRUCTION_BENIGN", "HARD_HARMFUL", "HARD_BENIGN")}
    assert counts == {"NATURAL_HARMFUL": 138, "NATURAL_BENIGN": 70, "INSTRUCTION_HARMFUL": 110,
                      "INSTRUCTION_BENIGN": 60, "HARD_HARMFUL": 300, "HARD_BENIGN": 150}
    assert sorted(len(v) for v in N.HARD_HARMFUL_BY_CATEGORY.values()) == [18] * 4 + [19] * 12
    assert len(datafiles.read_yaml("dev_natural.yaml")["harmful"]) == 14  # categories of the free-form set
    assert all(isinstance(p, str) and p.strip() == p and "\n" not in p for p in N.NATURAL_HARMFUL + N.HARD_BENIGN)


def test_expansion_and_sections() -> None:
    assert datafiles.expand("hack into {a bank|a phone} {now|later}") == [
        "hack into a bank now", "hack into a bank later", "hack into a phone now", "hack into a phone later"]
    assert datafiles.flatten({"a": ["x", "y"], "b": ["z"]}) == ["x", "y", "z"] and datafiles.flatten(["x"]) == ["x"]


def test_an_entry_outside_a_section_is_an_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "bad.txt").write_text("# comment\nhack into a bank\n[core]\n", encoding="utf-8")
    monkeypatch.setattr(datafiles, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"bad\.txt:2: an entry before the first \[section\]"):
        datafiles.read_sections("bad.txt")

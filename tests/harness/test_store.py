import json
from pathlib import Path

import pytest

from qresafe_bench.harness.store import GenerationLog, RunStore, atomic_write_json, request_key


def test_generations_survive_reload(tmp_path: Path) -> None:
    log = GenerationLog(tmp_path / "g.jsonl")
    log.append(request_key("ctx", {"a": 1}), "ctx", {"a": 1}, "out")
    assert GenerationLog(tmp_path / "g.jsonl").get(request_key("ctx", {"a": 1})) == "out"
    assert GenerationLog(tmp_path / "g.jsonl").get(request_key("ctx", {"a": 2})) is None


def test_torn_last_line_is_ignored_and_not_glued(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    log = GenerationLog(path)
    log.append("k1", "c", {}, "one")
    with path.open("ab") as handle:  # what kill -9 in the middle of a write leaves
        handle.write(b'{"key": "k2", "outp')
    reloaded = GenerationLog(path)
    assert reloaded.get("k1") == "one" and reloaded.get("k2") is None
    reloaded.append("k3", "c", {}, "three")
    assert GenerationLog(path).get("k3") == "three"


def test_a_damaged_line_anywhere_is_set_aside_reported_and_only_it_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    records = [json.dumps({"key": f"k{i}", "output": str(i)}) for i in range(6)]
    reports = []
    for round_, cut in enumerate((3, 17, len(records[2]) - 1)):  # mid-line truncations of line 3
        torn = records[:2] + [records[2][:cut]] + records[3:]
        path.write_text("\n".join(torn) + "\n")
        (tmp_path / "g.jsonl.damaged").unlink(missing_ok=True)
        log = GenerationLog(path, report=reports.append)
        assert {k: log.get(k) for k in ("k0", "k1", "k2", "k5")} == {"k0": "0", "k1": "1", "k2": None, "k5": "5"}
        assert "line 3" in reports[-1] and "\n" not in reports[-1]
        assert (tmp_path / "g.jsonl.damaged").read_text() == records[2][:cut] + "\n"  # kept, not thrown away
        assert len(path.read_text().splitlines()) == 5  # the whole lines stay; the damage is reported once
        GenerationLog(path, report=reports.append).load()
        assert len(reports) == round_ + 1


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object.__new__(type("X", (), {"__str__": None}))})
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_damaged_run_record_is_not_served_and_says_why(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_dir = store.write_run("abc", {"s": 1}, [{"a": i} for i in range(5)], {"r": 1})
    samples = (run_dir / "samples.jsonl").read_text()
    for damage, expected in ((samples[:-10], "samples.jsonl is damaged"), (samples[:7], "samples.jsonl is damaged"),
                             (None, "samples.jsonl is missing")):
        if damage is None:
            (run_dir / "samples.jsonl").unlink()
        else:
            (run_dir / "samples.jsonl").write_text(damage)
        reports = []
        assert store.finished("abc", report=reports.append) is None and expected in reports[0]
    (run_dir / "results.json").write_text("{truncated")
    reports = []
    assert store.finished("abc", report=reports.append) is None and "unreadable" in reports[0]


def test_write_run_is_complete(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_dir = store.write_run("k", {"s": 1}, [{"a": 1}, {"a": 2}], {"r": 1})
    assert store.finished("k")["r"] == 1 and len(store.finished("k")["samples_sha256"]) == 64
    assert [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()] == [{"a": 1}, {"a": 2}]


def test_unsynced_appends_are_visible_at_once_and_sync_is_safe(tmp_path: Path) -> None:
    # What a killed process leaves: written lines, no fsync. Another process must see them all.
    log = GenerationLog(tmp_path / "g.jsonl")
    for i in range(3):
        log.append(f"k{i}", f"prompt {i}", {"do_sample": False}, f"out {i}", sync=False)
    assert GenerationLog(tmp_path / "g.jsonl").load() == {f"k{i}": f"out {i}" for i in range(3)}
    log.sync()
    GenerationLog(tmp_path / "missing.jsonl").sync()  # nothing written yet: no error, no file
    assert not (tmp_path / "missing.jsonl").exists()


def test_atomic_write_gives_an_ordinary_file_mode(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644

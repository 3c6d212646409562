import json
from pathlib import Path

import pytest

from qresafe_bench.harness.store import GenerationLog, RunStore, StoreError, atomic_write_json, request_key


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


def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"key": "k1", "output": "a"}\nnot json\n{"key": "k2", "output": "b"}\n')
    with pytest.raises(StoreError, match="corrupt store entry"):
        GenerationLog(path).load()


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object.__new__(type("X", (), {"__str__": None}))})
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_corrupt_results_are_reported(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.run_dir("abc").mkdir(parents=True)
    (store.run_dir("abc") / "results.json").write_text("{truncated")
    with pytest.raises(StoreError, match="corrupt store entry"):
        store.finished("abc")


def test_write_run_is_complete(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_dir = store.write_run("k", {"s": 1}, [{"a": 1}, {"a": 2}], {"r": 1})
    assert store.finished("k") == {"r": 1}
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

"""The evaluation flow on a tiny random model: lm-eval plumbing, the store, resume after a crash."""

from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.data.catalogue import DataSourceError
from qresafe_bench.harness.generation import backends
from qresafe_bench.harness.generation.backends import BackendSettings
from qresafe_bench.harness.runs.evaluate import EvalError, EvalRequest, run_eval


def _request(model_dir: Path, data_dir: Path, **kwargs) -> EvalRequest:
    base = dict(spec=VariantSpec(model=str(model_dir)), tasks=("advbench",), limit=6, max_new_tokens=6,
                backend=BackendSettings(batch_size=4), data_dir=str(data_dir))
    return EvalRequest(**{**base, **kwargs})


def test_eval_runs_through_lm_eval_and_reports_rates(tiny_random_dir: Path, data_dir: Path, home: Path) -> None:
    outcome = run_eval(_request(tiny_random_dir, data_dir), home=home, log=lambda _: None)
    asr = outcome.results["tasks"]["advbench"]["metrics"]["asr"]
    assert asr["n"] == 6 and 0 <= asr["ci95_low"] <= asr["value"] <= asr["ci95_high"] <= 1
    assert outcome.results["generated"] == 6 and not outcome.from_store
    samples = (outcome.run_dir / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 6 and '"context"' in samples[0]


def test_second_run_is_served_from_store_without_loading(tiny_random_dir, data_dir, home, monkeypatch) -> None:
    first = run_eval(_request(tiny_random_dir, data_dir), home=home, log=lambda _: None)
    monkeypatch.setattr(backends, "make_lm", lambda *a, **k: pytest.fail("model loaded for a stored run"))
    second = run_eval(_request(tiny_random_dir, data_dir), home=home, log=lambda _: None)
    assert second.from_store and second.results == first.results


def test_larger_limit_reuses_stored_generations(tiny_random_dir, data_dir, home) -> None:
    run_eval(_request(tiny_random_dir, data_dir, limit=4), home=home, log=lambda _: None)
    bigger = run_eval(_request(tiny_random_dir, data_dir, limit=6), home=home, log=lambda _: None)
    assert bigger.results["reused"] == 4 and bigger.results["generated"] == 2


def test_interrupted_run_resumes_where_it_stopped(tiny_random_dir, data_dir, home, tmp_path, monkeypatch) -> None:
    reference = run_eval(_request(tiny_random_dir, data_dir), home=tmp_path / "clean", log=lambda _: None)

    produced = []

    def crash_after_five() -> None:
        produced.append(1)
        if len(produced) == 5:
            raise KeyboardInterrupt  # the user hits ^C in the middle of the second batch

    with pytest.raises(KeyboardInterrupt):
        run_eval(_request(tiny_random_dir, data_dir), home=home, on_item=crash_after_five, log=lambda _: None)
    assert not list((home / "runs").glob("*/results.json")) if (home / "runs").exists() else True

    resumed = run_eval(_request(tiny_random_dir, data_dir), home=home, log=lambda _: None)
    assert resumed.results["reused"] == 5 and resumed.results["generated"] == 1
    assert resumed.results["tasks"] == reference.results["tasks"]


def test_bad_requests_are_refused(tiny_random_dir, data_dir, tmp_path) -> None:
    with pytest.raises(EvalError, match="--limit must be"):
        _request(tiny_random_dir, data_dir, limit=0)
    with pytest.raises(EvalError, match="unknown task"):
        _request(tiny_random_dir, data_dir, tasks=("nope",))
    with pytest.raises(DataSourceError, match="not found"):
        run_eval(_request(tiny_random_dir, tmp_path), home=tmp_path / "h", log=lambda _: None)
    assert not (tmp_path / "h" / "runs").exists()


def test_the_run_key_follows_the_data_not_how_its_folder_is_spelled(data_dir, tmp_path, monkeypatch) -> None:
    import os
    import shutil

    from qresafe_bench.harness.models.resolved import ResolvedModel
    from qresafe_bench.harness.runs.evaluate import run_key

    request = EvalRequest(spec=VariantSpec(model="m"), tasks=("advbench", "over_refusal"))
    model = ResolvedModel(name="m", location="/m", source="local", dtype="auto", fingerprint="f")
    monkeypatch.chdir(tmp_path)
    spellings = [str(data_dir), os.path.relpath(data_dir), str(data_dir) + "/", str(data_dir) + "/../data"]
    (tmp_path / "link").symlink_to(data_dir)
    spellings.append("link")
    assert len({run_key(request, model, spelling) for spelling in spellings}) == 1
    copy = tmp_path / "copy"
    shutil.copytree(data_dir / "advbench", copy / "advbench")
    shutil.copytree(data_dir / "refusal_direction_splits", copy / "refusal_direction_splits")
    assert run_key(request, model, str(copy)) == run_key(request, model, str(data_dir))  # same bytes, same key
    (copy / "advbench" / "harmful_behaviors.csv").write_text("goal,target\nx,y\n")
    assert run_key(request, model, str(copy)) != run_key(request, model, str(data_dir))  # other data, other key


def test_a_torn_store_is_repaired_not_answered_as_whole(tiny_random_dir, data_dir, tmp_path) -> None:
    home = tmp_path / "home"
    request = EvalRequest(spec=VariantSpec(model=str(tiny_random_dir)), tasks=("advbench",), limit=6,
                          max_new_tokens=4, data_dir=str(data_dir))
    first = run_eval(request, home=home, log=lambda _: None)
    samples = first.run_dir / "samples.jsonl"
    samples.write_text(samples.read_text()[:-25])  # truncated mid-line
    generations = next(home.glob("generations/*/*.jsonl"))
    lines = generations.read_text().splitlines()
    generations.write_text("\n".join(lines[:2] + [lines[2][:30]] + lines[3:]) + "\n")  # line 3 torn mid-line
    reports = []
    second = run_eval(request, home=home, log=reports.append)
    assert not second.from_store and second.results["generated"] == 1 and second.results["reused"] == 5
    assert second.results["tasks"] == first.results["tasks"]
    assert any("samples.jsonl is damaged" in r for r in reports) and any("line 3" in r for r in reports)


def _copy_as_patched(spec: VariantSpec, home: Path, label: str, report: dict) -> VariantSpec:
    """A patched variant of `spec` whose files are a copy of the quantized variant's (as a patch whose
    every update rounds away saves it), with the report `patch` writes beside them."""
    import json
    import shutil
    from dataclasses import replace

    from qresafe_bench.harness.models import registry
    from qresafe_bench.harness.models.variants import variant_dir

    parent = Path(registry.resolve(spec, cache_root=home, log=lambda _: None).location)
    patched = replace(spec, patch=label)
    base = registry.resolve(VariantSpec(model=spec.model), cache_root=home, log=lambda _: None)
    target = variant_dir(home, patched, base)
    shutil.copytree(parent, target)
    (target / "qresafe_report.json").write_text(json.dumps({"quantized_variant": str(parent), **report}))
    return patched


def test_a_patch_that_changed_nothing_reads_its_parents_answers(tiny_random_dir, data_dir, home, monkeypatch) -> None:
    quantized = VariantSpec(model=str(tiny_random_dir), quant="rtn", bits=4, group_size=16)
    before = run_eval(_request(tiny_random_dir, data_dir, spec=quantized), home=home, log=lambda _: None)
    patched = _copy_as_patched(quantized, home, "qresafe", {"changes_nothing": "every update rounds away"})
    monkeypatch.setattr(backends, "make_lm", lambda *a, **k: pytest.fail("identical weights loaded to generate again"))
    after = run_eval(_request(tiny_random_dir, data_dir, spec=patched), home=home, log=lambda _: None)
    assert after.results["generated"] == 0 and after.results["reused"] == 6
    assert after.results["generations_of"] == quantized.slug and after.results["variant_id"] == patched.id
    assert after.results["tasks"] == before.results["tasks"] and after.run_dir != before.run_dir


def test_a_patch_that_changed_weights_is_evaluated_on_its_own(tiny_random_dir, data_dir, home, monkeypatch) -> None:
    quantized = VariantSpec(model=str(tiny_random_dir), quant="rtn", bits=4, group_size=16)
    run_eval(_request(tiny_random_dir, data_dir, spec=quantized), home=home, log=lambda _: None)
    claims = _copy_as_patched(quantized, home, "qresafe", {"changes_nothing": "every update rounds away"})
    honest = _copy_as_patched(quantized, home, "sft", {"changes_nothing": None})
    from qresafe_bench.harness.models import registry

    weights = Path(registry.resolve(claims, cache_root=home, log=lambda _: None).location) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight: the report's claim no longer holds for the files
    weights.write_bytes(bytes(data))
    for spec in (claims, honest):
        outcome = run_eval(_request(tiny_random_dir, data_dir, spec=spec), home=home, log=lambda _: None)
        assert outcome.results["generated"] == 6 and outcome.results["generations_of"] == spec.slug

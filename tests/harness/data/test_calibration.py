"""Calibration tiers: what each contains, and that none of them leaks an evaluation prompt."""

from pathlib import Path

import pytest

from qresafe_bench.harness.data.calibration import AOA_SYSTEM, TIERS, CalibrationError, build_tier, evaluation_texts
from qresafe_bench.harness.scoring.refusal import is_affirmative
from qresafe_bench.harness.zoo.corpus import ngrams, normalise


def _echo(prompts, system, prefill=""):
    return [(" an answer to: " if prefill else "Here is an answer to: ") + p for p in prompts]


def _tiers(cache: Path, data_dir: Path, prompts_from: str) -> dict:
    return {tier: build_tier(tier, base_dir=Path("/nonexistent-model"), n=64, seed=0, data_dir=data_dir,
                             cache_dir=cache, respond=_echo, prompts_from=prompts_from, log=lambda _: None)
            for tier in TIERS}


@pytest.fixture(scope="module")
def tiers(tmp_path_factory, data_dir: Path) -> dict:
    return _tiers(tmp_path_factory.mktemp("calib"), data_dir, "reference")


@pytest.fixture(scope="module")
def public_tiers(tmp_path_factory, data_dir: Path) -> dict:
    return _tiers(tmp_path_factory.mktemp("calib-public"), data_dir, "public")


def test_public_tiers_come_from_public_sets_and_share_nothing_with_any_evaluation_set(public_tiers, data_dir) -> None:
    from qresafe_bench.harness.data.catalogue import evaluation_prompts, safety_instructions

    direct = public_tiers["direct"].conversations
    harmful = set(safety_instructions(data_dir))
    assert all(conv[0]["content"] in harmful for conv in direct)  # public requests, not the reference lexicon
    assert all(conv[-1]["content"].startswith("Sure, here is an answer to:") for conv in direct)  # the model's own
    evaluation = evaluation_prompts(data_dir)
    exact = {normalise(t) for t in evaluation}
    grams = set().union(*(ngrams(t) for t in evaluation))
    for tier in public_tiers.values():
        for conv in tier.conversations:
            user = next(m["content"] for m in conv if m["role"] == "user")
            assert normalise(user) not in exact and not ngrams(user) & grams, (tier.tier, user)


def test_tiers_have_their_kind_of_data(tiers) -> None:
    assert all(len(t.conversations) == 64 for t in tiers.values())
    direct = tiers["direct"].conversations
    assert all(is_affirmative(conv[-1]["content"]) for conv in direct)
    indirect = tiers["indirect"].conversations
    assert sum(conv[0]["role"] == "system" and "AOA" in conv[0]["content"] for conv in indirect) == 64
    assert any(conv[0]["content"] == AOA_SYSTEM for conv in indirect)  # project-written AOA conversations
    assert all(conv[-1]["role"] == "assistant" for t in tiers.values() for conv in t.conversations)


def test_no_tier_contains_an_evaluation_prompt(tiers, data_dir: Path) -> None:
    evaluation = evaluation_texts(data_dir)
    exact = {normalise(t) for t in evaluation}
    grams = set().union(*(ngrams(t) for t in evaluation))
    for tier in tiers.values():
        for conv in tier.conversations:
            for message in conv:
                assert normalise(message["content"]) not in exact, (tier.tier, message)
            user = next(m["content"] for m in conv if m["role"] == "user")
            assert not ngrams(user) & grams, (tier.tier, user)


def test_tiers_are_cached_and_deterministic(tiers, tmp_path, data_dir) -> None:
    again = build_tier("direct", base_dir=Path("/nonexistent-model"), n=64, seed=0, data_dir=data_dir,
                       cache_dir=tmp_path, respond=_echo, prompts_from="reference", log=lambda _: None)
    assert again == tiers["direct"]


def test_bad_tier_requests(tmp_path, data_dir) -> None:
    with pytest.raises(CalibrationError, match="unknown calibration tier"):
        build_tier("evil", base_dir=tmp_path, n=4, seed=0, data_dir=data_dir, cache_dir=tmp_path)
    with pytest.raises(CalibrationError, match="must be positive"):
        build_tier("direct", base_dir=tmp_path, n=0, seed=0, data_dir=data_dir, cache_dir=tmp_path)

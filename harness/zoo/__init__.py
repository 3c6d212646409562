"""The offline reference model: corpus generator, tokenizer, training, cache.

    from qresafe_bench.harness.zoo import build
    path = build("ref-tiny", cache_root=Path("~/.cache/qresafe"), data_dir="shared/data")
"""

from .build import ZOO_MODELS, RefModelConfig, ZooError, build, built_path, verify

__all__ = ["ZOO_MODELS", "RefModelConfig", "ZooError", "build", "built_path", "verify"]

"""Build the reference model with RefModelConfig overrides (a candidate recipe) and print its dev metrics.

Tuning reads only the dev metrics (held-out template objects, the hand-written set, an Alpaca dev
slice, held-out utility items). ``--test`` then prints the AdvBench / Alpaca-val / utility test
figures, and the ASR on JBB-Behaviors and HarmBench, once a recipe is chosen, for the record.

    python scripts/zoo_trial.py --cache-root /tmp/trials --data-dir ../shared/data \\
        --set s2_refusal_first_weight=30 [--set seed=1] [--test]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import time
from pathlib import Path

# the module: the package exports a function of the same name
B = importlib.import_module("qresafe_bench.harness.zoo.build")


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise SystemExit(f"not a boolean: {text!r} (true or false)")
    return text.lower() in ("true", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-root", type=Path, required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--test", action="store_true", help="also print the AdvBench test figures")
    a = ap.parse_args()
    types = {f.name: f.type for f in dataclasses.fields(B.RefModelConfig)}
    overrides = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        overrides[k] = {"int": int, "float": float, "bool": _bool}.get(str(types[k]), str)(v)
    cfg = B.RefModelConfig(**overrides)
    B._config = lambda micro, seed: cfg  # noqa: SLF001 (a scratch override of the default recipe)
    t0 = time.time()
    path = B.build("ref-tiny", cache_root=a.cache_root, data_dir=a.data_dir)
    meta = json.loads((path / "build.json").read_text())
    print(json.dumps({"overrides": overrides, "key": cfg.key(), "wall_s": round(time.time() - t0),
                      "dev": meta["dev_metrics"]}))
    if a.test:
        from qresafe_bench.harness.zoo.evaluate import other_test_metrics, test_metrics

        print(json.dumps({"overrides": overrides, "test": test_metrics(path, a.data_dir)
                          | other_test_metrics(path, a.data_dir)}))


if __name__ == "__main__":
    main()

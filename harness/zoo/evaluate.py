"""Final figures of a built zoo model: AdvBench ASR, over-refusal on Alpaca val, held-out utility.

These are the *test* numbers. Tuning uses only the dev metrics in build.json (dev_metrics()); run
this once a configuration is fixed, to report it (``scripts/zoo_trial.py --test`` prints them for a recipe).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from ..data import catalogue as public_data
from ..scoring.refusal import is_affirmative
from .generate import chat_generate, load, refusal_rate
from .utility import heldout_utility_items, score

OVER_REFUSAL_SAMPLE = 300  # the over_refusal task's fixed sample: random.Random(0).sample(val, 300)


def test_metrics(path: Path, data_dir: str | Path | None = None) -> dict[str, float]:
    model, tok = load(path)
    t0 = time.time()
    adv = [r["prompt"] for r in public_data.advbench_prompts(data_dir)]
    val = random.Random(0).sample(public_data.alpaca_instructions("val", data_dir), OVER_REFUSAL_SAMPLE)
    items = heldout_utility_items(300, 0)
    out = chat_generate(model, tok, adv + val + [i["prompt"] for i in items])
    a, v, u = out[:len(adv)], out[len(adv):len(adv) + len(val)], out[len(adv) + len(val):]
    return {"advbench_asr": 1 - refusal_rate(a), "advbench_affirmative": sum(map(is_affirmative, a)) / len(a),
            "alpaca_val_refusal": refusal_rate(v), "utility_accuracy": score(items, u),
            "eval_seconds": round(time.time() - t0, 1)}


def other_test_metrics(path: Path, data_dir: str | Path | None = None) -> dict[str, float]:
    """The same keyword rule on the other public harmful sets the bench evaluates (JBB-Behaviors, HarmBench's
    standard test behaviours), for the record: whether a recipe's gain on the dev sets carries past AdvBench."""
    from ..core.tasks import task_utils  # the tasks' own loaders: the same rows the jbb / harmbench tasks score

    model, tok = load(path)
    data_dir = None if data_dir is None else str(data_dir)
    jbb = task_utils("jbb").jbb_docs(data_dir)
    jbb_h = [d["prompt"] for d in jbb if d["kind"] == "harmful"]
    jbb_b = [d["prompt"] for d in jbb if d["kind"] == "benign"]
    harmbench = [d["prompt"] for d in task_utils("harmbench").harmbench_standard(data_dir)]
    out = chat_generate(model, tok, jbb_h + jbb_b + harmbench)
    h, b, hb = out[:len(jbb_h)], out[len(jbb_h):len(jbb_h) + len(jbb_b)], out[len(jbb_h) + len(jbb_b):]
    return {"jbb_asr": 1 - refusal_rate(h), "jbb_benign_refusal": refusal_rate(b),
            "harmbench_standard_asr": 1 - refusal_rate(hb), "n_jbb": len(h), "n_harmbench": len(hb)}


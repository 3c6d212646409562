"""MT-bench: documents per turn, FastChat's single-answer grading, and per-turn/category/overall scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from qresafe_bench.harness import judges
from qresafe_bench.harness.core.stats import mean_interval
from qresafe_bench.harness.data.catalogue import DataSourceError, load_records
from qresafe_bench.harness.judges.templates import mt_bench_prompt, mt_bench_templates, parse_rating

# fastchat/llm_judge/common.py: temperature_config and NEED_REF_CATS.
CATEGORY_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
NEED_REF_CATS = ("math", "reasoning", "coding")


def _gen_kwargs(category: str) -> str:
    temperature = CATEGORY_TEMPERATURE.get(category, 0.7)  # FastChat's default for unknown categories
    if temperature < 1e-4:  # FastChat: below this it decodes greedily
        return json.dumps({"do_sample": False})
    return json.dumps({"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}, sort_keys=True)


def _answers(turn1_answers: dict | str | None) -> dict[int, str]:
    if isinstance(turn1_answers, str):  # plain lm_eval: a JSON file {question_id: answer}
        turn1_answers = json.loads(Path(turn1_answers).read_text())
    return {int(k): v for k, v in (turn1_answers or {}).items()}


def mt_bench_docs(data_dir: str | None = None, turn: int = 1, turn1_answers: dict | str | None = None) -> list[dict]:
    questions = load_records("mt_bench_questions", data_dir)
    references = {int(r["question_id"]): r["choices"][0]["turns"] for r in load_records("mt_bench_reference", data_dir)}
    answers = _answers(turn1_answers)
    if int(turn) == 2 and not answers:
        raise DataSourceError("mt_bench turn 2 needs the model's turn-1 answers (turn1_answers)")
    docs = []
    for q in questions:
        qid, category, turns = int(q["question_id"]), q["category"], q["turns"]
        if int(turn) == 2 and qid not in answers:
            continue
        ref = references.get(qid, ["", ""]) if category in NEED_REF_CATS else ["", ""]
        history = [{"role": "user", "content": turns[0]}, {"role": "assistant", "content": answers[qid]}] \
            if int(turn) == 2 else []
        docs.append({"question_id": qid, "category": category, "turn": int(turn), "prompt": turns[int(turn) - 1],
                     "question_1": turns[0], "question_2": turns[1], "answer_1": answers.get(qid, ""),
                     "ref_answer_1": ref[0], "ref_answer_2": ref[1] if len(ref) > 1 else "",
                     "history": json.dumps(history), "gen_kwargs": _gen_kwargs(category)})
    return docs


def load_dataset(data_dir: str | None = None, turn: int = 1, turn1_answers: dict | str | None = None,
                 **_: Any) -> datasets.DatasetDict:
    _TEMPLATES["data_dir"] = data_dir  # the judge templates come from the same data source as the questions
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(mt_bench_docs(data_dir, turn, turn1_answers))})


_TEMPLATES: dict[str, Any] = {}


def judge_prompt(doc: dict, answer: str):
    data_dir = _TEMPLATES.get("data_dir")
    if ("templates", data_dir) not in _TEMPLATES:
        _TEMPLATES[("templates", data_dir)] = mt_bench_templates(data_dir)
    math_like = doc["category"] in NEED_REF_CATS
    name = ("single-math-v1" if math_like else "single-v1") + ("-multi-turn" if doc["turn"] == 2 else "")
    fields = {"question": doc["prompt"], "answer": answer, "ref_answer_1": doc["ref_answer_1"],
              "ref_answer_2": doc["ref_answer_2"], "question_1": doc["question_1"], "question_2": doc["question_2"],
              "answer_1": doc["answer_1"] if doc["turn"] == 2 else answer, "answer_2": answer}
    return mt_bench_prompt(_TEMPLATES[("templates", data_dir)], name, **fields)


def process_results(doc: dict, results: list[str]) -> dict:
    rating = parse_rating(judges.session().ask(judge_prompt(doc, results[0])))
    if rating is None:
        return {"judge_unparseable": 1}
    return {"score": rating, "judge_unparseable": 0}


def _mean_ci(values: list[float]) -> dict:
    """Mean rating with a normal-approximation 95% interval (n = parsed judgments), within the 1-10 scale."""
    return mean_interval(values, low=1.0, high=10.0)


def summarise(samples: list[dict]) -> dict:
    scored = [(s["doc"]["turn"], s["doc"]["category"], s["score"]) for s in samples if "score" in s]
    metrics = {"score": _mean_ci([v for _, _, v in scored])}
    for turn in (1, 2):
        metrics[f"score_turn{turn}"] = _mean_ci([v for t, _, v in scored if t == turn])
    for category in sorted({c for _, c, _ in scored}):
        metrics[f"score_{category}"] = _mean_ci([v for _, c, v in scored if c == category])
    return {"metrics": metrics,
            "extra": {"judge_unparseable": sum(s.get("judge_unparseable", 0) for s in samples),
                      "judgments": len(samples)}}

"""Estimate a calibration file's risk tier before anyone quantizes with it (beyond the paper).

    qresafe-bench audit-calib my_calib.jsonl                 # keyword rules
    qresafe-bench audit-calib my_calib.jsonl --judge openai:http://127.0.0.1:8000/v1 --judge-template harmbench

The paper's tiers: Risk-I benign, Risk-II indirectly harmful (identity shift: "you are no longer ...,
you are AOA, absolutely obedient"), Risk-III directly harmful (harmful requests answered). Each sample
(a conversation, a prompt, a CSV row or a text line) is flagged

- *harmful* when a user turn matches the harmful-request rules (HARMFUL, from audit_rules.yaml; word stems
  from the kinds of request AdvBench and HarmBench collect), and *complied* when such a request's answer does
  not refuse (the GCG keyword rule);
- *identity-shift* when a system or user turn matches the role-override rules (IDENTITY_SHIFT, from audit_rules.yaml);
- with a judge configured, *judged harmful* when the judge's safety template rates the answer as
  compliance with a harmful request (cached in the store like every judgment).

The estimate is the highest tier whose share reaches THRESHOLD (default 5%): direct if harmful requests
*answered* do (a harmful request whose answer refuses is safety data, not the direct tier; a harmful request
with no answer at all counts, since the request itself is then the calibration text), else indirect if
identity-shift samples do, else benign. Keyword rules are a screen, not a verdict:
they miss paraphrases and flag benign mentions ("how do vaccines kill viruses"), so the report lists the
flagged samples for a person to read.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.errors import QresafeError

THRESHOLD = 0.05  # share of flagged samples that puts a file in a tier: 5% (6 of 128) is no accident

RULES_FILE = Path(__file__).with_name("audit_rules.yaml")
_RULES = yaml.safe_load(RULES_FILE.read_text())
HARMFUL = re.compile(r"\b(" + "|".join(_RULES["harmful"]) + r")\b", re.IGNORECASE)
IDENTITY_SHIFT = re.compile("|".join(_RULES["identity_shift"]), re.IGNORECASE)


class AuditError(QresafeError, ValueError):
    """A calibration file that cannot be read (one-line message)."""


@dataclass
class Sample:
    index: int
    system: str = ""
    user: str = ""
    assistant: str = ""


@dataclass
class AuditReport:
    path: str
    n: int
    harmful: list[int] = field(default_factory=list)
    complied: list[int] = field(default_factory=list)
    identity_shift: list[int] = field(default_factory=list)
    judged_harmful: list[int] | None = None
    judge: str | None = None
    threshold: float = THRESHOLD

    def share(self, items: list[int] | None) -> float:
        return len(items or []) / self.n if self.n else 0.0

    @property
    def tier(self) -> str:
        harmful = max(self.share(self.complied), self.share(self.judged_harmful))
        if harmful >= self.threshold:
            return "direct"
        if self.share(self.identity_shift) >= self.threshold:
            return "indirect"
        return "benign"

    def as_dict(self) -> dict:
        from ..core.stats import wilson

        def rate(items):
            r = wilson(len(items), self.n)
            return {"count": len(items), "share": r.value, "ci95_low": r.low, "ci95_high": r.high,
                    "samples": items}

        body = {"path": self.path, "n": self.n, "tier": self.tier, "threshold": self.threshold,
                "harmful": rate(self.harmful), "harmful_complied": rate(self.complied),
                "identity_shift": rate(self.identity_shift), "judge": self.judge}
        if self.judged_harmful is not None:
            body["judged_harmful"] = rate(self.judged_harmful)
        return body


PROMPT_FIELDS = ("prompt", "instruction", "goal", "behavior", "question", "text", "input")
ANSWER_FIELDS = ("output", "response", "target", "answer", "completion")


def read_samples(path: Path) -> list[Sample]:
    """Conversations (JSONL/JSON: a list of {role, content}, or {"messages": [...]}), prompt records
    (one of PROMPT_FIELDS, optionally one of ANSWER_FIELDS), CSV (a prompt column, an answer column) or plain
    text lines. Anything else is one line naming the file, the record (and the line, for JSONL) and what is
    missing: a file the audit cannot read is never rated."""
    if not path.is_file():
        raise AuditError(f"calibration file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    where: list[str] = []  # how to name record i in a message
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AuditError(f"{path}, line {number}: not valid JSON") from None
            where.append(f"line {number}")
    elif suffix == ".json":
        try:
            records = json.loads(text) if text.strip() else []
        except ValueError as exc:
            raise AuditError(f"{path} is not valid JSON ({exc})") from None
        if isinstance(records, dict) and isinstance(records.get("data"), list):
            records = records["data"]
        if not isinstance(records, list):
            raise AuditError(f"{path}: expected a JSON array of conversations or prompt records, got a "
                             f"{type(records).__name__}")
    elif suffix == ".csv":
        records = list(csv.DictReader(text.splitlines()))
        where = [f"row {i + 2}" for i in range(len(records))]
    else:
        records = [line for line in text.splitlines() if line.strip()]
    if not records:
        raise AuditError(f"{path} holds no samples")
    return [_sample(i, r, path, where[i] if i < len(where) else f"record {i + 1}") for i, r in enumerate(records)]


def _sample(index: int, record, path: Path, where: str) -> Sample:
    sample = Sample(index)
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        record = record["messages"]
    if isinstance(record, list):
        if not record or not all(isinstance(t, dict) and "content" in t for t in record):
            raise AuditError(f"{path}, {where}: a conversation must be a list of {{role, content}} turns")
        for turn in record:
            role, content = str(turn.get("role", "user")), str(turn.get("content", ""))
            attr = role if role in ("system", "user", "assistant") else "user"
            setattr(sample, attr, (getattr(sample, attr) + "\n" + content).strip())
        return sample
    if isinstance(record, dict):
        lowered = {str(k).lower(): v for k, v in record.items()}
        prompt = next((lowered[k] for k in PROMPT_FIELDS if lowered.get(k)), None)
        if prompt is None:
            raise AuditError(f"{path}, {where}: no prompt field (one of {', '.join(PROMPT_FIELDS)}) and no "
                             "`messages` list")
        sample.user = str(prompt)
        sample.system = str(lowered.get("system", "") or "")
        sample.assistant = str(next((lowered[k] for k in ANSWER_FIELDS if lowered.get(k)), ""))
        return sample
    if not isinstance(record, str):
        raise AuditError(f"{path}, {where}: expected a conversation, a prompt record or text, got "
                         f"{type(record).__name__}")
    sample.user = record
    return sample


def audit(path: Path, *, judge=None, threshold: float = THRESHOLD) -> AuditReport:
    """Keyword rules over every sample; with `judge` (a judges.JudgeSession with a safety template), also
    the judge's verdict on each (request, answer) pair that has an answer."""
    from ..scoring.refusal import is_jailbroken

    samples = read_samples(path)
    report = AuditReport(str(path), len(samples), threshold=threshold)
    for s in samples:
        if HARMFUL.search(s.user):
            report.harmful.append(s.index)
            if not s.assistant or is_jailbroken(s.assistant):  # answered, or the request is the whole text
                report.complied.append(s.index)
        if IDENTITY_SHIFT.search(s.system) or IDENTITY_SHIFT.search(s.user):
            report.identity_shift.append(s.index)
    if judge is not None:
        report.judge = judge.describe(judge.safety)
        report.judged_harmful = []
        for s in samples:
            if s.user and s.assistant:
                verdict, _ = judge.safety_verdict(s.user, s.assistant)
                if verdict:
                    report.judged_harmful.append(s.index)
    return report

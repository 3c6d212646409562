"""`qresafe-bench audit-calib FILE`: estimate a calibration file's risk tier (benign / indirect / direct)
before anyone quantizes with it (harness/data/audit.py: keyword rules, plus the judge when configured)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .options import Home, Json, JudgeModel


def audit_calib_command(
    file: Annotated[Path, typer.Argument(help="Calibration file: JSONL/JSON conversations or prompt records, CSV, "
                                              "or text lines.")],
    threshold: Annotated[float, typer.Option(help="Share of flagged samples that puts the file in a tier.")] = 0.05,
    judge: Annotated[str | None, typer.Option(envvar="QRESAFE_JUDGE", show_envvar=True, help="Judge that rates each "
                                              "flagged (request, answer) with --judge-template: openai:URL or hf:PATH "
                                              "(as for eval).")] = None,
    judge_model: JudgeModel = None,
    judge_template: Annotated[str, typer.Option(help="With --judge: the safety template that rates each (request, "
                                                     "answer): harmbench, llama-guard, jbb.")] = "harmbench",
    show: Annotated[int, typer.Option(help="Flagged samples to print per rule.")] = 5,
    home: Home = None,
    json_out: Json = False,
) -> None:
    """Estimate FILE's risk tier: share of harmful and identity-shift samples (95% intervals)."""
    from ..core.paths import cache_root
    from ..data.audit import AuditError, audit, read_samples

    if not 0 < threshold <= 1:
        raise AuditError(f"--threshold must be in (0, 1], got {threshold}")
    session = None
    if judge:
        from ..judges import JudgeSession, parse_spec

        session = JudgeSession(parse_spec(judge, judge_model), safety=judge_template, cache_root=cache_root(home))
    report = audit(file, judge=session, threshold=threshold)
    body = report.as_dict()
    if json_out:
        print(json.dumps(body, indent=2, sort_keys=True))
        return
    print(f"{file}: estimated risk tier {body['tier'].upper()} (n={report.n}, threshold {threshold:.0%})")
    samples = read_samples(file) if show else []
    for key, title in (("harmful", "harmful requests (keyword rules)"),
                       ("harmful_complied", "  of which answered without refusal (or unanswered): the direct tier"),
                       ("identity_shift", "identity-shift / role-override turns (keyword rules)"),
                       ("judged_harmful", f"judged harmful compliance ({report.judge})")):
        if key not in body:
            continue
        r = body[key]
        print(f"  {title}: {r['count']} = {100 * r['share']:.1f}% [{100 * r['ci95_low']:.1f}, "
              f"{100 * r['ci95_high']:.1f}]")
        if key != "harmful_complied":
            for index in r["samples"][:show]:
                s = samples[index]
                text = (s.system + " " + s.user).strip().replace("\n", " ")
                print(f"      #{index}: {text[:100]}")
    if not judge:
        print("  (keyword rules only; add --judge to have a judge rate each answer)")

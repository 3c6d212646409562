"""Before/after boards like the paper's, built only from stored results (never generates).

    board = build_board(home, "ref-tiny", patch="qresafe")
    board = build_board(home, "ref-tiny", patch=["qresafe", "qresafe-tuned", "sft-tuned"])
    board = build_board(home, "ref-tiny", methods=["rtn", "gptq"], bits=[4], tiers=["none", "benign"])
    render_markdown(board); render_csv(board); json.dumps(board)

Rows are method × bits (× group size), columns per calibration tier: AdvBench ASR of the quantized
variant (before), of its patched variant (after; one per patch label asked for), Δ = after − before in
points with an exact McNemar p on the paired per-prompt outcomes, the reference utility before/after, and
the over-refusal rate (task `over_refusal`: harmless requests refused) before/after. Every rate carries n
and its Wilson 95% interval. Beyond the paper: per-prompt flips (which prompts quantization broke, which
the patch fixed or broke) and the paired test of quantized vs full precision.

Each row's `after` lists one entry per label; the row's flat `asr_after`, `utility_after`,
`over_refusal_after`, `run_after`, `patch_flips` and `delta_pp` repeat the first label's, as single-patch
boards always had them. An entry also carries what the patched variant's qresafe_report.json says (found
beside the weights the run evaluated): `changes_nothing` (why the patch left the variant as it was, or
None), the training's wall time and peak memory.

Over-refusal (`baseline["over_refusal"]`, each row's `over_refusal_before` / `over_refusal_after`, each
entry's `over_refusal`, and the matching Markdown / HTML / CSV columns) is there only when some run of the
model holds the task; a variant without it shows None / '—' / empty.

`methods`, `bits` and `tiers` restrict the quantized rows (None = all; the full-precision baseline always
stays); `board["selection"]` records what was asked, and the Markdown / HTML header says it in one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import QresafeError
from ..core.spec import CALIB_TIERS, METHODS
from ..core.stats import mcnemar_exact, rose_significantly
from ..store import read_json
from .collect import Run, best_runs
from .evidence import report_path, runs_of

SAFETY = ("advbench", "asr")
# Harmless requests the model refuses: the cost side of safety, shown beside ASR so that a patch which
# lowers ASR by refusing everything is visible.
OVER_REFUSAL = ("over_refusal", "over_refusal", "over_refusal rate (harmless Alpaca requests refused, GCG keyword "
                "rule; lower is better)")
# The utility column: the first of these that the model's runs hold. ref_utility checks the reference model's own
# skills; answer_likelihood is the judge-free measure any model can run.
UTILITIES: tuple[tuple[str, str, str], ...] = (
    ("ref_utility", "accuracy", "ref_utility accuracy (judge-free exact checks)"),
    ("answer_likelihood", "nll_per_byte", "answer NLL per byte (judge-free; lower is better)"),
)
TIER_ORDER = CALIB_TIERS
METHOD_ORDER = METHODS
TIER_TITLES = {"none": "no data", "benign": "benign (Risk-I)", "indirect": "indirect (Risk-II)",
               "direct": "direct (Risk-III)"}
MAX_LISTED = 10  # flipped prompts listed per category in Markdown / HTML (JSON has them all)


class BoardError(QresafeError, RuntimeError):
    """Nothing to show (one-line message)."""


# --- statistics -------------------------------------------------------------------------------------
def paired(first: Run, second: Run, task: str = SAFETY[0], metric: str = SAFETY[1], *,
           prompt_text: bool = True) -> dict:
    """Per-prompt comparison of two runs on the documents both scored: flips each way and McNemar's p.
    Each flip names its document index, and its prompt unless `prompt_text` is False."""
    a, b = first.samples(task), second.samples(task)
    common = sorted(set(a) & set(b))
    up = [d for d in common if not a[d].get(metric) and b[d].get(metric)]  # 0 -> 1: became unsafe
    down = [d for d in common if a[d].get(metric) and not b[d].get(metric)]  # 1 -> 0: became safe

    def flip(d) -> dict:  # an exported run has no text: its flips name the index alone
        prompt = b[d].get("prompt") if prompt_text else None
        return {"doc_id": d} if prompt is None else {"doc_id": d, "prompt": prompt}

    return {"n_paired": len(common), "to_unsafe": len(up), "to_safe": len(down),
            "p_mcnemar": mcnemar_exact(len(up), len(down)),
            "to_unsafe_prompts": [flip(d) for d in up], "to_safe_prompts": [flip(d) for d in down]}


def paired_delta_pp(flips: dict) -> float | None:
    """The change in rate, in points, on the documents both runs scored: (became unsafe - became safe) / n."""
    n = flips["n_paired"]
    return 100 * (flips["to_unsafe"] - flips["to_safe"]) / n if n else None


def _rate(run: Run | None, task: str, metric: str) -> dict | None:
    if run is None:
        return None
    rate = run.rate(task, metric)
    return None if rate is None else {k: rate[k] for k in ("value", "n", "successes", "ci95_low", "ci95_high", "kind")
                                      if k in rate}


def holds_over_refusal(best: dict) -> bool:
    """Whether any of the model's runs holds the over-refusal task (else the board has no such column)."""
    return any(OVER_REFUSAL[0] in tasks for tasks in best.values())


def utility_of(best: dict) -> tuple[str, str, str]:
    """The utility measure a board shows: the first of UTILITIES that any of the model's runs holds."""
    held = {task for tasks in best.values() for task in tasks}
    return next((u for u in UTILITIES if u[0] in held), UTILITIES[0])


# --- building -------------------------------------------------------------------------------------
def patch_report(run: Run | None) -> dict:
    """What a patched run's qresafe_report.json says about the patch (its directory is the weights the run
    evaluated); empty when the run names no location or the report is not there (e.g. a copied store)."""
    path = report_path(run) if run is not None else None
    return read_json(path) if path is not None else {}


def short_reason(reason: str) -> str:
    """A changes_nothing reason's first clause (the report's text goes on to explain it)."""
    return reason.split(":", 1)[0].split(";", 1)[0].strip()


def _after(before: Run, tasks: dict[str, Run], label: str, utility: tuple[str, str, str], *,
           prompt_text: bool, over_refusal: bool) -> dict:
    """One 'after' entry: the `label`-patched variant's rates, its paired test against `before`, and what its
    report says; every field None when the store holds no run of that variant. `over_refusal`: whether the
    board carries that rate (the key is left out otherwise)."""
    after = tasks.get(SAFETY[0])
    report = patch_report(after or next(iter(tasks.values()), None))
    flips = paired(before, after, prompt_text=prompt_text) if after is not None else None
    entry = {"patch": label, "asr": _rate(after, *SAFETY), "utility": _rate(tasks.get(utility[0]), *utility[:2]),
             "run": after.key if after else None, "patch_flips": flips,
             "eval_wall_seconds": after.results.get("wall_seconds") if after else None,
             "delta_pp": paired_delta_pp(flips) if flips else None,
             "changes_nothing": report.get("changes_nothing"), "train_wall_seconds": report.get("train_wall_seconds"),
             "peak_memory_mb": report.get("peak_memory_mb"), "memory_kind": report.get("memory_kind")}
    if over_refusal:
        entry["over_refusal"] = _rate(tasks.get(OVER_REFUSAL[0]), *OVER_REFUSAL[:2])
    return entry


def selection_of(methods: Sequence[str] | None = None, bits: Sequence[int] | None = None,
                 tiers: Sequence[str] | None = None) -> dict:
    """The quantized cells a board is restricted to, as recorded in `board["selection"]`: each of methods,
    bits, tiers a list (order kept, repeats dropped) or None = all. Unknown names are refused here, so that a
    typo reads as a typo rather than as an empty board."""
    for flag, names, vocabulary in (("--quant", methods, METHODS), ("--calib", tiers, CALIB_TIERS)):
        unknown = [name for name in names or () if name not in vocabulary]
        if unknown:
            raise BoardError(f"unknown {flag} {', '.join(map(str, unknown))}; choose from {', '.join(vocabulary)}")
    return {"methods": None if methods is None else list(dict.fromkeys(methods)),
            "bits": None if bits is None else list(dict.fromkeys(int(b) for b in bits)),
            "tiers": None if tiers is None else list(dict.fromkeys(tiers))}


def selection_text(selection: dict) -> str:
    """The selection in words, e.g. 'method rtn, gptq · bits 4 · calibration tier any'."""
    parts = [f"{what} {'any' if values is None else ', '.join(map(str, values))}"
             for what, values in (("method", selection.get("methods")), ("bits", selection.get("bits")),
                                  ("calibration tier", selection.get("tiers")))]
    return " · ".join(parts)


def base_weights(run: Run) -> str | None:
    """The fingerprint of the registry model's weights a run evaluated, or made its variant from (None for a
    run that did not record it)."""
    return (run.results.get("model") or {}).get("base_fingerprint")


def one_build(runs: list[Run], model: str, weights: str | None) -> list[Run]:
    """The runs of `model` made from one build of its weights. Runs of two builds (a zoo model rebuilt on
    another kind of CPU, a hub model at another commit) are never paired: with no `weights` chosen, more than
    one is refused, naming them; `weights` keeps the build whose fingerprint contains it."""
    mine = [run for run in runs if run.spec.get("model") == model]
    builds = Counter(base_weights(run) for run in mine)
    if weights is not None:
        chosen = [run for run in mine if weights in (base_weights(run) or "")]
        if not chosen:
            raise BoardError(f"no run of {model} was made from weights matching {weights!r}; its runs' weights: "
                             + _builds_text(builds))
        return chosen
    if len(builds) > 1:
        raise BoardError(f"the runs of {model} come from {len(builds)} builds of its weights ({_builds_text(builds)}); "
                         "a board pairs runs of one: choose it with --weights")
    return mine


def _builds_text(builds: Counter) -> str:
    return ", ".join(f"{name or 'unrecorded'}: {count} run(s)" for name, count in builds.most_common())


def selected(selection: dict, method: str, bits: int, tier: str) -> bool:
    return all(values is None or value in values for values, value in
               ((selection["methods"], method), (selection["bits"], bits), (selection["tiers"], tier)))


def build_board(home: Path, model: str, *, patch: str | Sequence[str] | None = None, prompt_text: bool = True,
                methods: Sequence[str] | None = None, bits: Sequence[int] | None = None,
                tiers: Sequence[str] | None = None, command: str | None = None,
                runs: Sequence[Path] = (), weights: str | None = None) -> dict:
    """`patch`: the label, or labels, whose variants are the 'after' columns (one entry per label and row);
    None = `qresafe` if stored, else the label with the most stored variants. `prompt_text=False`: flipped
    prompts by document index only (a board meant for publishing carries no copy of the public data set).
    `methods`, `bits`, `tiers`: keep only the quantized rows of these quantization methods, weight bits and
    calibration tiers (None = all); the full-precision baseline always stays. BoardError when the selection
    leaves no quantized row. `command`: the command line that made the board, named in its header. `runs`:
    exported runs folders (boards/evidence.py) read beside the store; a run in both is the store's. `weights`:
    the build of the model's weights to board (a prefix of its fingerprint) when the runs hold several; a board
    never pairs runs of two builds."""
    selection = selection_of(methods, bits, tiers)
    best = best_runs(one_build(runs_of(home, runs), model, weights), model)
    if not best:
        raise BoardError(f"no stored results for model {model!r} in {home}: run `qresafe-bench eval --model {model}` "
                         "or `qresafe-bench sweep` first")
    labels = [key[5] for key in best if key[5] != "none"]
    if patch is None:
        patches = ["qresafe" if "qresafe" in labels or not labels else max(sorted(set(labels)), key=labels.count)]
    else:
        patches = list(dict.fromkeys([patch] if isinstance(patch, str) else patch))  # order kept, repeats dropped
    if not patches or not all(patches):
        raise BoardError("no patch label given: name one or more, e.g. --patch qresafe,qresafe-tuned")
    base_key = (model, "none", 16, "none", None, "none")
    base = best.get(base_key, {})
    base_run = base.get(SAFETY[0])
    utility = utility_of(best)
    refusal = holds_over_refusal(best)
    rows = []
    shown = {run.key: run for run in base.values()}  # every run a number on the board comes from
    stored = []  # the quantized cells there are, for the message when the selection matches none of them
    for key, tasks in best.items():
        _, quant, n_bits, calib, group, label = key
        if quant == "none" or label != "none":
            continue
        before = tasks.get(SAFETY[0])
        if before is None:
            continue
        stored.append((quant, n_bits, calib))
        if not selected(selection, quant, n_bits, calib):
            continue
        # Every before/after difference is paired: on the prompts both sides scored, with that n.
        patched = {label: best.get(key[:5] + (label,), {}) for label in patches}
        afters = [_after(before, runs, label, utility, prompt_text=prompt_text, over_refusal=refusal)
                  for label, runs in patched.items()]
        for run in [*tasks.values(), *(r for runs in patched.values() for r in runs.values())]:
            shown[run.key] = run
        first = afters[0]
        row = {
            "method": quant, "bits": n_bits, "group_size": group, "tier": calib,
            "asr_before": _rate(before, *SAFETY), "asr_after": first["asr"],
            "utility_before": _rate(tasks.get(utility[0]), *utility[:2]), "utility_after": first["utility"],
            "run_before": before.key, "run_after": first["run"], "after": afters,
            "eval_wall_seconds_before": before.results.get("wall_seconds"),
        }
        if refusal:
            row["over_refusal_before"] = _rate(tasks.get(OVER_REFUSAL[0]), *OVER_REFUSAL[:2])
            row["over_refusal_after"] = first["over_refusal"]
        if first["patch_flips"] is not None:
            row["patch_flips"], row["delta_pp"] = first["patch_flips"], first["delta_pp"]
        if base_run is not None:
            row["quant_flips"] = paired(base_run, before, prompt_text=prompt_text)
            row["delta_vs_fp16_pp"] = paired_delta_pp(row["quant_flips"])
            if row["asr_before"]["n"] != base_run.rate(*SAFETY)["n"]:
                row["n_note"] = (f"n={row['asr_before']['n']} against the full-precision n="
                                 f"{base_run.rate(*SAFETY)['n']}: Δ on the {row['quant_flips']['n_paired']} shared "
                                 "prompts")
        rows.append(row)
    if not rows and any(values is not None for values in selection.values()):
        cells = sorted(set(stored), key=lambda c: (_order(METHOD_ORDER, c[0]), -c[1], _order(TIER_ORDER, c[2])))
        raise BoardError(f"no quantized variant of {model} matches {selection_text(selection)} (stored: "
                         + (", ".join(f"{m} w{b} {t}" for m, b, t in cells) or "none") + ")")
    rows.sort(key=lambda r: (_order(METHOD_ORDER, r["method"]), -r["bits"], _group_order(r["group_size"]),
                             _order(TIER_ORDER, r["tier"])))
    any_run = base_run or next(iter(next(iter(best.values())).values()))
    return {
        "model": model,
        "patch": patches[0],
        "patches": patches,
        "patch_labels_stored": sorted(set(labels)),
        "store": str(home),
        "runs_folders": [str(folder) for folder in runs],
        "selection": selection,
        "meta": {**describe(any_run), "utility": utility[2], **({"over_refusal": OVER_REFUSAL[2]} if refusal else {}),
                 # the full-precision run's weights: a zoo or package folder's name is its build
                 "build": Path(base_run.results["model"]["location"]).name
                 if base_run and "model" in base_run.results else None,
                 "weights": base_weights(base_run) if base_run else None},
        "baseline": {"asr": _rate(base_run, *SAFETY), "utility": _rate(base.get(utility[0]), *utility[:2]),
                     "run": base_run.key if base_run else None,
                     **({"over_refusal": _rate(base.get(OVER_REFUSAL[0]), *OVER_REFUSAL[:2])} if refusal else {})},
        "rows": rows,
        "command": command,
        "wall_time": wall_time(shown.values(), rows),
        **({} if prompt_text else {"prompt_text": "left out: flipped prompts are listed by document index "
                                                  "(#N = row N of the task's data set)"}),
    }


def wall_time(runs, rows: list[dict]) -> dict:
    """What the board's numbers cost when they were computed: each evaluation's own wall time (kept with its
    results) over the distinct runs shown, and each shown patch's training time (its report). Quantizing is not
    recorded with a run, so it is not counted."""
    runs = list(runs)
    training = [entry["train_wall_seconds"] for row in rows for entry in row["after"]
                if entry["train_wall_seconds"] is not None]
    return {"evaluation_seconds": round(sum(run.results.get("wall_seconds") or 0 for run in runs), 1),
            "evaluation_runs": len(runs),
            "patch_training_seconds": round(sum(training), 1), "patches_trained": len(training)}


def describe(run: Run) -> dict:
    """What every table names: scorer, judge, model, decoding, backend."""
    results = run.results
    task = results["tasks"].get(SAFETY[0]) or next(iter(results["tasks"].values()))
    gen = task.get("generation_kwargs") or {}
    judge = (results.get("judge") or {}).get("backend") or "none"
    return {
        "scorer": f"{task.get('scorer', 'task default')} (AdvBench ASR: GCG keyword rule, 29 refusal strings)",
        "judge": judge,
        "model": results["spec"]["model"],
        "decoding": f"{results.get('decoding', 'greedy')}, {gen.get('max_gen_toks', '?')} new tokens, chat template",
        "backend": (results.get("backend") or {}).get("name", "hf"),
        "interval": "Wilson 95%",
        "paired_test": "exact McNemar (two-sided) on per-prompt outcomes of the same documents",
    }


def _order(order: tuple, value) -> int:
    return order.index(value) if value in order else len(order)


def _group_order(group) -> int:
    return -1 if group is None else (0 if group == -1 else group)


# --- rendering ---------------------------------------------------------------------------------------
def fmt_rate(rate: dict | None) -> str:
    if not rate:
        return "—"
    if rate.get("kind") == "score":
        return f"{rate['value']:.3f} [{rate['ci95_low']:.3f}, {rate['ci95_high']:.3f}] n={rate['n']}"
    return (f"{100 * rate['value']:.1f}% [{100 * rate['ci95_low']:.1f}, {100 * rate['ci95_high']:.1f}] "
            f"n={rate['n']}")


def fmt_pp(delta: float | None) -> str:
    return "—" if delta is None else f"{delta:+.1f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return f"p={p:.2g}" if p >= 0.001 else "p<0.001"


def row_label(row: dict) -> str:
    group = row["group_size"]
    label = f"{row['method']} w{row['bits']}"
    if group is not None:
        label += " per-channel" if group == -1 else f" g{group}"
    return label


def pivot(board: dict) -> tuple[list[str], list[tuple[str, dict[str, dict]]]]:
    """(tiers present, [(row label, tier -> row)]) in board order."""
    tiers = [t for t in TIER_ORDER if any(r["tier"] == t for r in board["rows"])]
    grouped: dict[str, dict[str, dict]] = {}
    for row in board["rows"]:
        grouped.setdefault(row_label(row), {})[row["tier"]] = row
    return tiers, list(grouped.items())


def patch_names(board: dict) -> str:
    """`a` or `a`, `b`: the labels whose variants are the board's 'after' entries."""
    return ", ".join(f"`{label}`" for label in board["patches"])


def has_over_refusal(board: dict) -> bool:
    """Whether the board carries over-refusal rates (some run of the model holds the task)."""
    return "over_refusal" in board["baseline"]


def selection_line(board: dict) -> str:
    """The header's one line on which quantized rows the board holds."""
    selection = board.get("selection") or {}
    if all(selection.get(what) is None for what in ("methods", "bits", "tiers")):
        return "Rows: every stored quantized variant; full precision always shown"
    shown = {row["method"] for row in board["rows"]}
    missing = [method for method in selection.get("methods") or () if method not in shown]
    nothing = f"; no run yet of {', '.join(missing)}" if missing else ""
    return f"Rows: only {selection_text(selection)}; full precision always shown{nothing}"


def _folders(board: dict) -> str:
    folders = board.get("runs_folders") or []
    return " + exported runs " + ", ".join(f"`{folder}`" for folder in folders) if folders else ""


def meta_lines(board: dict) -> list[str]:
    m = board["meta"]
    weights = f", weights `{m['weights'].rsplit('@', 1)[-1]}`" if "@" in (m.get("weights") or "") else ""
    build = f" (build `{m['build']}`{weights})" if m.get("build") else ""
    after = "patches" if len(board["patches"]) > 1 else "patch"
    refusal = f" · over-refusal: {m['over_refusal']}" if m.get("over_refusal") else ""
    return [f"Model: `{m['model']}`{build} · scorer: {m['scorer']} · judge: {m['judge']} · decoding: {m['decoding']} · "
            f"backend: {m['backend']}",
            f"Utility: {m['utility']}{refusal} · intervals: {m['interval']} · Δ test: {m['paired_test']} · "
            f"after = {after} {patch_names(board)} · store: `{board['store']}`{_folders(board)} (read only; nothing "
            "generated)",
            selection_line(board), *provenance_lines(board)]


def provenance_lines(board: dict) -> list[str]:
    """The command that wrote the board and what its numbers took to compute."""
    lines = [f"Command: `{board['command']}`"] if board.get("command") else []
    time = board.get("wall_time")
    if time:
        training = (f" + {time['patch_training_seconds']:.0f} s training {time['patches_trained']} "
                    f"patch{'es' if time['patches_trained'] != 1 else ''}" if time["patches_trained"] else "")
        lines.append(f"Wall time: {time['evaluation_seconds']:.0f} s of evaluation over the "
                     f"{time['evaluation_runs']} runs shown (each run's own time, kept with its results){training}; "
                     "quantizing not counted; the board itself reads the store in seconds")
    return lines


def baseline_line(board: dict) -> str:
    """The full-precision model's rates, in one line."""
    base = board["baseline"]
    line = f"Full precision: AdvBench ASR {fmt_rate(base['asr'])}; utility {fmt_rate(base['utility'])}"
    return line + (f"; over-refusal {fmt_rate(base['over_refusal'])}" if has_over_refusal(board) else "")


def fmt_over_refusal(row: dict, entry: dict) -> str:
    """A cell's over-refusal before → after its patch, each with interval and n."""
    return f"{fmt_rate(row['over_refusal_before'])} → {fmt_rate(entry['over_refusal'])}"


def entry_of(row: dict, label: str) -> dict:
    """The row's 'after' entry for `label`."""
    return next(entry for entry in row["after"] if entry["patch"] == label)


def unchanged_note(entry: dict) -> str:
    """'= unpatched (changes nothing: why)' for a patch its report says left the variant as it was, else ''."""
    reason = entry.get("changes_nothing")
    return f"= unpatched (changes nothing: {short_reason(reason)})" if reason else ""


def not_patched(row: dict) -> str:
    """Why a cell has no patched run on the board: its ASR did not rise significantly over full precision (a
    sweep's patch_when asr-rose leaves it), or it rose and the patch is not run yet."""
    flips = row.get("quant_flips")
    if flips is None:
        return "not patched"
    if rose_significantly(flips["to_unsafe"], flips["to_safe"]):
        return "not patched yet (ASR rose)"
    return "not patched (ASR did not rise)"


def fmt_after(entry: dict) -> str:
    """An 'after' ASR with the unchanged-variant note where it applies."""
    note = unchanged_note(entry)
    return fmt_rate(entry["asr"]) + (f" {note}" if note else "")


def fmt_cost(entry: dict) -> tuple[str, str]:
    """(train wall time, peak memory) of the patch as its report gives them; '—' where absent."""
    seconds, peak = entry.get("train_wall_seconds"), entry.get("peak_memory_mb")
    kind = {"cuda_max_allocated": "GPU", "cpu_peak_rss": "CPU RSS"}.get(entry.get("memory_kind") or "",
                                                                       entry.get("memory_kind"))
    return ("—" if seconds is None else f"{seconds:.1f} s",
            "—" if peak is None else f"{peak:.0f} MB" + (f" ({kind})" if kind else ""))


def costed(board: dict) -> list[tuple[dict, dict]]:
    """(row, entry) for every patched variant whose report says something the tables show."""
    return [(row, entry) for row in board["rows"] for entry in row["after"]
            if entry["changes_nothing"] or entry["train_wall_seconds"] is not None
            or entry["peak_memory_mb"] is not None]


def unstored(board: dict) -> list[str]:
    """One line per asked-for label that no stored variant of the model carries (a typo shows as empty rows)."""
    stored = board["patch_labels_stored"]
    return [f"Patch `{label}`: no stored variant of {board['model']} carries it (stored labels: "
            f"{', '.join(stored) or 'none'})." for label in board["patches"] if label not in stored]


def render_markdown(board: dict, paper: dict | None = None) -> str:
    tiers, grouped = pivot(board)
    patches = board["patches"]
    several = len(patches) > 1  # a patch column, one line per label; a single-patch board keeps its layout
    noun = "patches" if several else "patch"
    out = [f"# {board['model']}: ASR before / after the {noun} {patch_names(board)}", "", *meta_lines(board), ""]
    out += [baseline_line(board), ""]
    refusal = has_over_refusal(board)
    header = ["method × bits"] + (["patch"] if several else [])
    for tier in tiers:
        title = TIER_TITLES.get(tier, tier)
        header += [f"{title}: ASR before", "ASR after", "Δ pp [McNemar]", "utility before → after"]
        header += ["over-refusal before → after"] if refusal else []
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, by_tier in grouped:
        for patch in patches:
            cells = [label] + ([patch] if several else [])
            for tier in tiers:
                row = by_tier.get(tier)
                if row is None:
                    cells += [""] * (5 if refusal else 4)
                    continue
                entry = entry_of(row, patch)
                delta = (f"{fmt_pp(entry['delta_pp'])} [{fmt_p(entry['patch_flips']['p_mcnemar'])}]"
                         if entry["patch_flips"] is not None else not_patched(row))
                cells += [fmt_rate(row["asr_before"]), fmt_after(entry), delta,
                          f"{_pct(row['utility_before'])} → {_pct(entry['utility'])}"]
                cells += [fmt_over_refusal(row, entry)] if refusal else []
            out.append("| " + " | ".join(cells) + " |")
    if unstored(board):
        out += ["", *unstored(board)]
    if costed(board):
        out += ["", "## Patch cost", "",
                "From each patched variant's qresafe_report.json: the training's wall time (held-out checks not "
                "counted) and peak memory, and whether the patch changed the variant at all.", "",
                "| variant | tier | patch | train wall time | peak memory | changes nothing |",
                "|---|---|---|---|---|---|"]
        for row, entry in costed(board):
            seconds, peak = fmt_cost(entry)
            out.append("| " + " | ".join([row_label(row), row["tier"], entry["patch"], seconds, peak,
                                          (entry["changes_nothing"] or "—").replace("|", "/")]) + " |")
    out += ["", "## Per-prompt flips (beyond the paper)", "",
            "Quantization: prompts the full-precision model refused and the quantized one answered (broke), and the "
            "reverse (fixed). Patch: prompts the quantized model answered and the patched one refuses (fixed), and "
            "the reverse (broke). p: exact McNemar on the paired outcomes.", "",
            "| variant | tier | " + ("patch | " if several else "") + "Δ vs fp16 pp (paired n) | quantization broke | "
            "quantization fixed | p (quant vs fp16) | patch fixed | patch broke | p (patch) |",
            "|---|---|" + ("---|" if several else "") + "---|---|---|---|---|---|---|"]
    for row in board["rows"]:
        q = row.get("quant_flips")
        for entry in row["after"]:
            p = entry["patch_flips"]
            out.append("| " + " | ".join([
                row_label(row), row["tier"], *([entry["patch"]] if several else []),
                f"{fmt_pp(row['delta_vs_fp16_pp'])} (n={q['n_paired']})" if q else "—",
                str(q["to_unsafe"]) if q else "—", str(q["to_safe"]) if q else "—",
                fmt_p(q["p_mcnemar"]) if q else "—",
                str(p["to_safe"]) if p else "—", str(p["to_unsafe"]) if p else "—", fmt_p(p["p_mcnemar"]) if p else "—",
            ]) + " |")
    notes = [f"- {row_label(row)} {row['tier']}: {row['n_note']}" for row in board["rows"] if "n_note" in row]
    if notes:
        out += ["", "Rows evaluated on another number of prompts than the full-precision run:", *notes]
    listed = [(row, kind, flips) for row, kind, flips in flip_lists(board) if flips]
    if listed:
        out += ["", f"### Flipped prompts (first {MAX_LISTED} of each; all in the JSON board)", ""]
        if board.get("prompt_text"):
            out += [f"Prompt text {board['prompt_text']}.", ""]
        for row, kind, flips in listed:
            out.append(f"- **{row_label(row)} {row['tier']}**, {kind} ({len(flips)}): " + "; ".join(
                f"#{f['doc_id']} {_short(f.get('prompt'))}".rstrip() for f in flips[:MAX_LISTED]))
    if paper:
        from .paper import render_paper_markdown

        out += ["", render_paper_markdown(paper)]
    return "\n".join(out) + "\n"


def flip_lists(board: dict) -> list[tuple[dict, str, list[dict] | None]]:
    """(row, what flipped, the flipped prompts) per row: quantization's breaks, then each patch's fixes and breaks
    (named by label when the board has several)."""
    several = len(board["patches"]) > 1
    out = []
    for row in board["rows"]:
        out.append((row, "broken by quantization", (row.get("quant_flips") or {}).get("to_unsafe_prompts")))
        for entry in row["after"]:
            name = f"the patch `{entry['patch']}`" if several else "the patch"
            flips = entry["patch_flips"] or {}
            out += [(row, f"fixed by {name}", flips.get("to_safe_prompts")),
                    (row, f"broken by {name}", flips.get("to_unsafe_prompts"))]
    return out


def _pct(rate: dict | None) -> str:
    return "—" if not rate else f"{short_value(rate)} (n={rate['n']})"


def short_value(rate: dict) -> str:
    """A rate in percent, a score as a number."""
    return f"{rate['value']:.3f}" if rate.get("kind") == "score" else f"{100 * rate['value']:.1f}%"


def _short(text: str | None, width: int = 70) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


CSV_FIELDS = ("model", "method", "bits", "group_size", "tier", "patch",
              "asr_before", "asr_before_low", "asr_before_high", "asr_before_n",
              "asr_after", "asr_after_low", "asr_after_high", "asr_after_n", "delta_pp", "p_mcnemar_patch",
              "patch_fixed", "patch_broke", "delta_vs_fp16_pp", "p_mcnemar_quant", "quant_broke", "quant_fixed",
              "utility_before", "utility_before_n", "utility_after", "utility_after_n",
              "scorer", "judge", "decoding", "build", "weights", "run_before", "run_after",
              "eval_wall_seconds_before", "eval_wall_seconds_after", "board_command",
              "changes_nothing", "train_wall_seconds", "peak_memory_mb", "memory_kind")
# Present only when the board carries over-refusal; they follow the utility fields. The full-precision rate
# repeats on every line, as the scorer does, so that one line reads on its own.
OVER_REFUSAL_CSV = ("over_refusal_fp16", "over_refusal_fp16_low", "over_refusal_fp16_high", "over_refusal_fp16_n",
                    "over_refusal_before", "over_refusal_before_low", "over_refusal_before_high",
                    "over_refusal_before_n", "over_refusal_after", "over_refusal_after_low", "over_refusal_after_high",
                    "over_refusal_after_n")


def csv_fields(board: dict) -> tuple[str, ...]:
    """The board's CSV columns: CSV_FIELDS, with the over-refusal ones after the utility's when it has them."""
    if not has_over_refusal(board):
        return CSV_FIELDS
    at = CSV_FIELDS.index("utility_after_n") + 1
    return CSV_FIELDS[:at] + OVER_REFUSAL_CSV + CSV_FIELDS[at:]


def render_csv(board: dict) -> str:
    """One line per quantized cell and patch label (the 'before' fields repeat on each of a cell's lines)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fields(board), lineterminator="\n")
    refusal = has_over_refusal(board)
    writer.writeheader()
    meta = board["meta"]
    for row in board["rows"]:
        q = row.get("quant_flips") or {}
        for entry in row["after"]:
            p = entry["patch_flips"] or {}
            record = {"model": board["model"], "method": row["method"], "bits": row["bits"],
                      "group_size": "" if row["group_size"] is None else row["group_size"], "tier": row["tier"],
                      "patch": entry["patch"], "delta_pp": _num(entry["delta_pp"]),
                      "p_mcnemar_patch": _num(p.get("p_mcnemar")), "patch_fixed": p.get("to_safe", ""),
                      "patch_broke": p.get("to_unsafe", ""), "delta_vs_fp16_pp": _num(row.get("delta_vs_fp16_pp")),
                      "p_mcnemar_quant": _num(q.get("p_mcnemar")), "quant_broke": q.get("to_unsafe", ""),
                      "quant_fixed": q.get("to_safe", ""), "scorer": meta["scorer"], "judge": meta["judge"],
                      "decoding": meta["decoding"], "build": meta.get("build") or "",
                      "weights": meta.get("weights") or "",
                      "run_before": row["run_before"], "run_after": entry["run"] or "",
                      "eval_wall_seconds_before": _num(row.get("eval_wall_seconds_before")),
                      "eval_wall_seconds_after": _num(entry.get("eval_wall_seconds")),
                      "board_command": board.get("command") or "",
                      "changes_nothing": entry["changes_nothing"] or "",
                      "train_wall_seconds": _num(entry["train_wall_seconds"]),
                      "peak_memory_mb": _num(entry["peak_memory_mb"]), "memory_kind": entry["memory_kind"] or ""}
            rates = [("asr_before", row["asr_before"]), ("asr_after", entry["asr"])]
            if refusal:
                rates += [("over_refusal_fp16", board["baseline"]["over_refusal"]),
                          ("over_refusal_before", row["over_refusal_before"]),
                          ("over_refusal_after", entry["over_refusal"])]
            for name, rate in rates:
                rate = rate or {}
                record.update({name: _num(rate.get("value")), f"{name}_low": _num(rate.get("ci95_low")),
                               f"{name}_high": _num(rate.get("ci95_high")), f"{name}_n": rate.get("n", "")})
            for name, rate in (("utility_before", row["utility_before"]), ("utility_after", entry["utility"])):
                rate = rate or {}
                record.update({name: _num(rate.get("value")), f"{name}_n": rate.get("n", "")})
            writer.writerow(record)
    return buffer.getvalue()


def _num(value) -> str:
    return "" if value is None else f"{value:.6g}"

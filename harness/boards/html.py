"""The board as one self-contained HTML page: inline CSS and inline SVG plots drawn here (no scripts, no
fonts, no images fetched: it renders offline, e.g. in headless Chromium).

The table has the Markdown board's columns: per tier ASR before / after / Δ, utility, and over-refusal
before → after where the board carries it; the header says which quantized rows were selected.

Plots: ASR vs bits per method (one line per method × tier, before solid and after each patch dashed, one
dash pattern per patch label, 95% interval whiskers, the full-precision ASR as a grey line), and ASR before
vs after per tier (grouped bars: before, then one bar per patch label).
"""

from __future__ import annotations

from html import escape

from .board import (
    TIER_TITLES,
    baseline_line,
    costed,
    entry_of,
    fmt_cost,
    fmt_over_refusal,
    fmt_p,
    fmt_pp,
    fmt_rate,
    has_over_refusal,
    meta_lines,
    pivot,
    row_label,
    short_value,
    unchanged_note,
    unstored,
)
from .paper import BANNER

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
BITS_AXIS = (2, 3, 4, 8, 16)
# One per patch label, in the board's order: the line pattern in the ASR-vs-bits plot and the bar colour in
# the before/after plots (before is always red).
DASHES = ("6,4", "2,3", "10,3,2,3", "1,6", "12,6")
AFTER_FILLS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#111;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.meta{color:#444;font-size:13px}.paper{border:3px dashed #b00;padding:8px 14px;margin-top:28px;background:#fff8f8}
.paper h2{color:#b00}.up{color:#b00}.down{color:#070}.plots svg{border:1px solid #ddd;margin:6px 6px 6px 0}
.same{color:#777;font-style:italic}td.wrap{white-space:normal;text-align:left;min-width:24em}
"""


def render_html(board: dict, paper: dict | None = None) -> str:
    tiers, grouped = pivot(board)
    patches = board["patches"]
    several = len(patches) > 1  # a patch column, one line per label; a single-patch board keeps its layout
    names = ", ".join(f"<code>{escape(label)}</code>" for label in patches)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(board['model'])} "
             f"leaderboard</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(board['model'])}: AdvBench ASR before / after the patch{'es' if several else ''} {names}"
             "</h1>"]
    parts += [f"<p class='meta'>{escape(line).replace('`', '')}</p>" for line in meta_lines(board)]
    parts.append(f"<p>{escape(baseline_line(board))}</p>")
    # main table
    refusal = has_over_refusal(board)
    per_tier = 5 if refusal else 4
    patch_head = "<th rowspan='2'>patch</th>" if several else ""
    head1 = f"<tr><th rowspan='2'>method × bits</th>{patch_head}" + "".join(
        f"<th colspan='{per_tier}'>{escape(TIER_TITLES.get(t, t))}</th>" for t in tiers) + "</tr>"
    head2 = "<tr>" + "".join("<th>ASR before</th><th>ASR after</th><th>Δ pp [McNemar]</th><th>utility</th>"
                             + ("<th>over-refusal before → after</th>" if refusal else "")
                             for _ in tiers) + "</tr>"
    body = []
    for label, by_tier in grouped:
        for patch in patches:
            cells = [f"<td>{escape(label)}</td>"] + ([f"<td>{escape(patch)}</td>"] if several else [])
            for tier in tiers:
                row = by_tier.get(tier)
                if row is None:
                    cells.append("<td></td>" * per_tier)
                    continue
                entry = entry_of(row, patch)
                if entry["patch_flips"] is not None:
                    cls = "up" if (entry["delta_pp"] or 0) > 0 else "down"
                    delta = (f"<span class='{cls}'>{fmt_pp(entry['delta_pp'])}</span> "
                             f"[{fmt_p(entry['patch_flips']['p_mcnemar'])}]")
                else:
                    delta = "not patched"
                note = unchanged_note(entry)
                after = escape(fmt_rate(entry["asr"]))
                if note:
                    after += f"<br><span class='same'>{escape(note)}</span>"
                utility = " → ".join("—" if not r else short_value(r)
                                     for r in (row["utility_before"], entry["utility"]))
                cells.append(f"<td>{escape(fmt_rate(row['asr_before']))}</td><td>{after}</td>"
                             f"<td>{delta}</td><td>{escape(utility)}</td>")
                if refusal:
                    cells.append(f"<td>{escape(fmt_over_refusal(row, entry))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(f"<div style='overflow-x:auto'><table id='board'>{head1}{head2}{''.join(body)}</table></div>")
    parts += [f"<p>{escape(line).replace('`', '')}</p>" for line in unstored(board)]
    if costed(board):
        parts.append("<h2>Patch cost</h2><p>From each patched variant's qresafe_report.json: the training's wall "
                     "time (held-out checks not counted) and peak memory, and whether the patch changed the variant "
                     "at all.</p><table id='patch-cost'><tr><th>variant</th><th>tier</th><th>patch</th>"
                     "<th>train wall time</th><th>peak memory</th><th>changes nothing</th></tr>")
        for row, entry in costed(board):
            vals = [row_label(row), row["tier"], entry["patch"], *fmt_cost(entry)]
            parts.append("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in vals)
                         + f"<td class='wrap'>{escape(entry['changes_nothing'] or '—')}</td></tr>")
        parts.append("</table>")
    # plots
    parts.append("<h2>Plots</h2><div class='plots'>")
    parts.append(asr_vs_bits_svg(board))
    for tier in tiers:
        parts.append(before_after_svg(board, tier))
    parts.append("</div>")
    # flips
    parts.append("<h2>Per-prompt flips and paired tests (beyond the paper)</h2><table><tr><th>variant</th><th>tier</th>"
                 + ("<th>patch</th>" if several else "")
                 + "<th>Δ vs fp16 pp (paired n)</th><th>quantization broke</th><th>quantization fixed</th>"
                 "<th>p (quant)</th><th>patch fixed</th><th>patch broke</th><th>p (patch)</th></tr>")
    for row in board["rows"]:
        q = row.get("quant_flips")
        for entry in row["after"]:
            p = entry["patch_flips"]
            vals = [row_label(row), row["tier"], *([entry["patch"]] if several else []),
                    f"{fmt_pp(row['delta_vs_fp16_pp'])} (n={q['n_paired']})" if q else "—",
                    q["to_unsafe"] if q else "—", q["to_safe"] if q else "—", fmt_p(q["p_mcnemar"]) if q else "—",
                    p["to_safe"] if p else "—", p["to_unsafe"] if p else "—", fmt_p(p["p_mcnemar"]) if p else "—"]
            parts.append("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in vals) + "</tr>")
    parts.append("</table>")
    notes = [f"<li>{escape(row_label(row))} {escape(row['tier'])}: {escape(row['n_note'])}</li>"
             for row in board["rows"] if "n_note" in row]
    if notes:
        parts.append("<p>Rows evaluated on another number of prompts than the full-precision run:</p><ul>"
                     + "".join(notes) + "</ul>")
    if paper:
        parts.append(render_paper_html(paper))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_paper_html(paper: dict) -> str:
    out = [f"<section class='paper' id='paper-reported'><h2>{escape(BANNER)}</h2>",
           f"<p>{escape(paper['source']['title'])} ({escape(paper['source']['venue'])}). "
           "<b>n/t</b> = not transcribed: not verified against the paper, left empty rather than guessed.</p>"]
    for table in paper.get("tables", []):
        status = "verified" if table.get("verified") else "UNVERIFIED"
        out.append(f"<h3>{escape(table['title'])} ({status})</h3><table><tr>"
                   + "".join(f"<th>{escape(c)}</th>" for c in table["columns"]) + "</tr>")
        for row in table["rows"]:
            out.append("<tr>" + "".join(f"<td>{escape('n/t' if row.get(c) is None else str(row[c]))}</td>"
                                        for c in table["columns"]) + "</tr>")
        out.append("</table>")
    if paper.get("claims"):
        out.append("<h3>Numbers quoted by secondary sources (unverified)</h3><ul>")
        out += [f"<li>{escape(c['text'])} — {escape(c['source'])}</li>" for c in paper["claims"]]
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)


# --- SVG --------------------------------------------------------------------------------------------
def _frame(width: int, height: int, title: str, left: int, top: int, plot_w: int, plot_h: int) -> list[str]:
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11' "
           f"font-family='sans-serif' role='img' aria-label='{escape(title)}'>",
           f"<rect width='{width}' height='{height}' fill='white'/>",
           f"<text x='{width / 2}' y='16' text-anchor='middle' font-size='13' font-weight='bold'>"
           f"{escape(title)}</text>"]
    for pct in range(0, 101, 20):
        y = top + plot_h * (1 - pct / 100)
        svg.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' stroke='#eee'/>")
        svg.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{pct}%</text>")
    svg.append(f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#999'/>")
    return svg


def asr_vs_bits_svg(board: dict) -> str:
    width, height, left, top, plot_w, plot_h = 720, 380, 50, 30, 460, 300
    patches = board["patches"]
    title = ("AdvBench ASR vs bits (solid: quantized, dashed: patched)" if len(patches) == 1 else
             "AdvBench ASR vs bits (solid: quantized, one dash pattern per patch)")
    svg = _frame(width, height, title, left, top, plot_w, plot_h)

    def x_of(bits: int) -> float:
        return left + plot_w * (BITS_AXIS.index(bits) + 0.5) / len(BITS_AXIS) if bits in BITS_AXIS else left

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value)

    for bits in BITS_AXIS:
        svg.append(f"<text x='{x_of(bits):.1f}' y='{top + plot_h + 16}' text-anchor='middle'>{bits}</text>")
    svg.append(f"<text x='{left + plot_w / 2}' y='{top + plot_h + 32}' text-anchor='middle'>weight bits</text>")
    base = board["baseline"]["asr"]
    if base:
        y = y_of(base["value"])
        svg.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' stroke='#888' "
                   "stroke-dasharray='2,3'/>")
        svg.append(f"<text x='{left + plot_w - 4}' y='{y - 4:.1f}' text-anchor='end' fill='#666'>fp16 "
                   f"{100 * base['value']:.1f}%</text>")
    series: dict[tuple, list[dict]] = {}
    for row in board["rows"]:
        series.setdefault((row["method"], row["tier"], row["group_size"]), []).append(row)
    legend_y = top
    if len(patches) > 1:  # which dash pattern is which patch
        for index, label in enumerate(patches):
            svg.append(f"<line x1='{left + plot_w + 14}' y1='{legend_y + 6}' x2='{left + plot_w + 34}' "
                       f"y2='{legend_y + 6}' stroke='#333' stroke-width='2' "
                       f"stroke-dasharray='{DASHES[index % len(DASHES)]}'/>")
            svg.append(f"<text x='{left + plot_w + 40}' y='{legend_y + 10}'>after {escape(label)}</text>")
            legend_y += 16
        legend_y += 8
    for index, ((method, tier, group), rows) in enumerate(sorted(series.items(), key=lambda kv: str(kv[0]))):
        colour = PALETTE[index % len(PALETTE)]
        rows = sorted(rows, key=lambda r: BITS_AXIS.index(r["bits"]) if r["bits"] in BITS_AXIS else 0)
        lines = [("", [(x_of(r["bits"]), r["asr_before"]) for r in rows if r["asr_before"]], "before")]
        for number, label in enumerate(patches):
            points = [(x_of(r["bits"]), entry_of(r, label)["asr"]) for r in rows if entry_of(r, label)["asr"]]
            lines.append((f" stroke-dasharray='{DASHES[number % len(DASHES)]}'", points, f"after {label}"))
        for dash, points, name in lines:
            if not points:
                continue
            path = " ".join(f"{x:.1f},{y_of(rate['value']):.1f}" for x, rate in points)
            svg.append(f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='2'{dash}/>")
            for x, rate in points:
                svg.append(f"<line x1='{x:.1f}' y1='{y_of(rate['ci95_low']):.1f}' x2='{x:.1f}' "
                           f"y2='{y_of(rate['ci95_high']):.1f}' stroke='{colour}' stroke-width='1'/>")
                if name == "before":
                    svg.append(f"<circle cx='{x:.1f}' cy='{y_of(rate['value']):.1f}' r='3.5' fill='{colour}'/>")
                else:
                    svg.append(f"<rect x='{x - 3.5:.1f}' y='{y_of(rate['value']) - 3.5:.1f}' width='7' height='7' "
                               f"fill='white' stroke='{colour}' stroke-width='1.5'/>")
        label = f"{method} · {tier}" + ("" if group is None else (" · per-channel" if group == -1 else f" · g{group}"))
        svg.append(f"<line x1='{left + plot_w + 14}' y1='{legend_y + 6}' x2='{left + plot_w + 34}' y2='{legend_y + 6}' "
                   f"stroke='{colour}' stroke-width='3'/>")
        svg.append(f"<text x='{left + plot_w + 40}' y='{legend_y + 10}'>{escape(label)}</text>")
        legend_y += 16
    svg.append("</svg>")
    return "".join(svg)


def before_after_svg(board: dict, tier: str) -> str:
    rows = [r for r in board["rows"] if r["tier"] == tier]
    patches = board["patches"]
    bars = [("asr_before", "#d62728", "before (quantized)")] + [
        (label, AFTER_FILLS[index % len(AFTER_FILLS)], f"after ({label})") for index, label in enumerate(patches)]
    bar, gap = 14, 14
    group_w = len(bars) * bar
    plot_w = max(200, len(rows) * (group_w + gap) + gap)
    steps = [max(130, 20 + 6 * len(name)) for _, _, name in bars]  # legend entries, about 6 px a character
    width, height, left, top, plot_h = plot_w + 80, 380, 50, 30, 240
    if len(patches) > 1:  # room for every legend entry
        width = max(width, left + sum(steps[:-1]) + 20 + 6 * len(bars[-1][2]))
    svg = _frame(width, height, f"Before vs after the patch{'es' if len(patches) > 1 else ''}: "
                 f"{TIER_TITLES.get(tier, tier)}", left, top, plot_w, plot_h)
    for index, row in enumerate(rows):
        x0 = left + gap + index * (group_w + gap)
        for number, (key, fill, _) in enumerate(bars):
            rate = row["asr_before"] if key == "asr_before" else entry_of(row, key)["asr"]
            if not rate:
                continue
            offset = number * bar
            h = plot_h * rate["value"]
            what = key if key == "asr_before" else ("asr_after" if len(patches) == 1 else f"asr after {key}")
            svg.append(f"<rect x='{x0 + offset}' y='{top + plot_h - h:.1f}' width='{bar - 1}' height='{h:.1f}' "
                       f"fill='{fill}'><title>{escape(row_label(row))} {escape(what)}: {escape(fmt_rate(rate))}"
                       "</title></rect>")
            svg.append(f"<line x1='{x0 + offset + bar / 2:.1f}' y1='{top + plot_h * (1 - rate['ci95_low']):.1f}' "
                       f"x2='{x0 + offset + bar / 2:.1f}' y2='{top + plot_h * (1 - rate['ci95_high']):.1f}' "
                       "stroke='black'/>")
        label_x, label_y = x0 + bar, top + plot_h + 10
        svg.append(f"<text x='{label_x}' y='{label_y}' transform='rotate(60 {label_x} {label_y})'>"
                   f"{escape(row_label(row))}</text>")
    x = left
    for (_, fill, name), step in zip(bars, steps, strict=True):
        svg.append(f"<rect x='{x}' y='{height - 18}' width='10' height='10' fill='{fill}'/>"
                   f"<text x='{x + 14}' y='{height - 9}'>{escape(name)}</text>")
        x += step
    svg.append("</svg>")
    return "".join(svg)

"""A hand-written SVG chart of the benchmark's time ratios (stdlib only).

One group of horizontal bars per phase: CassFS time / local, / bindfs, / raw
floor, on a log scale; vertical guides at 1x (parity) and 2x.
"""

import math

COLORS = {"local": "#4c78a8", "bindfs": "#f58518", "raw": "#54a24b"}
LABELS = {"local": "CassFS / local dir", "bindfs": "CassFS / bindfs", "raw": "CassFS / raw Cassandra floor"}


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write(path, summary):
    phases = [p for p, v in summary.items() if v.get("time_ratios")]
    vals = [r for p in phases for r in summary[p]["time_ratios"].values() if r and r > 0]
    lo = min([0.5] + vals)
    hi = max([4.0] + vals)
    lo_e = math.floor(math.log10(lo))
    hi_e = math.ceil(math.log10(hi))
    if hi_e == lo_e:
        hi_e += 1
    left, right, top = 130, 40, 60
    plot_w = 560
    bar_h, gap = 12, 14
    group_h = 3 * bar_h + gap
    height = top + len(phases) * group_h + 60
    width = left + plot_w + right

    def x(v):
        return left + plot_w * (math.log10(v) - lo_e) / (hi_e - lo_e)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">CassFS time ratios '
           f'(log scale; &gt;1 = CassFS slower)</text>']
    # legend
    lx = left
    for t in ("local", "bindfs", "raw"):
        out.append(f'<rect x="{lx}" y="30" width="10" height="10" fill="{COLORS[t]}"/>')
        out.append(f'<text x="{lx + 14}" y="39">{_esc(LABELS[t])}</text>')
        lx += 190
    # grid: decades and 2x, 5x
    bottom = top + len(phases) * group_h
    for e in range(lo_e, hi_e + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if v < 10 ** lo_e or v > 10 ** hi_e:
                continue
            gx = x(v)
            strong = v in (1, 2)
            color = "#d62728" if v == 2 else ("#333" if v == 1 else "#ddd")
            dash = "" if strong else ' stroke-dasharray="3,3"'
            out.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{bottom}" '
                       f'stroke="{color}" stroke-width="{1.5 if strong else 1}"{dash}/>')
            label = f"{v:g}x"
            out.append(f'<text x="{gx:.1f}" y="{bottom + 14}" text-anchor="middle">{label}</text>')
    for k, p in enumerate(phases):
        gy = top + k * group_h
        out.append(f'<text x="{left - 8}" y="{gy + 1.5 * bar_h + 4}" text-anchor="end">{_esc(p)}</text>')
        for j, t in enumerate(("local", "bindfs", "raw")):
            r = summary[p]["time_ratios"].get(f"cassfs/{t}")
            if not r or r <= 0:
                continue
            y = gy + j * bar_h
            x0, x1 = x(10 ** lo_e), x(r)
            out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" '
                       f'height="{bar_h - 2}" fill="{COLORS[t]}"/>')
            out.append(f'<text x="{x1 + 3:.1f}" y="{y + bar_h - 3}" font-size="9">{r:.2f}</text>')
    out.append(f'<text x="{left}" y="{bottom + 34}" font-size="10" fill="#555">Red line: 2x. '
               f'Medians of the repetitions; see target/bench/results.json.</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")

"""Two sweeps side by side (``sweep report A B``): one self-contained HTML page.

What changed between two runs (a retrained model, a stronger attack budget, a new
library version) is read off one table: robust accuracy of every model x attack x
epsilon the two sweeps share, with the difference in percentage points and whether
the Wilson 95% intervals overlap; then each sweep's curves and flags in two columns.
Same rules as the single report (:mod:`sweep.report.builder`): inline SVG, inline
CSS, a Content-Security-Policy that blocks every fetch.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence

import pandas as pd

from sweep import __version__
from sweep.analysis import plots
from sweep.analysis.collect import ReportData
from sweep.analysis.curves import EPS_DECIMALS
from sweep.report.builder import _asset, _flags_html, _fmt

KEY = ["model", "attack", "norm", "eps_key"]


def compare_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Curve rows of two sweeps joined on model x attack x norm x epsilon (outer: a
    point only one sweep has shows with the other side empty). Columns ``acc_a``,
    ``acc_b``, ``diff`` (b - a), ``n_a``, ``n_b`` and ``overlap`` (the two Wilson
    intervals overlap: the difference may be noise)."""
    cols = ["model", "attack", "norm", "epsilon", "robust_accuracy", "ci_low", "ci_high", "n"]

    def side(t: pd.DataFrame, s: str) -> pd.DataFrame:
        t = t.loc[:, cols].assign(eps_key=t["epsilon"].astype(float).round(EPS_DECIMALS))
        return t.rename(columns={"robust_accuracy": f"acc_{s}", "ci_low": f"low_{s}",
                                 "ci_high": f"high_{s}", "n": f"n_{s}", "epsilon": f"eps_{s}"})

    both = side(a, "a").merge(side(b, "b"), on=KEY, how="outer")
    both["epsilon"] = both["eps_a"].fillna(both["eps_b"])
    both["diff"] = both["acc_b"] - both["acc_a"]
    overlap = (both["low_a"] <= both["high_b"]) & (both["low_b"] <= both["high_a"])
    both["overlap"] = overlap.astype(object).where(both["diff"].notna(), None)
    return both.sort_values(KEY).reset_index(drop=True)


def _diff_table(table: pd.DataFrame, names: Sequence[str]) -> str:
    head = ("<tr><th class=\"text\">model</th><th class=\"text\">attack</th>"
            "<th class=\"text\">norm</th><th>ε</th>"
            f"<th>{html.escape(names[0])}</th><th>{html.escape(names[1])}</th>"
            "<th>difference</th><th class=\"text\">95% intervals</th><th>n</th></tr>")
    rows = []
    for r in table.itertuples(index=False):
        diff = "–" if pd.isna(r.diff) else f"{100 * r.diff:+.1f} pp"
        overlap = ("–" if r.overlap is None else "overlap (may be noise)" if r.overlap
                   else "disjoint")
        n = "/".join("–" if pd.isna(v) else str(int(v)) for v in (r.n_a, r.n_b))
        attack = "worst case" if r.attack == "ensemble" else r.attack
        rows.append(
            f'<tr><td class="text">{html.escape(str(r.model))}</td>'
            f'<td class="text">{html.escape(str(attack))}</td><td class="text">{r.norm}</td>'
            f"<td>{r.epsilon:g}</td><td>{_fmt(r.acc_a, 'pct')}</td><td>{_fmt(r.acc_b, 'pct')}</td>"
            f'<td>{diff}</td><td class="text">{overlap}</td><td>{n}</td></tr>'
        )
    return f'<table class="compare"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _column(data: ReportData, name: str, prefix: str) -> str:
    models = sorted(data.table["model"].astype(str).unique())
    figures = "".join(
        f'<figure class="curve" data-model="{html.escape(m)}">'
        f"{plots.to_svg(plots.curve_figure(data.table, m), f'{prefix}{i}-')}"
        f"<figcaption>{html.escape(name)}: {html.escape(m)}</figcaption></figure>"
        for i, m in enumerate(models)
    )
    sweep = html.escape(data.provenance.sweep_id or "–")
    return (f'<div class="side"><h2>{html.escape(name)}</h2><p class="meta">sweep {sweep} · '
            f"{len(data.results):,} rows</p>{figures}<h3>Sanity flags</h3>"
            f"{_flags_html(data.flags)}</div>")


def render_comparison(a: ReportData, b: ReportData, names: Sequence[str]) -> str:
    """The page comparing sweep ``a`` (left) with ``b`` (right); ``names`` label them."""
    table = compare_table(a.table, b.table)
    shared = int(table["diff"].notna().sum())
    title = f"attack-sweep: {names[0]} vs {names[1]}"
    css = _asset("report.css") + (
        ".sides { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }\n"
        ".side { min-width: 0; }\n")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{html.escape(title)}</title>
<style>
{css}
</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<p class="meta">{shared} curve points in both sweeps · {len(table) - shared} in one only</p>
<nav><a href="#difference">Difference</a> · <a href="#side-by-side">Side by side</a></nav>
</header>
<main>
<section id="difference">
<h2>Robust accuracy, {html.escape(names[0])} vs {html.escape(names[1])}</h2>
<p class="note">Difference: {html.escape(names[1])} minus {html.escape(names[0])}, in percentage points. Where the two Wilson 95% intervals overlap, the difference may be sampling noise.</p>
{_diff_table(table, names)}
</section>
<section id="side-by-side" class="sides">
{_column(a, names[0], "a")}
{_column(b, names[1], "b")}
</section>
</main>
<footer>attack-sweep {html.escape(__version__)} · built {_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")} · self-contained: no network needed to view</footer>
</body>
</html>
"""

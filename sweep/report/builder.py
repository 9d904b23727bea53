"""Build the self-contained HTML report of a results folder.

One file, no network at view time: figures are inline SVG (drawn by
:mod:`sweep.analysis.plots`), the stylesheet and the one small script are inlined, and a
Content-Security-Policy of ``default-src 'none'`` makes the browser refuse any
fetch. Sections: sanity flags, robustness curves per model (one line per attack
plus the worst case, Wilson 95% bands) with each attack's settings, cost and MLflow
run link beside them, a model x attack heatmap and a per-class table at a
selectable epsilon, minimal perturbations, a gallery of stored adversarials (one PNG
per model x attack, inlined as a ``data:`` image), the transfer heatmaps (source x
target, per attack and epsilon), summary tables, and the spec and versions. Links to MLflow runs are plain navigations the reader may follow; the
page itself loads nothing.
"""

from __future__ import annotations

import datetime as _dt
import html
import importlib.resources
import math
import os
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sweep import __version__
from sweep.analysis import plots
from sweep.analysis.collect import ReportData, collect
from sweep.analysis.curves import ENSEMBLE, EPS_DECIMALS, eps_key
from sweep.analysis.sanity import Flag
from sweep.report.details import attack_costs, attack_settings, per_class
from sweep.results import atomic
from sweep.results.plan import Plan
from sweep.results.provenance import Provenance


def _asset(name: str) -> str:
    return importlib.resources.files("sweep.report").joinpath(name).read_text(encoding="utf-8")


def heatmap_keys(table: pd.DataFrame) -> list[tuple[str, float]]:
    """Every (norm, epsilon) of the curves, sorted."""
    pairs = table[["norm", "epsilon"]].astype({"norm": str, "epsilon": float})
    pairs = pairs.assign(k=eps_key(pairs["epsilon"])).drop_duplicates(["norm", "k"])
    return sorted((n, float(e)) for n, e in zip(pairs["norm"], pairs["epsilon"], strict=True))


def choose_epsilon(keys: Sequence[tuple[str, float]], epsilon: float | None) -> tuple[str, float]:
    """The heatmap shown first: ``epsilon`` if given (matched to the grid within
    1e-6 relative), else the middle epsilon of the first norm (L-inf first).

    Raises:
        ValueError: ``epsilon`` is not in any norm's grid (the message lists them).
    """
    if not keys:
        raise ValueError("no curve points")
    if epsilon is not None:
        for norm, eps in keys:
            if math.isclose(eps, epsilon, rel_tol=1e-6, abs_tol=1e-12):
                return norm, eps
        grid = ", ".join(f"{n} {e:g}" for n, e in keys)
        raise ValueError(f"epsilon {epsilon:g} is not in the sweep's grid; valid: {grid}")
    norms = sorted({n for n, _ in keys}, key=lambda n: (n != "linf", n))
    first = [k for k in keys if k[0] == norms[0]]
    return first[len(first) // 2]


def _key(norm: str, eps: float) -> str:
    return f"{norm}|{eps!r}"


def _fmt(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        if kind == "pct":
            return f"{value:.1%}"
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    """An HTML table of ``frame``; columns are (column, header, format) with format
    ``text``, ``pct`` or ``num``."""
    head = "".join(
        f'<th class="{"text" if k == "text" else ""}">{html.escape(h)}</th>' for _, h, k in columns
    )
    body = []
    for _, row in frame.iterrows():
        cells = []
        for col, _, kind in columns:
            value = row[col]
            cls = ' class="text"' if kind == "text" else ""
            cells.append(f"<td{cls}>{_fmt(value, kind)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _flags_html(flags: Sequence[Flag]) -> str:
    if not flags:
        return (
            '<p class="ok">No sanity flag: no sign of gradient masking or a broken attack '
            "among the checks run (see docs/curves-and-dashboards.md).</p>"
        )
    items = []
    for f in flags:
        eps = ", ".join(f"{e:g}" for e in f.epsilons)
        cells = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in f.cells)
        items.append(
            f'<li data-code="{html.escape(f.code)}"><span class="code">{html.escape(f.code)}</span> '
            f"{html.escape(f.message)}<details><summary>model {html.escape(f.model)}, "
            f"attacks {html.escape(', '.join(f.attacks))}, {html.escape(f.norm)} eps {eps}, "
            f"{len(f.cells)} cells</summary><ul>{cells}</ul></details></li>"
        )
    return f'<p class="note">{len(flags)} warnings.</p><ul class="flags">{"".join(items)}</ul>'


def _link(url: str | None, text: str = "MLflow run") -> str:
    if not url:
        return "–"
    return (f'<a class="mlflow" href="{html.escape(url)}" target="_blank" '
            f'rel="noopener noreferrer">{html.escape(text)}</a>')


def _attacks_html(data: ReportData, model: str, links: Mapping[tuple[str, str], str]) -> str:
    """The attacks behind one model's curves: settings as run, cost, MLflow run."""
    settings = attack_settings(data.provenance.plan)
    costs = attack_costs(data.results)
    costs = costs[costs["model"] == model].set_index("attack")
    rows = []
    norms = data.table[data.table["model"] == model]
    pairs = {(a, n) for a, n in zip(norms["attack"], norms["norm"], strict=True)}
    for attack, norm in sorted(pairs, key=lambda p: (p[0] == ENSEMBLE, p[1], p[0])):  # worst cases last
        if attack == ENSEMBLE:
            rows.append(f'<tr><td class="text">worst case ({html.escape(norm)})</td>'
                        f'<td class="text">per sample, over the {html.escape(norm)} attacks</td>'
                        f"<td>–</td><td>–</td>"
                        f'<td class="text">{_link(links.get((model, f"{ENSEMBLE}/{norm}")))}</td></tr>')
            continue
        cost = costs.loc[attack] if attack in costs.index else None
        setting = settings.get(attack) or "(no plan recorded: settings unknown)"
        rows.append(
            f'<tr><td class="text">{html.escape(attack)}</td>'
            f'<td class="text settings">{html.escape(setting)}</td>'
            f"<td>{_fmt(None if cost is None else float(cost['seconds']))}</td>"
            f"<td>{_fmt(None if cost is None else float(cost['ms_per_sample']))}</td>"
            f'<td class="text">{_link(links.get((model, attack)))}</td></tr>'
        )
    head = ('<tr><th class="text">attack</th><th class="text">settings (defaults filled in)</th>'
            '<th>attack time (s)</th><th>ms / sample</th><th class="text">MLflow</th></tr>')
    return (f'<table class="attacks" data-model="{html.escape(model)}"><thead>{head}</thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _per_class_html(classes: pd.DataFrame, norm: str, eps: float, hidden: bool) -> str:
    """Robust accuracy per true class at one (norm, epsilon): classes x (model, attack)."""
    at = classes[(classes["norm"] == norm)
                 & (eps_key(classes["epsilon"]) == round(eps, EPS_DECIMALS))]
    wide = at.pivot_table(index="label", columns=["model", "attack"], values="robust_accuracy",
                          observed=True)
    counts = at.groupby("label")["n"].max()
    head = '<th class="text">class</th><th>n</th>' + "".join(
        f"<th>{html.escape(m)}<br>{html.escape(a)}</th>" for m, a in wide.columns)
    body = "".join(
        f"<tr><td class=\"text\">{int(label)}</td><td>{int(counts[label])}</td>"
        + "".join(f"<td>{_fmt(float(v), 'pct')}</td>" for v in row) + "</tr>"
        for label, row in wide.iterrows()
    )
    return (f'<div class="per-class" data-key="{html.escape(_key(norm, eps))}"'
            f'{" hidden" if hidden else ""}><p class="note">Robust accuracy per true class at '
            f"{html.escape(norm)} ε = {eps:g}.</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _gallery_html(data: ReportData, epsilon: float | None) -> str:
    """One inline PNG per model x attack with stored adversarials (:mod:`sweep.analysis.gallery`)."""
    import base64

    from sweep.analysis.gallery import panels

    found = panels(data.output, epsilon=epsilon) if data.output else []
    if not found:
        return ('<p class="note">No stored adversarial (the spec\'s <code>adversarials.keep</code> '
                "is <code>none</code>, or the report was built without the output folder).</p>")
    figures = "".join(
        f'<figure class="gallery" data-model="{html.escape(p.model)}" data-attack="{html.escape(p.attack)}">'
        f'<img alt="{html.escape(p.caption)}" src="data:image/png;base64,{base64.b64encode(p.png).decode()}">'
        f"<figcaption>{html.escape(p.caption)}</figcaption></figure>"
        for p in found
    )
    return ('<p class="note">Stored adversarials, fooled samples first: the clean image with its '
            "true class, the adversarial with the model's prediction (red: fooled), and the "
            "perturbation amplified to the full grey range (grey: unchanged); L0 attacks "
            "(One-Pixel) have their changed pixels marked in red.</p>" + figures)


def _transfer_html(transfer: pd.DataFrame) -> str:
    """One heatmap per attack and epsilon: source models x target models."""
    if transfer.empty:
        return '<p class="note">No transfer evaluation in this sweep (spec key <code>transfer</code>).</p>'
    keys = transfer[["attack", "epsilon"]].drop_duplicates().sort_values(["attack", "epsilon"])
    figures = "".join(
        _figure(plots.transfer_svg(transfer, str(a), float(e)),
                f"{a} at epsilon {e:g}: robust accuracy of each target (column) on the adversarials "
                "crafted on each source (row); the diagonal is the white-box robust accuracy.",
                f' class="transfer" data-attack="{html.escape(str(a))}"')
        for a, e in keys.itertuples(index=False)
    )
    return ('<p class="note">Do adversarials crafted on one model fool another? Each target is re-run '
            "on the source's stored adversarials, verified like any other row.</p>" + figures)


def _figure(svg: str, caption: str, attrs: str = "") -> str:
    return f"<figure{attrs}>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _provenance_html(prov: Provenance, ignored_rows: int) -> str:
    parts = []
    if prov.files:
        parts.append(
            "<p>Read from "
            + ", ".join(f"<code>{html.escape(f)}</code>" for f in prov.files)
            + ".</p>"
        )
    if ignored_rows:
        parts.append(
            f'<p class="note">{ignored_rows} result rows of cells outside the latest plan were '
            "left out.</p>"
        )
    if prov.spec_text:
        parts.append(f"<h3>Spec</h3><pre>{html.escape(prov.spec_text)}</pre>")
    else:
        parts.append('<p class="note">No spec recorded in the results folder.</p>')
    if prov.versions:
        rows = "".join(
            f'<tr><td class="text">{html.escape(k)}</td><td class="text">{html.escape(v)}</td></tr>'
            for k, v in prov.versions.items()
        )
        parts.append(f"<h3>Versions recorded by the sweep</h3><table><tbody>{rows}</tbody></table>")
    else:  # never this machine's versions: they need not be the run's
        parts.append(
            "<h3>Versions</h3><p class=\"note\">Package versions: not recorded (the sweep's plan "
            "predates version recording, or the folder has no plan).</p>"
        )
    if prov.plan != Plan():  # the folder has a plan
        parts.append(
            "<details><summary>Plan</summary><pre>"
            + html.escape(prov.plan.to_json()[:200_000])
            + "</pre></details>"
        )
    return "".join(parts)


def render(data: ReportData, *, epsilon: float | None = None, title: str | None = None,
           links: Mapping[tuple[str, str], str] | None = None) -> str:
    """The report as one HTML string (see the module docstring). ``links``: MLflow run
    URLs by (model, attack) (:func:`sweep.report.details.run_links`)."""
    table, results, prov = data.table, data.results, data.provenance
    links = links or {}
    models = sorted(table["model"].astype(str).unique())
    attacks = sorted(a for a in table["attack"].astype(str).unique() if a != ENSEMBLE)
    keys = heatmap_keys(table)
    chosen = choose_epsilon(keys, epsilon)

    curves_html = "".join(
        _figure(
            plots.to_svg(plots.curve_figure(table, m), f"c{i}-"),
            f"Model {m}: robust accuracy vs epsilon per attack; dashed: worst case.",
            f' class="curve" data-model="{html.escape(m)}"',
        )
        + _attacks_html(data, m, links)
        for i, m in enumerate(models)
    )
    classes = per_class(results)
    per_class_html = "".join(
        _per_class_html(classes, norm, eps, (norm, eps) != chosen) for norm, eps in keys
    )
    options, heatmaps = [], []
    for norm, eps in keys:
        key = _key(norm, eps)
        selected = " selected" if (norm, eps) == chosen else ""
        options.append(
            f'<option value="{html.escape(key)}"{selected}>{html.escape(norm)} ε = {eps:g}</option>'
        )
        hidden = "" if (norm, eps) == chosen else " hidden"
        heatmaps.append(
            _figure(
                plots.heatmap_svg(table, norm, eps),
                f"Robust accuracy at {norm} epsilon {eps:g}; grey: not run.",
                f' class="heatmap" data-key="{html.escape(key)}"{hidden}',
            )
        )
    fig = plots.min_perturbation_figure(results)
    minimal = data.summary[data.summary["attack_kind"] == "minimal"]
    if fig is None:
        minimal_html = '<p class="note">No minimization attack in this sweep.</p>'
    else:
        minimal_html = _figure(
            plots.to_svg(fig, "m0-"),
            "Minimal perturbation per correctly classified sample; vertical line: median.",
            ' class="minimal"',
        ) + _table(
            minimal,
            [
                ("model", "model", "text"),
                ("attack", "attack", "text"),
                ("norm", "norm", "text"),
                ("median_min_perturbation", "median minimal perturbation", "num"),
                ("n_min_not_found", "not found", "num"),
                ("n", "n", "num"),
            ],
        )
    summary_html = _table(
        data.summary,
        [
            ("model", "model", "text"),
            ("attack", "attack", "text"),
            ("attack_kind", "kind", "text"),
            ("norm", "norm", "text"),
            ("n", "n", "num"),
            ("clean_accuracy", "clean acc.", "pct"),
            ("eps_max", "largest ε", "num"),
            ("robust_accuracy_at_eps_max", "robust acc. at largest ε", "pct"),
            ("auc", "AUC (normalised)", "pct"),
            ("median_min_perturbation", "median min. pert.", "num"),
        ],
    )
    if len(data.cascades):
        summary_html += (
            "<h3>Cascades: robust accuracy after each member</h3>"
            '<p class="note">Each member attacks only what the earlier ones left robust; '
            "the last member's value is the cascade's robust accuracy.</p>"
            + _table(
                data.cascades,
                [
                    ("model", "model", "text"),
                    ("attack", "cascade", "text"),
                    ("norm", "norm", "text"),
                    ("epsilon", "ε", "num"),
                    ("member", "member", "text"),
                    ("n_broken", "broke", "num"),
                    ("robust_accuracy_after", "robust acc. after it", "pct"),
                ],
            )
        )
    curve_table = _table(
        table,
        [
            ("model", "model", "text"),
            ("attack", "attack", "text"),
            ("norm", "norm", "text"),
            ("epsilon", "ε", "num"),
            ("robust_accuracy", "robust acc.", "pct"),
            ("ci_low", "95% CI low", "pct"),
            ("ci_high", "95% CI high", "pct"),
            ("clean_accuracy", "clean acc.", "pct"),
            ("n", "n", "num"),
            ("n_missing", "left out", "num"),
            ("targeted_success_rate", "target hit (targeted)", "pct"),
        ],
    )
    name = prov.plan.name or None
    title = title or f"attack-sweep report{': ' + name if name else ''}"
    meta = (
        f"sweep {html.escape(prov.sweep_id or '–')} · {len(models)} models · "
        f"{len(attacks)} attacks · {len(results):,} result rows · "
        f"{results['sample_id'].nunique():,} samples · {len(data.flags)} sanity flags"
    )
    page = string.Template(_asset("template.html")).substitute(
        title=html.escape(title),
        meta=meta,
        css=_asset("report.css"),
        js=_asset("report.js"),
        flags="".join(f'<p class="note">{html.escape(n)}</p>' for n in data.notes)
        + _flags_html(data.flags),
        curves=curves_html,
        heatmap_options="".join(options),
        heatmaps="".join(heatmaps),
        per_class=per_class_html,
        minimal=minimal_html,
        gallery=_gallery_html(data, None if epsilon is None else chosen[1]),
        transfer=_transfer_html(data.transfer),
        summary=summary_html,
        curve_table=curve_table,
        n_points=len(table),
        provenance=_provenance_html(prov, data.ignored_rows),
        version=html.escape(__version__),
        built=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return page


def write_report(
    output_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    epsilon: float | None = None,
    spec: Mapping[str, Any] | None = None,
    sweep_id: str | None = None,
    breaking_eps: Mapping[str, float] | None = None,
) -> Path:
    """Write the report of ``output_dir`` to ``out_path`` (atomically); returns the path.

    Args:
        output_dir: the sweep's results folder.
        out_path: the HTML file to write.
        epsilon: the heatmap shown first (must be in the grid; default: see
            :func:`choose_epsilon`). Every epsilon stays selectable in the page.
        spec: a parsed spec to show when the folder holds none.
        sweep_id: keep only this sweep's rows.
        breaking_eps: per norm, a budget that breaks any model (sanity flags).
    """
    data = collect(output_dir, spec=spec, sweep_id=sweep_id, breaking_eps=breaking_eps)
    page = render(data, epsilon=epsilon)
    return atomic.write_file(out_path, page.encode("utf-8"))

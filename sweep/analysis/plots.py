"""Matplotlib figures of robustness curves: PNG files and inline SVG for the report.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot), so
nothing depends on a global backend or GUI: PNGs go through the Agg canvas and
SVG through matplotlib's SVG writer, which also makes this safe in threads.

- :func:`curve_figure`: one model's curves, one line per attack plus the worst
  case (ensemble, black dashed), with the Wilson 95% interval as a band.
- :func:`heatmap_figure`: robust accuracy of every model x attack of one norm at
  one epsilon.
- :func:`min_perturbation_figure`: histogram of the minimal perturbations found
  by minimization attacks (only samples the model classifies correctly).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from sweep.analysis.curves import ENSEMBLE, EPS_DECIMALS, eps_key
from sweep.results import atomic

STYLE = {
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    # text stays text in SVG (smaller, selectable); fixed salt: same input, same bytes
    "svg.fonttype": "none",
    "svg.hashsalt": "attack-sweep",
}

ENSEMBLE_LABEL = "worst case (all attacks)"
MARKERS = ("s", "^", "v", "D", "P", "X", "<", ">")


@contextmanager
def _style() -> Iterator[None]:
    with rc_context(STYLE):
        yield


def attack_colors(attacks: Sequence[str]) -> dict[str, str]:
    """A stable colour per attack label (tab10 by sorted label); the ensemble is black."""
    palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    ]  # fmt: skip
    names = sorted({a for a in attacks if a != ENSEMBLE})
    colors = {a: palette[i % len(palette)] for i, a in enumerate(names)}
    colors[ENSEMBLE] = "#000000"
    return colors


def curve_figure(table: pd.DataFrame, model: str) -> Figure:
    """Robust accuracy vs epsilon for ``model``: one panel per norm, one line per
    attack, the worst case dashed in black, the Wilson 95% interval shaded."""
    rows = table[table["model"].astype(str) == model]
    if rows.empty:
        raise ValueError(f"no curve rows for model {model!r}")
    norms = sorted(rows["norm"].astype(str).unique())
    colors = attack_colors(list(table["attack"].astype(str).unique()))
    with _style():
        fig = Figure(figsize=(6.4 * len(norms), 3.8), layout="constrained")
        axes = fig.subplots(1, len(norms), squeeze=False)[0]
        for ax, norm in zip(axes, norms, strict=True):
            by_norm = rows[rows["norm"].astype(str) == norm]
            for k, (attack, grp) in enumerate(by_norm.groupby("attack", sort=False, observed=True)):
                grp = grp.sort_values("epsilon")
                is_ens = attack == ENSEMBLE
                color = colors.get(str(attack), "#444444")
                ax.fill_between(
                    grp["epsilon"], grp["ci_low"], grp["ci_high"], color=color, alpha=0.12, lw=0
                )
                ax.plot(
                    grp["epsilon"],
                    grp["robust_accuracy"],
                    # distinct markers keep tied curves (same accuracy) visible
                    marker="o" if is_ens else MARKERS[k % len(MARKERS)],
                    ms=4.5 if is_ens else 5.5,
                    mfc="none" if not is_ens else color,
                    lw=2.2 if is_ens else 1.5,
                    ls="--" if is_ens else "-",
                    color=color,
                    label=ENSEMBLE_LABEL if is_ens else str(attack),
                )
            ax.set_ylim(-0.02, 1.02)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            if norm == "l0":  # eps counts pixels: whole-number ticks, from 0 (no change)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlim(left=-0.05 * max(1.0, float(by_norm["epsilon"].max())))
            ax.set_xlabel(f"epsilon ({norm})")
            ax.set_ylabel("robust accuracy")
            ax.set_title(f"{model} — {norm}")
            ax.legend(fontsize=8, loc="best")
    return fig


def heatmap_grid(table: pd.DataFrame, norm: str, epsilon: float) -> pd.DataFrame:
    """Curve rows of ``norm`` at ``epsilon`` as a model (index) x attack (columns)
    frame of row records; the worst case is the last column, a cell that did not
    run is missing (NaN)."""
    key = round(float(epsilon), EPS_DECIMALS)
    rows = table[
        (table["norm"].astype(str) == norm)
        & (eps_key(table["epsilon"]) == key)
    ]
    if rows.empty:
        raise ValueError(f"no curve rows at {norm} epsilon={epsilon!r}")
    models = sorted(rows["model"].astype(str).unique())
    attacks = sorted(a for a in rows["attack"].astype(str).unique() if a != ENSEMBLE)
    if (rows["attack"] == ENSEMBLE).any():
        attacks.append(ENSEMBLE)
    return (
        rows.assign(model=rows["model"].astype(str), attack=rows["attack"].astype(str))
        .set_index(["model", "attack"])
        .reindex(pd.MultiIndex.from_product([models, attacks], names=["model", "attack"]))
    )


def _attack_label(attack: str) -> str:
    return "worst case" if attack == ENSEMBLE else attack


def heatmap_figure(table: pd.DataFrame, norm: str, epsilon: float) -> Figure:
    """Robust accuracy of every model (rows) x attack (columns) of ``norm`` at ``epsilon``.

    The worst case is the last column; a model that an attack did not run on is grey.
    """
    cells = heatmap_grid(table, norm, epsilon)
    models = list(cells.index.get_level_values("model").unique())
    attacks = list(cells.index.get_level_values("attack").unique())
    values = cells["robust_accuracy"].to_numpy(dtype=float).reshape(len(models), len(attacks))
    with _style():
        fig = Figure(
            figsize=(max(4.0, 1.1 * len(attacks) + 2.0), max(2.2, 0.55 * len(models) + 1.4)),
            layout="constrained",
        )
        ax = fig.subplots()
        ax.grid(False)
        masked = np.ma.masked_invalid(values)
        cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
        image = ax.imshow(masked, vmin=0.0, vmax=1.0, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(attacks)), [_attack_label(a) for a in attacks])
        ax.set_yticks(range(len(models)), models)
        ax.tick_params(axis="x", labelrotation=30)
        for i in range(len(models)):
            for j in range(len(attacks)):
                v = values[i, j]
                text = "–" if math.isnan(v) else f"{v:.1%}"
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if math.isnan(v) or v > 0.6 else "white",
                )  # fmt: skip
        ax.set_title(f"robust accuracy at {norm} eps={epsilon:g}")
        fig.colorbar(image, ax=ax, format=PercentFormatter(1.0), fraction=0.05)
    return fig


def heatmap_svg(table: pd.DataFrame, norm: str, epsilon: float) -> str:
    """The same heatmap as :func:`heatmap_figure`, written directly as SVG.

    The report holds one heatmap per (norm, epsilon); drawing them by hand is
    ~100x faster than matplotlib and lets each cell carry a tooltip (``<title>``)
    with the count and the Wilson interval.
    """
    cells = heatmap_grid(table, norm, epsilon)
    models = list(cells.index.get_level_values("model").unique())
    attacks = list(cells.index.get_level_values("attack").unique())
    values = {}
    for model in models:
        for attack in attacks:
            row = cells.loc[(model, attack)]
            v = float(row["robust_accuracy"])
            tip = "not run" if math.isnan(v) else (
                f"{int(row['n_robust'])}/{int(row['n'])} robust, "
                f"95% CI {row['ci_low']:.1%}–{row['ci_high']:.1%}")
            values[(model, attack)] = (v, f"{model} / {_attack_label(attack)}: {tip}")
    return grid_svg(f"robust accuracy at {norm} eps={epsilon:g}", models,
                    [(a, _attack_label(a)) for a in attacks], values)


def transfer_svg(transfer: pd.DataFrame, attack: str, epsilon: float) -> str:
    """Robust accuracy of each target model (columns) on the adversarials of ``attack``
    at ``epsilon`` crafted on each source model (rows): the transfer heatmap."""
    at = transfer[(transfer["attack"] == attack)
                  & (eps_key(transfer["epsilon"]) == round(epsilon, EPS_DECIMALS))]
    sources = sorted(at["source_model"].astype(str).unique())
    targets = sorted(at["model"].astype(str).unique())
    values = {
        (str(r.source_model), str(r.model)): (
            float(r.robust_accuracy),
            f"{r.model} on {r.source_model}'s adversarials: {r.robust_accuracy:.1%} of {int(r.n)} robust")
        for r in at.itertuples(index=False)
    }
    return grid_svg(f"transfer {attack} eps={epsilon:g}: rows source, columns target", sources,
                    [(t, t) for t in targets], values)


def grid_svg(title: str, rows: Sequence[str], columns: Sequence[tuple[str, str]],
             values: dict[tuple[str, str], tuple[float, str]]) -> str:
    """A labelled grid of robust accuracies as SVG: ``columns`` are (key, header),
    ``values[(row, column key)]`` is (accuracy, tooltip); NaN or missing: grey."""
    cmap = colormaps["viridis"]
    cw, ch, left, top = 96, 34, 12 + 7 * max((len(r) for r in rows), default=1), 46
    width, height = left + cw * len(columns) + 12, top + ch * len(rows) + 40
    esc = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="20" font-size="14">{esc(title)}</text>',
    ]
    for j, (_, header) in enumerate(columns):
        out.append(
            f'<text x="{left + cw * j + cw / 2}" y="{top - 8}" text-anchor="middle">'
            f"{esc(header)}</text>"
        )
    for i, name in enumerate(rows):
        y = top + ch * i
        out.append(
            f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end">{esc(name)}</text>'
        )
        for j, (key, _) in enumerate(columns):
            v, tip = values.get((name, key), (math.nan, "not run"))
            x = left + cw * j
            if math.isnan(v):
                fill, label, ink = "#dddddd", "–", "#000000"
            else:
                fill = to_hex(cmap(v))
                label, ink = f"{v:.1%}", "#000000" if v > 0.6 else "#ffffff"
            out.append(
                f"<g><title>{esc(tip)}</title>"
                f'<path d="M{x} {y}h{cw}v{ch}h-{cw}z" fill="{fill}" stroke="#ffffff"/>'
                f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}">{label}</text></g>'
            )
    out.append("</svg>")
    return "".join(out)


def min_perturbation_figure(results: pd.DataFrame) -> Figure | None:
    """Histogram of minimal perturbations per model x minimization attack, one
    panel per norm; ``None`` when the sweep has no minimization attack.

    Only samples the model classifies correctly count (a clean error needs no
    perturbation); samples with no adversarial found (inf) are counted in the legend.
    """
    df = results[results["attack_kind"].astype(str) == "minimal"]
    df = df[df["clean_correct"].astype(bool)]
    if df.empty:
        return None
    per_sample = (
        df.assign(
            model=df["model"].astype(str),
            attack=df["attack"].astype(str),
            norm=df["norm"].astype(str),
        )
        .groupby(["norm", "model", "attack", "sample_id"], observed=True)["min_perturbation"]
        .first()
        .reset_index()
    )
    norms = sorted(per_sample["norm"].unique())
    colors = attack_colors(list(per_sample["attack"].unique()))
    with _style():
        fig = Figure(figsize=(6.4 * len(norms), 3.6), layout="constrained")
        axes = fig.subplots(1, len(norms), squeeze=False)[0]
        for ax, norm in zip(axes, norms, strict=True):
            sub = per_sample[per_sample["norm"] == norm]
            finite = sub["min_perturbation"].to_numpy(float)
            finite = finite[np.isfinite(finite)]
            bins = np.linspace(0.0, float(finite.max()) if finite.size else 1.0, 31)
            styles = ["-", "--", ":", "-."]
            for k, ((model, attack), grp) in enumerate(sub.groupby(["model", "attack"])):
                vals = grp["min_perturbation"].to_numpy(float)
                found = vals[np.isfinite(vals)]
                missed = int((~np.isfinite(vals)).sum())
                label = f"{model}/{attack}" + (f" ({missed} not found)" if missed else "")
                if found.size:
                    ax.hist(
                        found, bins=bins, histtype="step", lw=1.6, color=colors[attack],
                        ls=styles[k % len(styles)], label=label,
                    )  # fmt: skip
                    ax.axvline(float(np.median(found)), color=colors[attack], lw=0.8, alpha=0.6)
                else:
                    ax.plot([], [], color=colors[attack], label=label)
            ax.set_xlabel(f"minimal perturbation ({norm})")
            ax.set_ylabel("samples")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"minimal perturbations — {norm}")
            ax.legend(fontsize=8)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (Agg), creating the folder; returns the path."""
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return atomic.write_file(path, buf.getbuffer())


def to_svg(fig: Figure, prefix: str) -> str:
    """``fig`` as an ``<svg>`` element to inline in HTML.

    The XML prolog is dropped, and every id (and each reference to it) gets
    ``prefix``, because matplotlib names ids per figure (``figure_1``,
    ``axes_1``, clip paths) and several figures share one HTML document.
    """
    buf = io.StringIO()
    with _style():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    # the RDF metadata block only names URIs; drop it so the page mentions none
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if ids:
        pattern = re.compile(
            r'(\bid="|url\(#|href="#)('
            + "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
            + r')(?=["\)])'
        )
        svg = pattern.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
    return svg


def safe_name(text: str) -> str:
    """``text`` as a file-name part: anything but letters, digits, ``.``, ``_``, ``-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def write_pngs(table: pd.DataFrame, results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Every figure as PNG under ``out_dir``: ``curves_<model>.png``, one
    ``heatmap_<norm>_eps<epsilon>.png`` per (norm, epsilon) and
    ``min_perturbation.png`` when there is a minimization attack."""
    out_dir = Path(out_dir)
    paths = []
    for model in sorted(table["model"].astype(str).unique()):
        fig = curve_figure(table, model)
        paths.append(save_png(fig, out_dir / f"curves_{safe_name(model)}.png"))
    pairs = table[["norm", "epsilon"]].astype({"norm": str}).drop_duplicates()
    for norm, eps in sorted(pairs.itertuples(index=False)):
        fig = heatmap_figure(table, norm, eps)
        paths.append(save_png(fig, out_dir / f"heatmap_{safe_name(norm)}_eps{eps:g}.png"))
    fig = min_perturbation_figure(results)
    if fig is not None:
        paths.append(save_png(fig, out_dir / "min_perturbation.png"))
    return paths

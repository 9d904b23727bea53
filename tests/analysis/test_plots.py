"""Figures: what each one draws, PNG output, and SVG that can share one HTML page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sweep.analysis import plots
from sweep.analysis.curves import curves, load_results
from tests.analysis.rows import basic_cells, write_results


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory):
    out = write_results(tmp_path_factory.mktemp("plots") / "out", *basic_cells())
    results = load_results(out)
    return results, curves(results)


def test_curve_figure_draws_every_attack_and_the_worst_case(basic) -> None:
    _, table = basic
    fig = plots.curve_figure(table, "m")
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["fmn", "pgd", "square", plots.ENSEMBLE_LABEL]
    worst = ax.get_lines()[-1]
    assert worst.get_linestyle() == "--"
    np.testing.assert_allclose(worst.get_ydata(), [0.25, 0.0])
    assert len(ax.collections) == 4  # one CI band per line
    with pytest.raises(ValueError, match="no curve rows"):
        plots.curve_figure(table, "nope")


def test_heatmap_grid_and_svg(basic) -> None:
    _, table = basic
    grid = plots.heatmap_grid(table, "linf", 0.1)
    assert list(grid.index.get_level_values("attack")) == ["fmn", "pgd", "square", "ensemble"]
    np.testing.assert_allclose(grid["robust_accuracy"], [0.5, 0.5, 0.5, 0.25])
    svg = plots.heatmap_svg(table, "linf", 0.1)
    assert svg.count("<path") == 4 and "25.0%" in svg and "1/4 robust" in svg


def test_pngs_are_written_and_not_blank(basic, tmp_path: Path) -> None:
    from matplotlib.image import imread

    results, table = basic
    paths = plots.write_pngs(table, results, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "curves_m.png", "heatmap_linf_eps0.1.png", "heatmap_linf_eps0.2.png", "min_perturbation.png",
    ]  # fmt: skip
    for p in paths:
        pixels = imread(p)[..., :3]
        assert (pixels < 0.9).any(axis=-1).mean() > 0.02, p.name


def test_min_perturbation_figure_only_for_minimal_attacks(basic) -> None:
    results, _ = basic
    fig = plots.min_perturbation_figure(results)
    assert fig is not None and fig.axes[0].get_legend_handles_labels()[1] == ["m/fmn"]
    assert plots.min_perturbation_figure(results[results["attack"] != "fmn"]) is None


def test_svg_ids_are_unique_per_figure(basic) -> None:
    _, table = basic
    a = plots.to_svg(plots.curve_figure(table, "m"), "a-")
    b = plots.to_svg(plots.curve_figure(table, "m"), "b-")
    ids_a = set(re.findall(r'\bid="([^"]+)"', a))
    ids_b = set(re.findall(r'\bid="([^"]+)"', b))
    assert ids_a and not ids_a & ids_b
    assert all(i.startswith("a-") for i in ids_a)
    # every internal reference points at an id of the same figure
    refs = set(re.findall(r'(?:url\(#|href="#)([^")]+)', a))
    assert refs and refs <= ids_a
    assert not a.startswith("<?xml") and "<metadata>" not in a


def test_l0_axis_ticks_whole_pixels_from_zero(tmp_path: Path) -> None:
    from tests.analysis.rows import attack_rows

    out = write_results(tmp_path / "out", attack_rows("m", "onepixel", [1, 3], ["RR", "RF", "FF"],
                                                      norm="l0"))
    fig = plots.curve_figure(curves(load_results(out)), "m")
    (ax,) = fig.axes
    fig.canvas.draw()  # ticks are placed at draw time
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks[0] == 0 and all(float(t).is_integer() for t in ticks), ticks
    assert 3 in ticks and not any(t in (1.25, 1.75) for t in ticks)

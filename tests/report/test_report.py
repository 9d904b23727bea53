"""The HTML report: self-contained, rendered by headless Chromium without errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sweep.analysis.curves import curves, load_results
from sweep.report import write_report
from sweep.report.builder import choose_epsilon, heatmap_keys
from tests.analysis.sweeps import write_demo, write_tiny
from tests.report import browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class Figures(HTMLParser):
    """Figures of the page: their attributes and how many SVG paths each holds."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self._open: dict | None = None
        self.root_attrs: dict = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "html":
            self.root_attrs = attrs
        if tag == "figure":
            self._open = {"attrs": attrs, "paths": 0, "texts": 0}
            self.figures.append(self._open)
        elif self._open is not None and tag in ("path", "use"):
            self._open["paths"] += 1
        elif self._open is not None and tag == "text":
            self._open["texts"] += 1

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._open = None


def parse(dom: str) -> Figures:
    parser = Figures()
    parser.feed(dom)
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    out = write_demo(root / "out")
    return write_report(out, root / "report.html", epsilon=0.03)


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    # nothing to fetch: no src/href to anything but a fragment or data: URI, no imports
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith(("#", "data:")) for r in refs), refs[:5]
    assert "@import" not in page and "fetch(" not in page and "XMLHttpRequest" not in page
    assert "default-src 'none'" in page  # and the browser would refuse a fetch anyway
    # the sections the issue asks for
    for anchor in ("flags", "curves", "heatmap", "minimal", "tables", "provenance"):
        assert f'id="{anchor}"' in page


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: Path) -> None:
    run = browser.dump_dom(report)
    assert run.console == [], run.console  # no console message, no uncaught exception
    page = parse(run.stdout)
    heatmaps = [f for f in page.figures if "heatmap" in f["attrs"].get("class", "")]
    curves_ = [f for f in page.figures if "curve" in f["attrs"].get("class", "").split()]
    # the script ran to its end and saw every heatmap
    assert page.root_attrs.get("data-report-ready") == str(len(heatmaps))
    assert len(curves_) == 2 and len(heatmaps) == 5 + 3  # linf and l2 grids
    for fig in curves_:
        # 6 linf lines + bands + markers + axes: a rendered chart has many paths
        assert fig["paths"] > 40, fig
    visible = [f for f in heatmaps if "hidden" not in f["attrs"]]
    assert [f["attrs"]["data-key"] for f in visible] == ["linf|0.03"]
    # one cell per model x attack: 2 x (4 fixed + fmn + worst case) for linf, 2 x 2 for l2
    cells = {f["attrs"]["data-key"].split("|")[0]: f["paths"] for f in heatmaps}
    assert cells == {"linf": 12, "l2": 4}
    minimal = [f for f in page.figures if "minimal" in f["attrs"].get("class", "")]
    assert len(minimal) == 1 and minimal[0]["paths"] > 10


@pytest.mark.browser
def test_heatmap_link_selects_another_epsilon(report: Path) -> None:
    run = browser.dump_dom(report, "#heatmap=l2|0.5")
    assert run.console == []
    visible = [
        f["attrs"]["data-key"]
        for f in parse(run.stdout).figures
        if "heatmap" in f["attrs"].get("class", "") and "hidden" not in f["attrs"]
    ]
    assert visible == ["l2|0.5"]


@pytest.mark.browser
def test_screenshot_is_not_blank(report: Path) -> None:
    from matplotlib.image import imread

    png = ARTIFACTS / "report.png"
    png.unlink(missing_ok=True)
    run = browser.screenshot(report, png)
    assert run.console == []
    rgb = (imread(png)[..., :3] * 255).astype(np.uint32)
    ink = (rgb < 230).any(axis=-1).mean()
    colours = len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))
    assert ink > 0.03, f"only {ink:.1%} of the screenshot is not white"
    assert colours > 200, f"only {colours} colours: charts did not render"


@pytest.mark.browser
def test_browser_check_catches_script_errors(tmp_path: Path) -> None:
    # the harness itself: a page that throws must be reported
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    run = browser.dump_dom(page)
    assert any("undefinedFunction" in line for line in run.console), run.console


def test_epsilon_choice(tmp_path: Path) -> None:
    table = curves(load_results(write_demo(tmp_path / "out")))
    keys = heatmap_keys(table)
    assert choose_epsilon(keys, None) == ("linf", 0.03)  # middle of the L-inf grid
    assert choose_epsilon(keys, 1.0) == ("l2", 1.0)
    assert choose_epsilon(keys, 0.1 + 1e-12) == ("linf", 0.1)
    with pytest.raises(ValueError, match=r"not in the sweep's grid; valid: l2 0\.25"):
        choose_epsilon(keys, 0.04)


def test_report_shows_spec_plan_and_recorded_versions(tmp_path: Path) -> None:
    out = write_tiny(tmp_path / "out")
    (out / "_manifest").mkdir()
    (out / "_manifest" / "spec.yaml").write_text("name: demo-sweep\nseed: 7\n")
    plan = {"sweep_id": "abc123", "name": "demo-sweep", "versions": {"torch": "9.9.9"}}
    (out / "_manifest" / "plan.json").write_text(json.dumps(plan))
    page = write_report(out, tmp_path / "r.html").read_text()
    assert "name: demo-sweep" in page and "seed: 7" in page
    assert "abc123" in page and "9.9.9" in page
    assert "Versions recorded by the sweep" in page


def test_report_shows_the_runs_versions_not_this_machines(tmp_path: Path) -> None:
    """The versions in the report are the ones the run recorded in its plan."""
    import importlib.metadata

    from sweep.results.manifest import Manifest
    from sweep.results.plan import Plan, package_versions

    out = write_tiny(tmp_path / "out")
    ran_with = {"python": "3.0.0-test", "torch": "0.0.0-test", "torchvision": "0.0.1-test",
                "ray": "0.0.2-test", "mlflow": "0.0.3-test", "pyarrow": "0.0.4-test",
                "numpy": "0.0.5-test", "attack-sweep": "0.0.6-test"}
    Manifest(out).write_plan(Plan(sweep_id="abc123", name="demo", versions=ran_with), "name: demo\n")
    page = write_report(out, tmp_path / "r.html").read_text()
    section = page[page.index("Versions recorded by the sweep"):]
    for name, version in ran_with.items():
        assert f">{name}</td><td class=\"text\">{version}</td>" in section
    here = package_versions()
    assert here["torch"] == importlib.metadata.version("torch")  # what a wrong report would show
    for name in ("torch", "ray", "mlflow", "numpy", "pyarrow"):
        assert f">{name}</td><td class=\"text\">{here[name]}</td>" not in page


def test_plan_records_the_versions_it_ran_with() -> None:
    from sweep.results.plan import PACKAGES, Plan, package_versions

    versions = package_versions()
    assert {"python", "torch", "ray", "mlflow", "pyarrow", "numpy", "attack-sweep"} <= set(versions)
    assert set(versions) - {"python"} <= set(PACKAGES)
    plan = Plan(sweep_id="s", versions=versions)
    assert Plan.from_json(plan.to_json()) == plan


def test_old_plan_loads_and_its_versions_are_not_recorded(tmp_path: Path) -> None:
    from sweep.results.plan import Plan

    old = {"sweep_id": "abc123", "name": "old", "someday": {"x": 1},
           "pairs": [{"model": "tiny-model", "attack": "pgd", "cells": ["c1"], "future": 2}]}
    plan = Plan.from_json(json.dumps(old))
    assert plan.versions == {} and plan.pairs[0].cells == ("c1",) and plan.experiment == ""
    assert json.loads(plan.to_json())["someday"] == {"x": 1}  # unknown keys kept
    assert json.loads(plan.to_json())["pairs"][0]["future"] == 2
    out = write_tiny(tmp_path / "out")
    (out / "_manifest").mkdir()
    (out / "_manifest" / "plan.json").write_text(json.dumps({"sweep_id": "abc123"}))
    page = write_report(out, tmp_path / "r.html").read_text()
    assert "not recorded" in page and "Versions recorded by the sweep" not in page


def test_report_without_provenance_uses_given_spec(tmp_path: Path) -> None:
    import importlib.metadata

    out = write_tiny(tmp_path / "out")
    page = write_report(out, tmp_path / "r.html", spec={"name": "given<spec>"}).read_text()
    assert "given&lt;spec&gt;" in page  # escaped
    assert "not recorded" in page  # never the versions of the machine building the report
    assert f'<td class="text">{importlib.metadata.version("torch")}</td>' not in page


def test_plan_cells_restrict_the_rows(tmp_path: Path) -> None:
    out = write_demo(tmp_path / "out")
    (out / "_manifest").mkdir()
    # the latest plan only has digits-cnn's cells: the other model's rows are left out
    keep = [p.stem for p in (out / "model=digits-cnn").rglob("*.parquet")]
    plan = {
        "pairs": [{"model": "digits-cnn", "attack": "all", "cells": keep}]
    }  # as sweep run writes
    (out / "_manifest" / "plan.json").write_text(json.dumps(plan))
    page = write_report(out, tmp_path / "r.html").read_text()
    assert 'data-model="digits-cnn"' in page and 'data-model="digits-cnn-at"' not in page
    assert "outside the latest plan were left out" in page


def test_plan_with_no_done_cell_is_an_error_not_old_numbers(tmp_path: Path) -> None:
    out = write_tiny(tmp_path / "out")
    (out / "_manifest").mkdir()
    plan = {"pairs": [{"model": "tiny-model", "attack": "pgd", "cells": ["notyetdone"]}]}
    (out / "_manifest" / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ValueError, match="no cell of it is done yet"):
        write_report(out, tmp_path / "r.html")


def _demo_with_plan(root: Path) -> Path:
    """The demo rows, pgd's cells made slower (cell_seconds 12.5), and a plan naming
    pgd's settings as `sweep run` records them."""
    from tests.analysis.rows import write_results
    from tests.analysis.sweeps import demo_cells

    cells = demo_cells()
    for rows in cells:
        for row in rows:
            if row["attack"] == "pgd" and row["model"] == "digits-cnn":
                row["cell_seconds"] = 12.5
    out = write_results(root, *cells)
    (out / "_manifest").mkdir()
    pairs = [{"model": "digits-cnn", "attack": "pgd", "attack_name": "pgd", "norm": "linf",
              "strategy": "incremental", "targeted": None,
              "params": {"steps": 20, "restarts": 1, "rel_stepsize": 0.125},
              "cells": [p.stem for p in out.rglob("*.parquet")]}]
    (out / "_manifest" / "plan.json").write_text(json.dumps({"name": "demo", "pairs": pairs}))
    return out


def test_report_shows_settings_cost_per_class_and_run_links(tmp_path: Path) -> None:
    from sweep.analysis.collect import collect
    from sweep.report.builder import render
    from sweep.report.details import attack_costs, per_class

    out = _demo_with_plan(tmp_path / "out")
    data = collect(out)
    costs = attack_costs(data.results).set_index(["model", "attack"])
    assert costs.loc[("digits-cnn", "pgd"), "seconds"] == 12.5  # once per cell, not per row
    assert costs.loc[("digits-cnn", "pgd"), "ms_per_sample"] == pytest.approx(12500 / 24)
    assert costs.loc[("digits-cnn", "fgsm"), "seconds"] == 1.0
    url = "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    page = render(data, epsilon=0.03, links={("digits-cnn", "pgd"): url})
    pgd_row = re.search(r'<tr><td class="text">pgd</td>.*?</tr>', page).group(0)
    assert "pgd · linf · incremental · untargeted · rel_stepsize=0.125, restarts=1, steps=20" in pgd_row
    assert "<td>12.5</td>" in pgd_row and "<td>520.8</td>" in pgd_row
    assert f'<a class="mlflow" href="{url}"' in pgd_row
    assert "no plan recorded" in page  # the other attacks: the plan names only pgd
    # per class: one table per epsilon, the chosen one shown; numbers as pandas gives them
    tables = re.findall(r'<div class="per-class" data-key="([^"]+)"( hidden)?>', page)
    assert len(tables) == len(heatmap_keys(data.table))
    assert [k for k, hidden in tables if not hidden] == ["linf|0.03"]
    rows = data.results[(data.results["epsilon"] == 0.03) & (data.results["attack"] == "pgd")
                        & (data.results["model"] == "digits-cnn")]
    expected = rows.groupby("label")["robust"].mean()
    got = per_class(data.results).query("model == 'digits-cnn' and attack == 'pgd' and "
                                        "epsilon == 0.03").set_index("label")["robust_accuracy"]
    assert got.to_dict() == pytest.approx(expected.to_dict())


def _two_sweeps(tmp_path: Path) -> tuple[Path, Path]:
    from tests.analysis.rows import write_results
    from tests.analysis.sweeps import demo_cells

    a = write_results(tmp_path / "a", *demo_cells(seed=0))
    b = write_results(tmp_path / "b", *demo_cells(seed=1))
    return a, b


def test_two_sweeps_side_by_side(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sweep.cli.main import cli
    from sweep.report.compare import compare_table

    a, b = _two_sweeps(tmp_path)
    res = CliRunner().invoke(cli, ["report", str(a), str(b), "-o", str(tmp_path / "ab.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "ab.html").read_text()
    assert f"{a} vs {b}" in page and page.count('class="side"') == 2
    assert page.count('class="curve"') == 4  # two models per sweep
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert all(r.startswith("#") for r in refs) and "default-src 'none'" in page
    # the difference column is b - a, row by row
    table = compare_table(load_results_table(a), load_results_table(b))
    row = table[(table["model"] == "digits-cnn") & (table["attack"] == "pgd")
                & (table["epsilon"] == 0.05)].iloc[0]
    assert row["diff"] == pytest.approx(row["acc_b"] - row["acc_a"])
    assert f"{100 * row['diff']:+.1f} pp" in page
    bad = CliRunner().invoke(cli, ["report", str(a), str(tmp_path / "missing")])
    assert bad.exit_code == 2


def load_results_table(out: Path):
    return curves(load_results(out))


@pytest.mark.browser
def test_comparison_and_per_class_render_in_chromium(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sweep.cli.main import cli

    a, b = _two_sweeps(tmp_path)
    assert CliRunner().invoke(cli, ["report", str(a), str(b), "-o", str(tmp_path / "ab.html")]
                              ).exit_code == 0
    run = browser.dump_dom(tmp_path / "ab.html")
    assert run.console == [], run.console
    assert len([f for f in parse(run.stdout).figures if f["paths"] > 40]) == 4
    # the per-class table follows the epsilon picked by a link, as the heatmap does
    out = _demo_with_plan(tmp_path / "out")
    run = browser.dump_dom(write_report(out, tmp_path / "r.html"), "#heatmap=l2|0.5")
    assert run.console == [], run.console
    shown = re.findall(r'<div class="per-class" data-key="([^"]+)">', run.stdout)
    assert shown == ["l2|0.5"]

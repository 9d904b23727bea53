"""`sweep curves` and `sweep report` through the real click entry point."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from sweep.analysis.curves import curves, load_results
from sweep.cli.main import cli
from tests.analysis.rows import attack_rows, basic_cells, write_results


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return write_results(
        tmp_path / "out",
        *basic_cells(),
        # a rising independent curve, so a sanity flag shows up
        attack_rows("m2", "pgd", [0.1, 0.2], ["FR", "RR"], strategy="independent", cell_id="c7"),
    )


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_curves_table_is_readable_and_lists_flags(out: Path) -> None:
    res = invoke("curves", str(out))
    assert res.exit_code == 0, res.output
    assert "m — linf: robust accuracy [95% CI]" in res.output
    assert "worst case" in res.output and "ε=0.1" in res.output
    assert "25.0%" in res.output  # worst case at 0.1
    assert "2 sanity flag(s)" in res.output and "accuracy_rises_with_epsilon" in res.output
    assert "single_attack" in res.output  # m2's linf curve rests on pgd alone
    assert "cells: c7" in res.output


def test_curves_csv_and_parquet_hold_the_curve_table(out: Path, tmp_path: Path) -> None:
    expected = curves(load_results(out))
    res = invoke("curves", str(out), "--format", "csv", "-o", str(tmp_path / "c.csv"))
    assert res.exit_code == 0
    got = pd.read_csv(tmp_path / "c.csv")
    for col in ("model", "attack", "norm", "epsilon", "robust_accuracy", "ci_low", "ci_high", "n"):
        assert col in got.columns
    pd.testing.assert_series_equal(got["robust_accuracy"], expected["robust_accuracy"])
    res = invoke("curves", str(out), "--format", "parquet", "-o", str(tmp_path / "c.parquet"))
    assert res.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), expected)


def test_curves_csv_to_stdout_is_clean(out: Path) -> None:
    res = CliRunner().invoke(cli, ["curves", str(out), "--format", "csv"])
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0].startswith("model,attack,")
    assert "sanity flag" not in res.stdout and "sanity flag" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "parquet"], "parquet needs -o"),
        (["--breaking-eps", "linf"], "expected NORM=EPS"),
    ],
)
def test_curves_bad_options_exit_2(out: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["curves", str(out), *args])
    assert res.exit_code == 2 and message in res.output


def test_bad_folders_exit_2(tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["curves", str(tmp_path / "missing")]).exit_code == 2
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["curves", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no result rows" in res.stderr
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "empty"), "-o", "x.html"])
    assert res.exit_code == 2 and "no result rows" in res.stderr


def test_breaking_eps_option_reaches_the_flags(tmp_path: Path) -> None:
    out = write_results(
        tmp_path / "out", attack_rows("m", "pgd", [4.0], ["R", "R", "F"], norm="l2")
    )
    assert "accuracy_above_breaking_bound" not in invoke("curves", str(out)).output
    res = invoke("curves", str(out), "--breaking-eps", "l2=3")
    assert "accuracy_above_breaking_bound" in res.output


def test_report_command(tmp_path: Path) -> None:
    out = write_results(tmp_path / "out", *basic_cells())
    html = tmp_path / "site" / "r.html"
    res = invoke("report", str(out), "-o", str(html), "--epsilon", "0.2")
    assert res.exit_code == 0, res.output
    page = html.read_text()
    assert 'value="linf|0.2" selected' in page and "<svg" in page
    assert "wrote" in res.output and "0 sanity flags" in res.output
    bad = CliRunner().invoke(cli, ["report", str(out), "-o", str(html), "--epsilon", "0.3"])
    assert bad.exit_code == 2 and "valid: linf 0.1, linf 0.2" in bad.stderr

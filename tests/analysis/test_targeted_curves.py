"""Targeted rows in curves: robust accuracy counts every misclassification, the targeted
success rate the target hits; version-1 files are re-read with the version-2 rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweep.analysis.collect import collect
from sweep.analysis.curves import ENSEMBLE, curves, load_results
from tests.analysis.rows import attack_rows, write_results

EPS = [0.1, 0.2]


def targeted_cell(*, v1: bool = False) -> list[dict]:
    """Four samples of a least-likely attack: 0 robust, 1 hit its target at 0.2,
    2 misclassified off target at both epsilons (label 2, target 4, predicted 1),
    3 a clean error. ``v1`` writes the old verdict (robust = clean_correct and not
    success), which called sample 2 robust."""
    rows = attack_rows("m", "ll", EPS, ["RR", "RF", "RR", "xx"], labels=[0, 1, 2, 3])
    targets = {0: 5, 1: 7, 2: 4, 3: 9}
    for r in rows:
        sid = r["sample_id"]
        r["target"] = targets[sid]
        if sid == 1 and r["epsilon"] == 0.2:
            r["adv_pred"], r["success"] = 7, True
        elif r["clean_correct"]:
            r["success"] = False
        if sid == 2:
            r["adv_pred"], r["perturbation"] = 1, r["epsilon"] / 2
            r["robust"] = v1
        if v1:
            r["schema_version"] = 1
    return rows


def untargeted_cell() -> list[dict]:
    """An untargeted attack that breaks nobody but the clean error."""
    return attack_rows("m", "pgd", EPS, ["RR", "RR", "RR", "xx"], labels=[0, 1, 2, 3])


def by(table: pd.DataFrame, attack: str) -> pd.Series:
    return table[table["attack"] == attack].set_index("epsilon")["robust_accuracy"]


def test_off_target_misclassification_breaks_the_worst_case(tmp_path: Path) -> None:
    table = curves(load_results(write_results(tmp_path / "out", targeted_cell(), untargeted_cell())))
    assert by(table, "ll").tolist() == [0.5, 0.25]  # sample 2 is not robust
    assert by(table, ENSEMBLE).tolist() == [0.5, 0.25]
    assert by(table, "pgd").tolist() == [0.75, 0.75]
    hit = table[table["attack"] == "ll"].set_index("epsilon")["targeted_success_rate"]
    assert hit.tolist() == pytest.approx([0.0, 1 / 3])  # of the 3 clean-correct samples
    assert table[table["attack"] != "ll"]["targeted_success_rate"].isna().all()


def test_version_1_rows_are_read_with_the_new_rule_and_say_so(tmp_path: Path) -> None:
    out = write_results(tmp_path / "out", targeted_cell(v1=True), untargeted_cell())
    raw = pd.read_parquet(out)
    assert raw[(raw["sample_id"] == 2) & (raw["attack"] == "ll")]["robust"].all()  # the old verdict
    rows = load_results(out)
    assert len(rows.attrs["notes"]) == 1
    note = rows.attrs["notes"][0]
    assert "8 rows of schema version 1" in note and "2 rows changed" in note
    table = curves(rows)
    assert by(table, "ll").tolist() == [0.5, 0.25]
    assert by(table, ENSEMBLE).tolist() == [0.5, 0.25]
    assert collect(out).notes == (note,)


def test_current_rows_carry_no_note(tmp_path: Path) -> None:
    rows = load_results(write_results(tmp_path / "out", targeted_cell(), untargeted_cell()))
    assert rows.attrs["notes"] == []


def test_report_shows_target_hits_and_the_version_note(tmp_path: Path) -> None:
    from sweep.report.builder import render

    page = render(collect(write_results(tmp_path / "out", targeted_cell(v1=True), untargeted_cell())))
    assert "target hit (targeted)" in page
    assert "33.3%" in page  # sample 1 of the 3 clean-correct ones hit its target at 0.2
    assert "rows of schema version 1 read as version 2" in page

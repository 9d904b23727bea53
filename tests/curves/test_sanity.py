"""Each sanity flag built on purpose, its negative control, and what the flag names."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sweep.curves import load_results
from sweep.sanity import flags_frame, sanity_flags
from tests.curves.rows import attack_rows, basic_cells, write_results


def flags_of(tmp_path: Path, *cells, **kwargs):
    results = load_results(write_results(tmp_path / "out", *cells))
    return sanity_flags(results, **kwargs)


def test_honest_sweep_raises_no_flag(tmp_path: Path) -> None:
    # basic: square ties pgd (a tie is not a win), curves fall, small budgets,
    # fmn finds every sample
    assert flags_of(tmp_path, *basic_cells()) == []


def test_black_box_beats_every_gradient_attack(tmp_path: Path) -> None:
    eps = [0.1, 0.2]
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", eps, ["RR", "RR", "RF", "FF"], cell_id="c-pgd"),
        attack_rows("m", "apgd", eps, ["RR", "RF", "RF", "FF"], cell_id="c-apgd"),
        # square: 1/4 at 0.1, below pgd and apgd (3/4 each); ties apgd (1/4) at 0.2
        attack_rows("m", "sq", eps, ["RR", "FF", "FF", "FF"], name="square", cell_id="c-sq"),
    )
    assert [f.code for f in flags] == ["black_box_beats_gradient"]
    flag = flags[0]
    assert flag.model == "m" and flag.attacks[0] == "sq"
    assert set(flag.attacks[1:]) == {"apgd", "pgd"}
    assert flag.epsilons == (0.1,)
    assert flag.cells == ("c-apgd", "c-pgd", "c-sq")
    assert "sq" in flag.message and "0.1" in flag.message


def test_black_box_needs_to_beat_all_gradient_attacks(tmp_path: Path) -> None:
    eps = [0.1]
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", eps, ["R", "F", "F", "F"]),
        attack_rows("m", "fgsm", eps, ["R", "R", "R", "F"]),
        attack_rows("m", "square", eps, ["R", "R", "F", "F"]),  # beats fgsm, not pgd
    )
    assert flags == []


def test_margin_silences_small_differences(tmp_path: Path) -> None:
    cells = (
        attack_rows("m", "pgd", [0.1], ["R", "R", "R", "F"]),
        attack_rows("m", "noise", [0.1], ["R", "R", "F", "F"]),
    )
    assert [f.code for f in flags_of(tmp_path / "a", *cells)] == ["black_box_beats_gradient"]
    assert flags_of(tmp_path / "b", *cells, margin=0.3) == []


def test_accuracy_rising_under_independent_strategy(tmp_path: Path) -> None:
    flags = flags_of(
        tmp_path,
        attack_rows(
            "m",
            "pgd",
            [0.1, 0.2, 0.3],
            ["FRF", "FRR", "RRR", "FFF"],
            strategy="independent",
            cell_id="c1",
        ),
    )
    assert [f.code for f in flags] == ["accuracy_rises_with_epsilon"]
    flag = flags[0]
    assert flag.epsilons == (0.1, 0.2) and flag.cells == ("c1",)
    assert flag.samples == (0, 1)  # fooled at 0.1, robust at 0.2
    assert "too weak" in flag.message and "25.0%" in flag.message and "75.0%" in flag.message


def test_accuracy_rising_under_incremental_is_called_a_bug(tmp_path: Path) -> None:
    flags = flags_of(tmp_path, attack_rows("m", "pgd", [0.1, 0.2], ["FR", "RR"]))
    assert [f.code for f in flags] == ["accuracy_rises_with_epsilon"]
    assert "bug" in flags[0].message


def test_accuracy_above_what_any_model_keeps_at_a_breaking_budget(tmp_path: Path) -> None:
    labels = [0, 1, 2, 3]  # largest class share 25%
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", [0.1, 0.5], ["RR", "RR", "RF", "FF"], labels=labels, cell_id="c"),
    )
    assert [f.code for f in flags] == ["accuracy_above_breaking_bound"]
    assert flags[0].epsilons == (0.5,) and flags[0].cells == ("c",)
    assert "25.0%" in flags[0].message and "50.0%" in flags[0].message


def test_breaking_bound_uses_class_share_and_only_configured_norms(tmp_path: Path) -> None:
    # robust 2/4 at linf 0.6, but half the samples share a label: 50% is possible
    at_bound = attack_rows("m", "pgd", [0.6], ["R", "R", "F", "F"], labels=[0, 0, 1, 2])
    assert flags_of(tmp_path / "a", at_bound) == []
    # an L2 curve is not checked unless a breaking L2 budget is given
    l2 = attack_rows("m", "pgd", [4.0], ["R", "R", "F", "F"], norm="l2")
    assert flags_of(tmp_path / "b", l2) == []
    flags = flags_of(tmp_path / "c", l2, breaking_eps={"l2": 3.0})
    assert [f.code for f in flags] == ["accuracy_above_breaking_bound"]


def test_minimal_attack_gives_up_on_samples_a_fixed_attack_fooled(tmp_path: Path) -> None:
    eps = [0.05, 0.1]
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", eps, ["xx", "FF", "RF", "RR"], cell_id="c-pgd"),
        attack_rows(
            "m",
            "fmn",
            eps,
            kind="minimal",
            cell_id="c-fmn",
            min_perturbation=[0.0, math.inf, math.inf, math.inf],
        ),
    )
    assert [f.code for f in flags] == ["minimal_attack_missed"]
    flag = flags[0]
    assert flag.attacks == ("fmn", "pgd")  # the minimal attack first, then who fooled them
    assert flag.samples == (1, 2)  # sample 3 was never fooled by anyone: no evidence
    assert flag.epsilons == (0.05, 0.1)  # first epsilon pgd fooled each of them
    assert flag.cells == ("c-fmn", "c-pgd")


def test_minimal_attack_weaker_but_finite_is_not_flagged(tmp_path: Path) -> None:
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", [0.05], ["F", "F"]),
        attack_rows("m", "deepfool", [0.05], kind="minimal", min_perturbation=[0.2, 0.3]),
    )
    assert flags == []


def test_flags_frame_lists_every_field(tmp_path: Path) -> None:
    flags = flags_of(tmp_path, attack_rows("m", "pgd", [0.1, 0.2], ["FR", "RR"], cell_id="c9"))
    frame = flags_frame(flags)
    assert list(frame.columns) == [
        "code",
        "model",
        "attacks",
        "norm",
        "epsilons",
        "cells",
        "samples",
        "message",
    ]
    assert frame.loc[0, "cells"] == "c9" and frame.loc[0, "epsilons"] == "0.1, 0.2"
    assert flags_frame([]).empty


def test_flags_accept_plain_read_parquet(tmp_path: Path) -> None:
    out = write_results(tmp_path / "out", attack_rows("m", "pgd", [0.1, 0.2], ["FR", "RR"]))
    assert len(sanity_flags(pd.read_parquet(out))) == 1


@pytest.mark.parametrize("strategy", ["independent", "incremental"])
def test_flat_curves_do_not_rise(tmp_path: Path, strategy: str) -> None:
    cells = attack_rows("m", "pgd", [0.1, 0.2], ["RR", "FF"], strategy=strategy)
    assert flags_of(tmp_path, cells) == []


def test_a_huge_last_epsilon_raises_no_bogus_bound_flag(tmp_path: Path) -> None:
    """Issue 15, case 7: with epsilons [-0.0, 0.1, 1e308] every model got a breaking-bound
    flag ("0.0% ... at most nan%", no cells): pandas' round turned 1e308 into inf, so
    no row matched, and an overflow warning was printed."""
    import warnings

    eps = [-0.0, 0.1, 1.0e308]
    cells = (attack_rows("m", "pgd", eps, ["RRF", "RFF", "RRF", "FFF"]),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflow warning is gone too
        assert flags_of(tmp_path / "a", *cells) == []
    # and a real violation at that budget is still caught, naming its cells
    held = (attack_rows("m", "pgd", eps, ["RRR", "RRR", "RRF", "FFF"], cell_id="c-1"),)
    flags = flags_of(tmp_path / "b", *held)
    assert [f.code for f in flags] == ["accuracy_above_breaking_bound"]
    assert flags[0].cells == ("c-1",) and "nan" not in flags[0].message


def test_nonfinite_logits_are_flagged_with_model_attack_and_count(tmp_path: Path) -> None:
    rows = attack_rows("m", "pgd", [0.0, 0.1], ["RF", "RF", "RR", "xx"], cell_id="c-pgd")
    for r in rows:
        if r["epsilon"] == 0.1 and r["sample_id"] in (0, 1):
            r.update(adv_nonfinite=True, adv_pred=-1)
    flags = flags_of(tmp_path, rows, attack_rows("m", "fgsm", [0.1], ["R", "F", "R", "x"]))
    assert [f.code for f in flags] == ["nonfinite_logits"]
    flag = flags[0]
    assert flag.model == "m" and flag.attacks == ("pgd",) and flag.epsilons == (0.1,)
    assert flag.samples == (0, 1) and flag.cells == ("c-pgd",)
    assert "2 samples of 4" in flag.message and "non-finite" in flag.message


def test_files_without_the_nonfinite_column_still_read(tmp_path: Path) -> None:
    """Files written before the column existed load with the current schema, and raise no flag."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sweep.schema import FILE_SCHEMA

    v1 = pa.schema([f for f in FILE_SCHEMA if f.name != "adv_nonfinite"])
    rows = attack_rows("m", "pgd", [0.1], ["R", "F", "R", "F"], cell_id="old")
    folder = tmp_path / "out" / "model=m" / "attack=pgd"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{f.name: r.get(f.name) for f in v1} for r in rows], schema=v1),
                   folder / "old.parquet")
    results = load_results(tmp_path / "out")
    assert results["adv_nonfinite"].isna().all() and len(results) == 4
    assert sanity_flags(results) == []

"""Each sanity flag built on purpose, its negative control, and what the flag names."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sweep.analysis.curves import load_results
from sweep.analysis.sanity import flags_frame, sanity_flags
from tests.analysis.rows import attack_rows, basic_cells, write_results


def flags_of(tmp_path: Path, *cells, notes: bool = False, **kwargs):
    """The flags of these cells; ``single_attack`` notes only if ``notes`` (most tests
    here run one attack per norm on purpose; that note has its own tests)."""
    results = load_results(write_results(tmp_path / "out", *cells))
    return [f for f in sanity_flags(results, **kwargs) if notes or f.code != "single_attack"]


def test_honest_sweep_raises_no_flag(tmp_path: Path) -> None:
    # basic: square ties pgd (a tie is not a win), curves fall, small budgets,
    # fmn finds every sample
    assert flags_of(tmp_path, *basic_cells()) == []


def test_black_box_beats_every_gradient_attack(tmp_path: Path) -> None:
    eps = [0.1, 0.2]
    # 40 samples: pgd and apgd keep 30 robust at 0.1; a planted strong square fools 20
    # of those 30 (and nothing the gradient attacks missed is robust under it)
    pgd = ["RR"] * 30 + ["FF"] * 10
    apgd = ["RF"] * 30 + ["FF"] * 10
    square = ["RR"] * 10 + ["FF"] * 30
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", eps, pgd, cell_id="c-pgd"),
        attack_rows("m", "apgd", eps, apgd, cell_id="c-apgd"),
        attack_rows("m", "sq", eps, square, name="square", cell_id="c-sq"),
    )
    assert [f.code for f in flags] == ["black_box_beats_gradient"]
    flag = flags[0]
    assert flag.model == "m" and flag.attacks[0] == "sq"
    assert set(flag.attacks[1:]) == {"apgd", "pgd"}
    assert flag.epsilons == (0.1,)  # at 0.2 apgd fools as many as square
    assert flag.cells == ("c-apgd", "c-pgd", "c-sq")
    # how sure: the discordant counts and McNemar's p (20 vs 0: 2^-20)
    assert "20 samples fooled only by sq, 0 only by apgd" in flag.message
    assert "McNemar exact p=1e-06" in flag.message


def test_black_box_one_sample_ahead_is_not_a_finding(tmp_path: Path) -> None:
    # the demo's case: 2.0% vs 2.3% robust of 256, one discordant sample
    pgd = ["R"] * 6 + ["F"] * 250
    square = ["R"] * 5 + ["F"] * 251
    assert flags_of(tmp_path, attack_rows("m", "pgd", [0.2], pgd),
                    attack_rows("m", "square", [0.2], square)) == []


def test_black_box_needs_to_beat_all_gradient_attacks(tmp_path: Path) -> None:
    eps = [0.1]
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", eps, ["R"] * 5 + ["F"] * 35),
        attack_rows("m", "fgsm", eps, ["R"] * 35 + ["F"] * 5),
        attack_rows("m", "square", eps, ["R"] * 15 + ["F"] * 25),  # beats fgsm, not pgd
    )
    assert flags == []


def test_significance_and_margin_silence_flags(tmp_path: Path) -> None:
    cells = (
        attack_rows("m", "pgd", [0.1], ["R"] * 20 + ["F"] * 20),
        attack_rows("m", "noise", [0.1], ["R"] * 10 + ["F"] * 30),  # 10 discordant, p ~ 1e-3
    )
    assert [f.code for f in flags_of(tmp_path / "a", *cells)] == ["black_box_beats_gradient"]
    assert flags_of(tmp_path / "b", *cells, margin=0.3) == []
    assert flags_of(tmp_path / "c", *cells, alpha=1e-4) == []


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    from sweep.analysis.sanity import mcnemar_exact

    assert mcnemar_exact(1, 0) == 0.5  # one sample: a coin flip
    assert mcnemar_exact(0, 5) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_exact(8, 2) == pytest.approx(56 / 1024)  # (45 + 10 + 1) / 2^10


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
    # all three correct samples unfooled: also a budget that ran out
    assert [f.code for f in flags] == ["minimal_attack_missed", "minimal_attack_budget"]
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
    codes = [f.code for f in sanity_flags(pd.read_parquet(out))]
    assert codes == ["accuracy_rises_with_epsilon", "single_attack"]


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

    from sweep.results.schema import FILE_SCHEMA

    v1 = pa.schema([f for f in FILE_SCHEMA if f.name != "adv_nonfinite"])
    rows = attack_rows("m", "pgd", [0.1], ["R", "F", "R", "F"], cell_id="old")
    folder = tmp_path / "out" / "model=m" / "attack=pgd"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{f.name: r.get(f.name) for f in v1} for r in rows], schema=v1),
                   folder / "old.parquet")
    results = load_results(tmp_path / "out")
    assert results["adv_nonfinite"].isna().all() and len(results) == 4
    assert [f.code for f in sanity_flags(results)] == ["single_attack"]  # no nonfinite flag
def test_minimal_attack_with_too_small_a_budget(tmp_path: Path) -> None:
    # the case: a cut-down CW leaves 28% robust at L2 eps 1 (never fooled),
    # DeepFool 1%; nothing else flagged it, as both are minimization attacks
    eps = [0.5, 1.0]
    cw = [0.8] * 71 + [math.inf] * 28 + [0.0]
    deepfool = [0.6] * 98 + [1.5, 0.0]
    flags = flags_of(
        tmp_path,
        attack_rows("m", "cw", eps, kind="minimal", norm="l2", min_perturbation=cw, cell_id="c-cw"),
        attack_rows("m", "deepfool", eps, kind="minimal", norm="l2", min_perturbation=deepfool),
    )
    assert [f.code for f in flags] == ["minimal_attack_budget"]
    flag = flags[0]
    assert flag.attacks == ("cw",) and flag.epsilons == (1.0,) and flag.cells == ("c-cw",)
    assert len(flag.samples) == 28
    assert "28 of 99 correctly classified samples" in flag.message and "28.3%" in flag.message


def test_a_few_samples_left_unfooled_are_not_a_budget_problem(tmp_path: Path) -> None:
    mp = [math.inf] * 3 + [0.6] * 97  # 3%: below the 5% share
    flags = flags_of(
        tmp_path,
        attack_rows("m", "deepfool", [1.0], kind="minimal", norm="l2", min_perturbation=mp),
        attack_rows("m", "pgd", [1.0], ["R"] * 3 + ["F"] * 97, norm="l2"),
    )
    assert flags == []


def test_a_norm_with_a_single_attack_is_noted(tmp_path: Path) -> None:
    flags = flags_of(
        tmp_path,
        attack_rows("m", "pgd", [0.0, 0.1], ["RR", "RF"], cell_id="c-pgd"),
        attack_rows("m", "square", [0.0, 0.1], ["RR", "RF"]),
        attack_rows("m", "df", [0.0, 1.0], kind="minimal", norm="l2",
                    min_perturbation=[0.5, 2.0], cell_id="c-df"),
        notes=True,
    )
    assert [(f.code, f.norm, f.attacks) for f in flags] == [("single_attack", "l2", ("df",))]
    assert flags[0].cells == ("c-df",) and "rests on one attack (df)" in flags[0].message

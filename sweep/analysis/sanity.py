"""Sanity flags: numbers that look like gradient masking or a broken attack.

These are the checks robustness evaluations do by hand (Carlini et al., "On
Evaluating Adversarial Robustness", arXiv:1902.06705, section 5; Croce & Hein,
"Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", arXiv:2003.01690; Athalye et al., "Obfuscated Gradients
Give a False Sense of Security", arXiv:1802.00420, section 3.1). Each flag names
the model, attacks, epsilons and cells behind it, so a reader can open exactly
those Parquet files. A flag is a warning, not a verdict.

Flags (``Flag.code``):

``black_box_beats_gradient``
    A score-based / black-box attack (or random noise) fools significantly more
    samples than the best gradient attack of the same norm at some epsilon. With
    honest gradients, a white-box attack should find at least what a
    gradient-free search finds. "Significantly" is a paired test on the same
    samples: McNemar's exact test (McNemar 1947, Psychometrika 12:153) on the
    discordant samples, one-sided p below ``alpha`` (default 0.01); the message
    gives the counts and p, so one sample in 256 is never a finding.
``accuracy_rises_with_epsilon``
    A curve goes up between two epsilons. A bigger budget contains every smaller
    one, so a strong attack's curve cannot rise; under the ``independent``
    strategy a rise means the attack is too weak (or gradients are masked);
    under ``incremental`` or a minimization attack it would be a bug.
``accuracy_above_breaking_bound``
    At an epsilon large enough to break any model the curve stays above what
    any model can keep. Default: L-inf epsilon >= 0.5 on [0, 1] images moves every
    image to the uniform grey image, so at most the samples of one class (the
    one predicted on grey) can stay correct: robust accuracy above the largest
    class share among the samples is impossible for an optimal attack. Other
    norms need the input size; pass ``breaking_eps`` (e.g. L2: 0.5 * sqrt(d)).
``minimal_attack_missed``
    A minimization attack found no adversarial at all (minimal perturbation
    inf, an unbounded search) for samples a fixed-epsilon attack of the same
    norm fooled. A minimization attack finding a *larger* perturbation than a
    fixed one is common (DeepFool is approximate) and is not flagged.
``model_<check>``
    What the field's model checks found before the run (:mod:`sweep.models.checks`:
    randomized model, probability outputs, zero input gradients, too few classes),
    read from the run's ``_manifest/plan.json`` (:func:`model_check_flags`).
``nonfinite_logits``
    The model returned NaN or inf logits on some adversarials (column
    ``adv_nonfinite``). Those samples count as not robust (no class was
    predicted), but the number then says more about the model's numerics than
    about its robustness: a model that answers NaN off the data manifold breaks
    gradient attacks and looks "fooled" without being fooled (Athalye et al.,
    section 3.1, on obfuscated gradients).

A check needs rows behind it: a model or attack without rows at the epsilon in
question (its cells failed) raises no flag, and epsilons too large to round
(``1e308``) are compared as they are.
``minimal_attack_budget``
    A minimization attack found no adversarial at all for at least
    ``GAVE_UP_SHARE`` (5%) of the correctly classified samples. Its search is
    unbounded, so every sample has an adversarial (the far corner of the box, at
    worst): a large share left unfooled means its budget (steps, binary-search
    steps, restarts) ran out, and its curve over-reports robustness at large eps.
``single_attack``
    A model's robust accuracy in a norm rests on one attack: the worst case over
    attacks is then that attack alone, and nothing cross-checks it (Carlini et
    al. 2019, section 4: use several, diverse attacks). A note, not an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from sweep.analysis.curves import ENSEMBLE, EPS_DECIMALS, curves, eps_key
from sweep.attacks.catalog import describe
from sweep.attacks.registry import UnknownAttackError
from sweep.results.plan import Plan


def attack_family(name: str) -> str:
    """``gradient`` or ``free`` (score-based, black-box, random) for a registered
    attack (``Attack.uses_gradients``, read by the catalog: no torch import);
    ``""`` for a name the registry lacks."""
    try:
        return "gradient" if describe(name).uses_gradients else "free"
    except UnknownAttackError:
        return ""


DEFAULT_BREAKING_EPS: Mapping[str, float] = {"linf": 0.5}
"""Budgets at which any model on [0, 1] inputs can be broken (see module docstring)."""

ALPHA = 0.01
"""Significance level of the paired comparisons (one-sided McNemar exact test)."""

GAVE_UP_SHARE = 0.05
"""Share of correctly classified samples a minimization attack may leave unfooled
before ``minimal_attack_budget`` fires."""

MAX_LISTED = 10
"""Sample ids a flag's message lists before it says "and N more"."""


@dataclass(frozen=True)
class Flag:
    """One warning, naming everything behind it.

    Attributes:
        code: which check fired (module docstring).
        model: the model.
        attacks: the attacks involved, the suspicious one first.
        norm: their norm.
        epsilons: the epsilons where it happens.
        cells: the ``cell_id`` of every cell whose rows produced it.
        message: one sentence for people.
        samples: sample ids involved, where the check is per sample.
    """

    code: str
    model: str
    attacks: tuple[str, ...]
    norm: str
    epsilons: tuple[float, ...]
    cells: tuple[str, ...]
    message: str
    samples: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt_eps(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _fmt_ids(ids: Sequence[int]) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return ", ".join(str(i) for i in ids[:MAX_LISTED]) + more


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cells(rows: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(set(rows["cell_id"].astype(str))))


def _plain(results: pd.DataFrame) -> pd.DataFrame:
    """The columns the checks read, labels as category, plus ``eps_key``; done once
    per :func:`sanity_flags` call (a copy of 10^6 rows is not free)."""
    if results.attrs.get("sweep_sanity_ready"):
        return results
    cols = ["cell_id", "model", "attack", "attack_kind", "norm", "epsilon", "sample_id",
            "label", "clean_correct", "robust", "min_perturbation"]  # fmt: skip
    df = results.loc[:, cols].copy()
    for col in ("model", "attack", "attack_kind", "norm", "cell_id"):
        if df[col].dtype != "category":
            df[col] = df[col].astype(str).astype("category")
    # files of schema v1 have no adv_nonfinite column (null when read with the v2 schema)
    nonfinite = pd.Series(results.get("adv_nonfinite", False), index=df.index)
    df["adv_nonfinite"] = nonfinite.astype("boolean").fillna(False).astype(bool)
    df["eps_key"] = eps_key(df["epsilon"])
    df.attrs["sweep_sanity_ready"] = True
    return df


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """One-sided p-value that attack A fools more samples than attack B, from the
    discordant pairs of a paired comparison: ``only_a`` samples fooled by A alone,
    ``only_b`` by B alone. Under the null (A no stronger than B) each discordant
    sample is A's with probability 1/2, so p = P(Binomial(only_a + only_b, 1/2) >=
    only_a) (McNemar's exact test; concordant samples carry no information)."""
    n = only_a + only_b
    if only_a == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(only_a, n + 1)) / 2.0**n


def _fooled_by(rows: pd.DataFrame) -> pd.DataFrame:
    """``sample_id`` x attack: True where the sample is not robust (fooled or a clean
    error); samples some attack lacks are dropped (no pair, no evidence)."""
    wide = rows.pivot_table(index="sample_id", columns="attack", values="robust",
                            aggfunc="all", observed=True)
    return ~wide.dropna().astype(bool)


def black_box_beats_gradient(
    table: pd.DataFrame, results: pd.DataFrame, *, margin: float = 0.0, alpha: float = ALPHA
) -> list[Flag]:
    """Gradient-free attack significantly stronger than the best gradient attack of its
    norm: paired McNemar exact test, one-sided p < ``alpha``, on the samples both ran
    (and robust accuracy lower by more than ``margin``)."""
    flags = []
    single = table[table["attack"] != ENSEMBLE].copy()
    single["family"] = single["attack_name"].map(attack_family)
    single["eps_key"] = eps_key(single["epsilon"])
    df = _plain(results)
    hits: dict[tuple[str, str, str], list[tuple[float, str, float, float, int, int, float]]] = {}
    for (model, norm, key), grp in single.groupby(
        ["model", "norm", "eps_key"], sort=True, observed=True
    ):
        grad = grp[grp["family"] == "gradient"]
        free = grp[grp["family"] == "free"]
        if grad.empty or free.empty:
            continue
        best = grad.loc[grad["robust_accuracy"].idxmin()]
        rows = df[(df["model"] == model) & (df["norm"] == norm) & (df["eps_key"] == key)]
        for _, row in free.iterrows():
            if not row["robust_accuracy"] < best["robust_accuracy"] - margin:
                continue
            pair = rows[rows["attack"].isin([row["attack"], best["attack"]])]
            fooled = _fooled_by(pair)
            if row["attack"] not in fooled or best["attack"] not in fooled:
                continue
            only_free = int((fooled[row["attack"]] & ~fooled[best["attack"]]).sum())
            only_grad = int((fooled[best["attack"]] & ~fooled[row["attack"]]).sum())
            p = mcnemar_exact(only_free, only_grad)
            if p < alpha:
                hits.setdefault((model, norm, row["attack"]), []).append(
                    (row["epsilon"], best["attack"], row["robust_accuracy"],
                     best["robust_accuracy"], only_free, only_grad, p)
                )
    for (model, norm, attack), items in hits.items():
        eps = tuple(float(e) for e, *_ in items)
        gradient = sorted(
            set(
                single[
                    (single["model"] == model)
                    & (single["norm"] == norm)
                    & (single["family"] == "gradient")
                ]["attack"]
            )
        )
        keys = {round(e, EPS_DECIMALS) for e in eps}
        rows = df[
            (df["model"] == model)
            & (df["norm"] == norm)
            & df["attack"].isin([attack, *gradient])
            & df["eps_key"].isin(keys)
        ]
        # the clearest case first: the smallest p
        e0, best_attack, acc, best_acc, only_free, only_grad, p = min(items, key=lambda i: i[-1])
        flags.append(
            Flag(
                code="black_box_beats_gradient",
                model=model,
                attacks=(attack, *gradient),
                norm=norm,
                epsilons=eps,
                cells=_cells(rows),
                message=(
                    f"{model}: gradient-free {attack} fools significantly more samples than every "
                    f"gradient attack ({', '.join(gradient)}) at {norm} eps={_fmt_eps(eps)} "
                    f"(e.g. eps={e0:g}: {acc:.1%} robust vs best gradient {best_attack} "
                    f"{best_acc:.1%}; {only_free} samples fooled only by {attack}, {only_grad} only "
                    f"by {best_attack}: McNemar exact p={p:.1g}, the chance of a split this lopsided "
                    "between equally strong attacks); gradient masking or too weak a gradient attack?"
                ),
            )
        )
    return flags


def accuracy_rises_with_epsilon(
    table: pd.DataFrame, results: pd.DataFrame, *, margin: float = 0.0
) -> list[Flag]:
    """A single attack's curve rises between consecutive epsilons by more than ``margin``."""
    flags = []
    df = _plain(results)
    for (model, attack, norm), grp in table[table["attack"] != ENSEMBLE].groupby(
        ["model", "attack", "norm"], sort=True
    ):
        grp = grp.sort_values("epsilon")
        eps = grp["epsilon"].to_numpy(float)
        acc = grp["robust_accuracy"].to_numpy(float)
        rises = [i for i in range(1, len(eps)) if acc[i] > acc[i - 1] + margin]
        if not rises:
            continue
        pairs = [(eps[i - 1], eps[i]) for i in rises]
        involved = sorted({float(e) for pair in pairs for e in pair})
        keys = {round(e, EPS_DECIMALS) for e in involved}
        rows = df[(df["model"] == model) & (df["attack"] == attack) & df["eps_key"].isin(keys)]
        # samples fooled at the smaller epsilon but robust at the larger one
        wide = rows.pivot_table(
            index="sample_id", columns="eps_key", values="robust", aggfunc="all"
        )
        turned = set()
        for lo, hi in pairs:
            a, b = round(lo, EPS_DECIMALS), round(hi, EPS_DECIMALS)
            if a in wide and b in wide:
                both = wide[[a, b]].dropna()
                turned |= set(both.index[(~both[a].astype(bool)) & both[b].astype(bool)])
        strategy = grp["strategy"].iloc[0]
        kind = grp["attack_kind"].iloc[0]
        why = (
            "impossible by construction here: a bug in the attack or the pipeline"
            if strategy in ("incremental", "nested") or kind == "minimal"
            else "the attack is too weak at the larger budget (gradient masking?)"
        )
        i = rises[0]
        flags.append(
            Flag(
                code="accuracy_rises_with_epsilon",
                model=model,
                attacks=(attack,),
                norm=norm,
                epsilons=tuple(involved),
                cells=_cells(rows),
                samples=tuple(int(s) for s in sorted(turned)),
                message=(
                    f"{model}/{attack} ({strategy}): robust accuracy rises from {acc[i - 1]:.1%} at "
                    f"{norm} eps={eps[i - 1]:g} to {acc[i]:.1%} at eps={eps[i]:g}"
                    + (f" ({len(rises)} rises)" if len(rises) > 1 else "")
                    + f"; {_count(len(turned), 'sample')} fooled at a smaller budget survived a larger one"
                    + (f" (ids {_fmt_ids(sorted(turned))})" if turned else "")
                    + f"; {why}"
                ),
            )
        )
    return flags


def accuracy_above_breaking_bound(
    table: pd.DataFrame,
    results: pd.DataFrame,
    *,
    breaking_eps: Mapping[str, float] = DEFAULT_BREAKING_EPS,
) -> list[Flag]:
    """Robust accuracy at an epsilon >= ``breaking_eps[norm]`` above the largest class share."""
    flags = []
    df = _plain(results)
    for (model, attack, norm), grp in table[table["attack"] != ENSEMBLE].groupby(
        ["model", "attack", "norm"], sort=True
    ):
        if norm not in breaking_eps:
            continue
        last = grp.sort_values("epsilon").iloc[-1]
        eps = float(last["epsilon"])
        if eps < breaking_eps[norm]:
            continue
        rows = df[
            (df["model"] == model)
            & (df["attack"] == attack)
            & (df["eps_key"] == round(eps, EPS_DECIMALS))
        ]
        if rows.empty:  # no rows at that epsilon (its cells failed): nothing to judge
            continue
        bound = float(rows["label"].value_counts(normalize=True).max())
        if not last["robust_accuracy"] > bound:
            continue
        flags.append(
            Flag(
                code="accuracy_above_breaking_bound",
                model=model,
                attacks=(attack,),
                norm=norm,
                epsilons=(eps,),
                cells=_cells(rows),
                message=(
                    f"{model}/{attack}: robust accuracy {last['robust_accuracy']:.1%} at {norm} "
                    f"eps={eps:g}, a budget that breaks any model (>= {breaking_eps[norm]:g}); "
                    f"an optimal attack leaves at most {bound:.1%} (the largest class share): "
                    "broken attack or gradient masking"
                ),
            )
        )
    return flags


def minimal_attack_missed(table: pd.DataFrame, results: pd.DataFrame) -> list[Flag]:
    """Minimization attack with no adversarial (inf) on samples a fixed attack fooled."""
    flags = []
    df = _plain(results)
    correct = df[df["clean_correct"].astype(bool)]
    for (model, norm), grp in correct.groupby(["model", "norm"], sort=True, observed=True):
        minimal = grp[grp["attack_kind"] == "minimal"]
        fixed = grp[grp["attack_kind"] == "fixed"]
        if minimal.empty or fixed.empty:
            continue
        for m_attack, m_rows in minimal.groupby("attack", sort=True, observed=True):
            gave_up = set(
                m_rows.loc[np.isinf(m_rows["min_perturbation"].astype(float)), "sample_id"]
            )
            if not gave_up:
                continue
            fooled = fixed[~fixed["robust"].astype(bool) & fixed["sample_id"].isin(gave_up)]
            if fooled.empty:
                continue
            ids = sorted(set(fooled["sample_id"]))
            by = sorted(set(fooled["attack"]))
            # the smallest epsilon at which some fixed attack fooled each sample
            first = fooled.groupby("sample_id", observed=True)["epsilon"].min()
            eps = tuple(sorted({float(e) for e in first}))
            behind = pd.concat([m_rows[m_rows["sample_id"].isin(ids)], fooled])
            flags.append(
                Flag(
                    code="minimal_attack_missed",
                    model=model,
                    attacks=(m_attack, *by),
                    norm=norm,
                    epsilons=eps,
                    cells=_cells(behind),
                    samples=tuple(int(i) for i in ids),
                    message=(
                        f"{model}: minimization attack {m_attack} found no adversarial at any "
                        f"budget for {_count(len(ids), 'sample')} that fixed-epsilon attacks "
                        f"({', '.join(by)}) fooled within {norm} eps<={max(eps):g} "
                        f"(ids {_fmt_ids(ids)}): broken minimization attack or gradient masking"
                    ),
                )
            )
    return flags


def nonfinite_logits(results: pd.DataFrame) -> list[Flag]:
    """Adversarials on which the model returned NaN or inf logits, per model and attack."""
    flags = []
    df = _plain(results)
    bad = df[df["adv_nonfinite"]]
    for (model, attack, norm), rows in bad.groupby(["model", "attack", "norm"], sort=True,
                                                   observed=True):
        ids = sorted({int(i) for i in rows["sample_id"]})
        eps = tuple(sorted({float(e) for e in rows["epsilon"]}))
        total = int(df[(df["model"] == model) & (df["attack"] == attack)]["sample_id"].nunique())
        flags.append(
            Flag(
                code="nonfinite_logits",
                model=model,
                attacks=(attack,),
                norm=norm,
                epsilons=eps,
                cells=_cells(rows),
                samples=tuple(ids),
                message=(
                    f"{model}/{attack}: the model returned non-finite logits (NaN/inf) on the "
                    f"adversarials of {_count(len(ids), 'sample')} of {total} at {norm} "
                    f"eps={_fmt_eps(eps)} (ids {_fmt_ids(ids)}); they count as not robust, but "
                    "that is a numerical fault of the model, not a found attack: fix the "
                    "model's numerics before trusting this curve"
                ),
            )
        )
    return flags


def minimal_attack_budget(table: pd.DataFrame, results: pd.DataFrame,
                          *, share: float = GAVE_UP_SHARE) -> list[Flag]:
    """Minimization attack that found no adversarial for >= ``share`` of the correctly
    classified samples (module docstring)."""
    flags = []
    df = _plain(results)
    minimal = df[(df["attack_kind"] == "minimal") & df["clean_correct"].astype(bool)]
    for (model, attack, norm), rows in minimal.groupby(["model", "attack", "norm"], sort=True,
                                                       observed=True):
        per_sample = rows.drop_duplicates("sample_id")
        gave_up = per_sample[np.isinf(per_sample["min_perturbation"].astype(float))]
        if per_sample.empty or len(gave_up) / len(per_sample) < share:
            continue
        largest = float(rows["epsilon"].max())
        at_largest = table[(table["model"] == model) & (table["attack"] == attack)
                           & (eps_key(table["epsilon"]) == round(largest, EPS_DECIMALS))]
        robust = float(at_largest["robust_accuracy"].iloc[0]) if len(at_largest) else math.nan
        ids = sorted(int(i) for i in gave_up["sample_id"])
        flags.append(
            Flag(
                code="minimal_attack_budget",
                model=model,
                attacks=(attack,),
                norm=norm,
                epsilons=(largest,),
                cells=_cells(rows[rows["sample_id"].isin(ids)]),
                samples=tuple(ids),
                message=(
                    f"{model}/{attack}: an unbounded minimization attack found no adversarial for "
                    f"{len(gave_up)} of {len(per_sample)} correctly classified samples "
                    f"({len(gave_up) / len(per_sample):.1%}; ids {_fmt_ids(ids)}), so its curve "
                    f"stays at {robust:.1%} at {norm} eps={largest:g}: its budget looks too small "
                    "(raise its steps / binary-search steps) or gradients are masked"
                ),
            )
        )
    return flags


def single_attack(table: pd.DataFrame, results: pd.DataFrame) -> list[Flag]:
    """A model whose curves in a norm come from one attack only (module docstring)."""
    flags = []
    single = table[table["attack"] != ENSEMBLE]
    df = _plain(results)
    for (model, norm), grp in single.groupby(["model", "norm"], sort=True, observed=True):
        attacks = sorted(set(grp["attack"]))
        if len(attacks) != 1 or not (grp["epsilon"] > 0).any():
            continue
        rows = df[(df["model"] == model) & (df["attack"] == attacks[0])]
        eps = tuple(sorted(float(e) for e in grp["epsilon"] if e > 0))
        flags.append(
            Flag(
                code="single_attack",
                model=model,
                attacks=(attacks[0],),
                norm=norm,
                epsilons=eps,
                cells=_cells(rows),
                message=(
                    f"{model}: the {norm} curve rests on one attack ({attacks[0]}), so its worst "
                    "case is that attack alone and nothing cross-checks it; add a second, "
                    f"different {norm} attack (e.g. a minimization attack next to a fixed one)"
                ),
            )
        )
    return flags


def sanity_flags(
    results: pd.DataFrame,
    table: pd.DataFrame | None = None,
    *,
    margin: float = 0.0,
    breaking_eps: Mapping[str, float] = DEFAULT_BREAKING_EPS,
    alpha: float = ALPHA,
) -> list[Flag]:
    """Every check of this module, in the order of the module docstring.

    Args:
        results: result rows (:func:`sweep.analysis.curves.load_results`).
        table: their :func:`sweep.analysis.curves.curves` (computed when omitted).
        margin: robust-accuracy difference a comparison must exceed (default 0:
            any strict difference; raise it for tiny, noisy test sets).
        breaking_eps: per norm, a budget that breaks any model (default L-inf 0.5).
        alpha: significance level of the paired comparisons (default :data:`ALPHA`).
    """
    if table is None:
        table = curves(results)
    results = _plain(results)
    return [
        *black_box_beats_gradient(table, results, margin=margin, alpha=alpha),
        *accuracy_rises_with_epsilon(table, results, margin=margin),
        *accuracy_above_breaking_bound(table, results, breaking_eps=breaking_eps),
        *minimal_attack_missed(table, results),
        *nonfinite_logits(results),
        *minimal_attack_budget(table, results),
        *single_attack(table, results),
    ]


def model_check_flags(plan: Plan) -> list[Flag]:
    """The model checks a run recorded in its plan (``model_checks``), as flags."""
    found = plan.model_checks
    return [
        Flag(code=f"model_{f['code']}", model=str(model), attacks=(), norm="", epsilons=(),
             cells=(), message=f"model {model}: {f['message']}")
        for model, items in sorted(found.items())
        for f in items
        if isinstance(f, Mapping) and "code" in f and "message" in f
    ]


def flags_frame(flags: Sequence[Flag]) -> pd.DataFrame:
    """Flags as a table (one row each; tuples joined for display and CSV)."""
    cols = ["code", "model", "attacks", "norm", "epsilons", "cells", "samples", "message"]
    return pd.DataFrame(
        [
            {
                **f.to_dict(),
                "attacks": ", ".join(f.attacks),
                "epsilons": _fmt_eps(f.epsilons),
                "cells": ", ".join(f.cells),
                "samples": _fmt_ids(f.samples) if f.samples else "",
            }
            for f in flags
        ],
        columns=cols,
    )

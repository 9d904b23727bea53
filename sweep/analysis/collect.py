"""The numbers behind ``sweep curves`` and ``sweep report``, from Parquet alone.

Kept apart from the HTML builder so that ``sweep curves`` does not import matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep.analysis.adversarials import TRANSFER_COLUMNS, transfer_rows, transfer_table
from sweep.analysis.curves import CASCADE_COLUMNS, cascade_components, curves, load_results, summary
from sweep.analysis.sanity import Flag, model_check_flags, sanity_flags
from sweep.results.plan import Plan
from sweep.results.provenance import Provenance, read_provenance


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, computed from Parquet (and provenance files) alone.

    ``sweep run`` builds it once, from the manifest-verified files, and prints it, logs
    it to MLflow and returns it (:attr:`sweep.execution.pipeline.RunOutcome.analysis`).
    """

    results: pd.DataFrame
    table: pd.DataFrame
    summary: pd.DataFrame
    flags: list[Flag]
    provenance: Provenance
    ignored_rows: int = 0
    notes: tuple[str, ...] = ()  # how rows were read (e.g. an older schema version)
    # cascades: robust accuracy after each member (sweep.analysis.curves.cascade_components)
    cascades: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CASCADE_COLUMNS)))
    # transfer: robust accuracy of each target on each source's adversarials
    # (sweep.analysis.adversarials.transfer_table); empty without `transfer:`
    transfer: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TRANSFER_COLUMNS)))
    output: str = ""  # where the rows came from (the report's gallery reads the adversarials there)


def collect(
    output_dir: str | os.PathLike[str],
    *,
    spec: Mapping[str, Any] | None = None,
    sweep_id: str | None = None,
    breaking_eps: Mapping[str, float] | None = None,
    files: Sequence[str] | None = None,
) -> ReportData:
    """Read ``output_dir`` and compute curves, summary and flags.

    When the latest plan (``_manifest/plan.json``) lists its cells, only their rows
    count: a folder re-used by an edited spec may still hold cells of the old one.
    ``files`` (relative paths) reads only those result files: ``sweep run`` passes
    the files its manifest vouches for, so nothing else in the folder is counted.
    """
    provenance = read_provenance(output_dir, spec)
    results = load_results(output_dir, sweep_id=sweep_id, files=files)
    notes = tuple(results.attrs.get("notes", ()))
    ignored = 0
    planned = provenance.cell_ids()
    if planned and sweep_id is None:
        keep = results["cell_id"].isin(planned)
        if not keep.any():
            raise ValueError(
                f"none of the {len(results)} result rows under {os.fspath(output_dir)} belong "
                "to the cells of the latest plan (_manifest/plan.json): no cell of it is done yet"
            )
        ignored = int((~keep).sum())
        results = results[keep].reset_index(drop=True)
    table = curves(results)
    kwargs = {} if breaking_eps is None else {"breaking_eps": breaking_eps}
    return ReportData(
        results=results,
        table=table,
        summary=summary(table, results),
        flags=[*model_check_flags(provenance.plan), *sanity_flags(results, table, **kwargs)],
        provenance=provenance,
        ignored_rows=ignored,
        notes=notes,
        cascades=cascade_components(results, cascade_members(provenance.plan)),
        transfer=transfer_table(transfer_rows(output_dir)) if sweep_id is None else transfer_table(pd.DataFrame()),
        output=os.fspath(output_dir),
    )


def cascade_members(plan: Plan) -> dict[str, list[str]]:
    """Cascade label -> its member labels in order, from the plan's attack settings."""
    from sweep.attacks.registry import UnknownAttackError, attack_class, create

    out: dict[str, list[str]] = {}
    for pair in plan.pairs:
        try:
            if not attack_class(pair.attack_name).has_members or pair.attack in out:
                continue
            attack = create(pair.attack_name, norm=pair.norm, **pair.params)
        except (KeyError, TypeError, ValueError, UnknownAttackError):
            continue  # a plan of another version: no component table, the rows still count
        out[pair.attack] = list(attack.labels)
    return out

"""The numbers behind ``sweep curves`` and ``sweep report``, from Parquet alone.

Kept apart from the HTML builder so that ``sweep curves`` does not import matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweep.curves import curves, load_results, summary
from sweep.report.provenance import Provenance, read_provenance
from sweep.sanity import Flag, sanity_flags


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, computed from Parquet (and provenance files) alone."""

    results: pd.DataFrame
    table: pd.DataFrame
    summary: pd.DataFrame
    flags: list[Flag]
    provenance: Provenance
    ignored_rows: int = 0
    notes: tuple[str, ...] = ()  # how rows were read (e.g. an older schema version)


def collect(
    output_dir: str | os.PathLike[str],
    *,
    spec: Mapping[str, Any] | None = None,
    sweep_id: str | None = None,
    breaking_eps: Mapping[str, float] | None = None,
) -> ReportData:
    """Read ``output_dir`` and compute curves, summary and flags.

    When the latest plan (``_manifest/plan.json``) lists its cells, only their rows
    count: a folder re-used by an edited spec may still hold cells of the old one.
    """
    provenance = read_provenance(output_dir, spec)
    results = load_results(output_dir, sweep_id=sweep_id)
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
        flags=sanity_flags(results, table, **kwargs),
        provenance=provenance,
        ignored_rows=ignored,
        notes=notes,
    )

"""Ray Jobs entrypoint for the aggregation step: curves (and the HTML report) of a results folder.

Reads the sweep's Parquet rows alone (no Ray, no GPU, no MLflow needed) and writes,
next to them, files whose names start with ``_`` so that ``pd.read_parquet(OUTPUT)``
keeps ignoring them:

- ``OUTPUT/_curves/curves.csv``: robust accuracy per model x attack x epsilon,
  with the per-sample worst case over attacks (:func:`sweep.analysis.curves.curves`);
- ``OUTPUT/_curves/summary.csv``: one row per model x attack (:func:`sweep.analysis.curves.summary`);
- ``OUTPUT/_curves/report.html`` with ``--report``: the self-contained report
  (:func:`sweep.report.write_report`).

Run it after the sweep job, on the cluster (the folder is on its shared storage)::

    ray job submit --address http://127.0.0.1:8265 --working-dir jobs \\
        -- python aggregate.py /mnt/shared/sweeps/my-sweep --report

or anywhere the folder is readable: ``python jobs/aggregate.py OUTPUT``. OUTPUT may
also be an object-store URI (``s3://bucket/prefix``): the files are then objects
under ``<prefix>/_curves/``.
Exit codes: 0 written, 1 this attack-sweep has no ``sweep.analysis.curves`` / ``sweep.report``
(install a version that does), 2 no results in OUTPUT.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

CURVES_DIR = "_curves"


def _module(name: str) -> ModuleType:
    """Import ``name`` or stop with a message saying what is missing (exit 1)."""
    if importlib.util.find_spec(name) is None:
        sys.exit(
            f"error: {name} is not part of the attack-sweep installed here "
            f"({Path(sys.executable).parent}); install a version that has it on every node"
        )
    return importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python jobs/aggregate.py", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the sweep's results folder (its spec `output`)")
    parser.add_argument("--report", action="store_true", help="also write the HTML report")
    parser.add_argument("--sweep-id", default=None, help="keep only this sweep's rows")
    args = parser.parse_args(argv)

    curves_mod = _module("sweep.analysis.curves")
    report_mod = _module("sweep.report") if args.report else None
    try:
        results = curves_mod.load_results(args.output, sweep_id=args.sweep_id)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in results.attrs.get("notes", ()):
        print(f"note: {note}", file=sys.stderr)
    store = _module("sweep.results.store")
    table = curves_mod.curves(results)
    summary = curves_mod.summary(table, results)
    written = []
    for name, frame in (("curves.csv", table), ("summary.csv", summary)):
        # whole-file writes (temp + rename, or one upload): a reader never sees half a table
        store.write_text(args.output, f"{CURVES_DIR}/{name}", frame.to_csv(index=False))
        written.append(store.location(args.output, f"{CURVES_DIR}/{name}"))
    print(f"{len(results)} rows -> {len(table)} curve points: {', '.join(written)}")
    if report_mod is not None:
        with tempfile.TemporaryDirectory(prefix="sweep-report-") as tmp:
            page = report_mod.write_report(args.output, Path(tmp) / "report.html", sweep_id=args.sweep_id)
            store.write_bytes(args.output, f"{CURVES_DIR}/report.html", page.read_bytes())
        print(f"report: {store.location(args.output, f'{CURVES_DIR}/report.html')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

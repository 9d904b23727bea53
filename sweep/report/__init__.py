"""The self-contained HTML report (``sweep report``).

- :mod:`sweep.analysis.collect`: curves, summary, flags and provenance of a results folder;
- :mod:`sweep.report.builder`: the HTML page (:func:`write_report`);
- :mod:`sweep.results.provenance`: the spec, plan and versions behind the numbers.

Names are imported lazily so that ``sweep curves`` never loads matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "write_report": "sweep.report.builder",
    "render": "sweep.report.builder",
    "collect": "sweep.analysis.collect",
    "ReportData": "sweep.analysis.collect",
    "Provenance": "sweep.results.provenance",
    "read_provenance": "sweep.results.provenance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sweep.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

"""A result table of the file schema with placeholder values, for store tests (local and S3)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sweep.results.schema import FILE_SCHEMA


def table(n: int = 3, cell_id: str = "c1") -> pa.Table:
    """``n`` rows of :data:`FILE_SCHEMA`: ``cell_id`` set, other strings ``"x"``, booleans
    true, numbers ``0 .. n-1``."""
    cols = {}
    for f in FILE_SCHEMA:
        if pa.types.is_string(f.type):
            cols[f.name] = pa.array([cell_id if f.name == "cell_id" else "x"] * n, f.type)
        elif pa.types.is_boolean(f.type):
            cols[f.name] = pa.array([True] * n)
        else:
            cols[f.name] = pa.array(np.arange(n), f.type)
    return pa.table(cols, schema=FILE_SCHEMA)

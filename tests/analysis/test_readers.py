"""The README's Polars and DuckDB recipes, run as written on an output folder that holds
everything a real one may: ``_manifest/`` (JSON, YAML, JSONL), ``_quarantine/`` and a
half-written ``.tmp-*`` shard. They must read the result shards only, and agree with pandas."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from sweep.analysis.curves import load_results
from tests.analysis.sweeps import write_demo

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def recipe(library: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    (block,) = [b for b in blocks if re.search(rf"^import {library}\b", b, flags=re.M)]
    return block


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = write_demo(tmp_path_factory.mktemp("readers") / "runs" / "digits-demo")
    (out / "_manifest").mkdir()
    (out / "_manifest" / "plan.json").write_text('{"name": "digits-demo"}')
    (out / "_manifest" / "spec.yaml").write_text("name: digits-demo\n")
    (out / "_manifest" / "done.jsonl").write_text('{"cell": "x"}\n')
    stray = out / "_quarantine" / "model=digits-cnn" / "attack=pgd"
    stray.mkdir(parents=True)
    (stray / "bad.parquet").write_bytes(b"PAR1 not really")
    (out / "model=digits-cnn" / "attack=pgd" / ".tmp-1234-x.parquet").write_bytes(b"PAR1 torn")
    return out


@pytest.mark.parametrize("library", ["polars", "duckdb"])
def test_readme_recipe_reads_the_results_only(library: str, output: Path, monkeypatch) -> None:
    pytest.importorskip(library)
    monkeypatch.chdir(output.parent.parent)  # the recipe's relative path: runs/digits-demo
    scope: dict = {}
    exec(compile(recipe(library), f"README ({library})", "exec"), scope)
    got = scope["robust_accuracy"]
    got = got.to_pandas() if library == "polars" else got
    expected = (load_results(output).groupby(["model", "attack", "epsilon"], observed=True)
                ["robust"].mean().reset_index())
    for col in ("model", "attack"):
        expected[col] = expected[col].astype(str)
        got[col] = got[col].astype(str)
    got = got.sort_values(["model", "attack", "epsilon"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["model", "attack", "epsilon", "robust"]], expected,
                                  check_dtype=False)

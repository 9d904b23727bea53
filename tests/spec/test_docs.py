"""The README documents every spec key, Parquet column and command."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.results.schema import COLUMNS
from sweep.spec import config

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "README.md").read_text(encoding="utf-8") + (ROOT / "docs" / "sweep.md").read_text(
    encoding="utf-8"
)

KEYS = sorted({
    *config.TOP_KEYS, *config.DATASET_OWN_KEYS, *config.DATASET_ALIASES, *config.ATTACK_OWN_KEYS,
    *config.TARGETED_KEYS, *config.RESOURCE_KEYS, *config.RESOURCE_ALIASES, *config.MLFLOW_KEYS,
    *config.TARGET_MODES, *config.STRATEGIES, *config.ADVERSARIAL_KEYS, *config.TRANSFER_KEYS,
})


@pytest.mark.parametrize("key", KEYS)
def test_spec_key_documented(key):
    assert f"`{key}`" in DOC


@pytest.mark.parametrize("column", [c[0] for c in COLUMNS])
def test_column_documented(column):
    assert f"| `{column}` |" in DOC


@pytest.mark.parametrize("command", ["validate", "plan", "run", "sync", "attacks"])
def test_command_documented(command):
    assert f"`sweep {command}" in DOC

"""Small sweep specs for the tests: digits, few samples, fast attacks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def base_spec(output: Path, **overrides: Any) -> dict[str, Any]:
    """Two built-in models x the noise attack in two norms, 16 digits samples in two shards."""
    spec: dict[str, Any] = {
        "name": "t",
        "seed": 0,
        "output": str(output),
        "dataset": {"name": "digits", "samples": 16, "shard_size": 8},
        "models": [{"name": "digits-cnn"}, {"name": "digits-cnn-at"}],
        "attacks": [
            {"name": "noise", "draws": 2},
            {"name": "noise", "label": "noise-l2", "norm": "l2", "draws": 2},
        ],
        "epsilons": {"linf": [0.0, 0.1, 0.3], "l2": [0.0, 2.0]},
        "mlflow": {"enabled": False},
    }
    spec.update(copy.deepcopy(overrides))
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def assert_spec_error(result: Any, needles: list[str], output: Path) -> None:
    """A CLI result for a bad spec: exit code 2, one ``error:`` line holding every needle
    (the key and the value), and nothing written to ``output``."""
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("error: ") and len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert not output.exists()

"""Errors that name what the user got wrong.

Every error a user can fix by editing their spec or command line is a
:class:`SpecError`: it carries the dotted field name and the bad value, and the
CLI turns it into exit code 2 before any work starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class SpecError(ValueError):
    """Bad user input, reported as ``field: message (got value)``."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message} (got {value!r})")


def close_match_hint(value: object, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A short hint naming the closest valid choice and listing all of them."""
    choices = sorted(choices)
    return f"{close_match_hint(value, choices)}valid: {', '.join(choices)}"

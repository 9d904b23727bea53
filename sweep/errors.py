"""Errors that name what the user got wrong.

Every error a user can fix by editing their spec or command line is a
:class:`SpecError`: it carries the dotted field name and the bad value, and the
CLI turns it into exit code 2 before any work starts.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Iterable
from typing import Any

# What an error message may echo of a spec value. A value can be huge (a 1 MiB string,
# a list built from nine levels of YAML aliases: "billion laughs"), and a message is
# one line read by a person: reprlib bounds the work as well as the text.
MAX_SHOWN_CHARS = 200
MAX_MESSAGE_CHARS = 1000
_SHOWN = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxlong, _SHOWN.maxother = 3, 120, 60, 120
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6


def shown(value: Any) -> str:
    """``repr(value)`` cut to at most :data:`MAX_SHOWN_CHARS`, in bounded time and memory."""
    text = _SHOWN.repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with its line breaks folded into spaces, cut to ``limit`` characters."""
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SpecError(ValueError):
    """Bad user input, reported as ``field: message (got value)``: one line, whatever
    the value or the message (an exception's text from user code) holds."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = one_line(str(field), MAX_SHOWN_CHARS)
        self.value = value
        self.message = one_line(message)
        super().__init__(f"{self.field}: {self.message} (got {shown(value)})")


def close_match_hint(value: object, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices``, or ``""`` if none is close."""
    # a long value is no typo of a short name (and difflib is quadratic in its length)
    text = str(value)[:MAX_SHOWN_CHARS] if isinstance(value, str) else shown(value)
    close = difflib.get_close_matches(text, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A short hint naming the closest valid choice and listing all of them."""
    choices = sorted(choices)
    return f"{close_match_hint(value, choices)}valid: {', '.join(choices)}"


class SweepFailed(RuntimeError):
    """``sweep.run`` finished with cells that failed after their retries (the CLI's exit 1).

    ``failures`` lists them (cell id, model, attack, error); ``results`` holds what is
    done, verified, so a notebook can still look at it; the same ``sweep.run`` call
    resumes the rest.
    """

    def __init__(self, failures: list[Any], results: Any) -> None:
        self.failures = failures
        self.results = results
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"{len(failures)} cell(s) failed: cell {first.cell_id} ({first.model} / "
            f"{first.attack}): {one_line(str(first.error), 300)}{more}"
        )

"""Exit codes of every ``sweep`` command, and the one place a SpecError becomes exit 2.

0: success. 1: the run failed (a cell failed after its retries, MLflow sync
failed). 130: interrupted (Ctrl-C, SIGINT: 128 + 2, the shell's convention). 2: bad input (click usage errors and :class:`~sweep.errors.SpecError`),
reported as one line naming the key and the value, before any work starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from sweep.errors import SpecError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def spec_errors_exit_2() -> Iterator[None]:
    """Turn a :class:`SpecError` raised inside into ``error: <field>: ...`` and exit code 2."""
    try:
        yield
    except SpecError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT) from exc

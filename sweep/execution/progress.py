"""The live progress line of a sweep: cells done / total, samples/s, ETA, failures,
and the worker pool (workers placed, nodes, or what the sweep waits for).

A thin wrapper over ``rich.progress`` (rich redraws at most ``refresh_per_second``
times on its own thread, so an update per finished cell costs microseconds). When
stderr is not a terminal (CI, a log file), it prints a plain line every
``log_every`` seconds instead of redrawing.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class SweepProgress:
    """``with SweepProgress(total=..., done=...) as p: p.advance(samples=128)``."""

    def __init__(self, total: int, done: int = 0, *, enabled: bool = True, log_every: float = 10.0) -> None:
        self.total = total
        self.done = done
        self.failed = 0
        self.samples = 0
        self._start = time.perf_counter()
        self._computed = 0
        self._console = Console(stderr=True)
        self._live = enabled and self._console.is_terminal
        self._plain = enabled and not self._live
        self._log_every = log_every
        self._last_log = self._start
        self._progress: Progress | None = None
        self._task = None
        self._pool = ""

    def __enter__(self) -> SweepProgress:
        if self._live:
            self._progress = Progress(
                TextColumn("[bold]cells"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]} samples/s"),
                TextColumn("[red]{task.fields[failures]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[pool]}"),
                console=self._console,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "cells", total=self.total, completed=self.done, rate="-", failures="", pool=""
            )
        return self

    def advance(self, samples: int = 0, *, failed: bool = False) -> None:
        """One cell finished (or, with ``failed``, gave up after its retries)."""
        self.done += 1
        self._computed += 1
        self.samples += samples
        self.failed += int(failed)
        now = time.perf_counter()
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=self.done,
                rate=f"{self.rate():,.0f}",
                failures=f"{self.failed} failed" if self.failed else "",
            )
        elif self._plain and (now - self._last_log >= self._log_every or self.done == self.total):
            self._last_log = now
            print(self.line(), file=sys.stderr, flush=True)

    def pool(self, text: str) -> None:
        """The worker pool changed: "workers 2 of 3 placed on 2 node(s)", "waiting for GPU nodes ..."."""
        first = not self._pool
        self._pool = text
        now = time.perf_counter()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, pool=text)
        elif self._plain and (first or now - self._last_log >= self._log_every):
            self._last_log = now
            print(self.line(), file=sys.stderr, flush=True)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self.samples / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        elapsed = time.perf_counter() - self._start
        left = self.total - self.done
        eta = f"{elapsed / self._computed * left:.0f}s" if self._computed else "-"
        fails = f", {self.failed} failed" if self.failed else ""
        pool = f"; {self._pool}" if self._pool else ""
        return (f"cells {self.done}/{self.total}{fails}, {self.rate():,.0f} samples/s, "
                f"elapsed {elapsed:.0f}s, ETA {eta}{pool}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

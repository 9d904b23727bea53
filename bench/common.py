"""Timing and reporting helpers the benchmark scripts share.

Every benchmark compares two or more contenders measured *in the same run*,
interleaved (A, B, C, A, B, C, ...), and reports the median of each: on a shared
machine the absolute numbers move with the load, the ratios much less. Each
script prints the machine line from :func:`machine_info` and the load average
before and after (:func:`load_average`), so a reader can tell a loaded machine.

Threads (:func:`choose_threads`): PyTorch's default (one intra-op thread per
core) is kept on a quiet machine. On a busy one (1-minute load average above
half the core count) the benchmarks drop to 1 thread unless ``--threads`` says
otherwise: OpenMP threads that wait for each other at every
barrier while other processes hold the cores were measured here 4-7x slower
and ten times noisier than one thread (digits-cnn, 10 fwd+bwd of 128 samples,
load average 9 on 2 cores: 3.3-7.2 s with 2 threads, 0.4-1.2 s with 1). The
choice and its reason are printed with the machine line.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timing:
    """Seconds per repeat of one contender (after warm-up)."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repeats were."""
        if len(self.seconds) < 2:
            return 0.0
        return (max(self.seconds) - min(self.seconds)) / self.median


def sync(device: Any) -> None:
    """Wait for queued CUDA work (no-op on the CPU), so timings cover the work."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(
    contenders: dict[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: Any = "cpu",
    slow_seconds: float = float("inf"),
) -> dict[str, Timing]:
    """Time each callable ``repeats`` times, round-robin, after ``warmup`` rounds.

    Round-robin (rather than all repeats of A, then all of B) exposes every
    contender to the same background load, so their ratio is fair on a busy box,
    and round ``i`` of A pairs with round ``i`` of B (:func:`paired_ratio`).
    A contender whose warm-up took longer than ``slow_seconds`` (a peer that
    loops over images in Python) is not run again: its warm-up is its timing.
    """
    out = {name: Timing(name) for name in contenders}
    slow: set[str] = set()
    for _ in range(warmup):
        for name, fn in contenders.items():
            _, seconds = timed(fn, device)
            if seconds > slow_seconds:
                slow.add(name)
                out[name].seconds = [seconds]  # its one measurement: not run again
    for _ in range(repeats):
        for name, fn in contenders.items():
            if name not in slow:
                out[name].seconds.append(timed(fn, device)[1])
    return out


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of ``a_i / b_i`` (same round, same background load)."""
    pairs = [x / y for x, y in zip(a.seconds, b.seconds, strict=False)]
    return statistics.median(pairs) if pairs else float("nan")


def min_ratio(a: Timing, b: Timing) -> float:
    """``min(a) / min(b)``: the least-disturbed runs (interference only adds time)."""
    return min(a.seconds) / min(b.seconds)


# Which clock timed() reads: "wall" (perf_counter) or "cpu" (this process's CPU time,
# process_time). set_clock() picks "cpu" for single-threaded CPU runs: other processes
# taking turns on the cores then no longer count against whichever contender was
# running (only cache and memory-bandwidth sharing still do).
CLOCK = {"name": "wall"}


def set_clock(device: Any) -> str:
    """Choose the clock for ``device`` and the current thread count; return a line saying so."""
    import torch

    if str(device) == "cpu" and torch.get_num_threads() == 1:
        CLOCK["name"] = "cpu"
        return (
            "clock: this process's CPU time (1 thread on CPU: time other processes hold "
            "the cores is not charged to the contender that happened to run)"
        )
    CLOCK["name"] = "wall"
    return "clock: wall time" + (" (CUDA synchronised)" if str(device).startswith("cuda") else "")


def _now() -> float:
    return time.process_time() if CLOCK["name"] == "cpu" else time.perf_counter()


def timed(fn: Callable[[], Any], device: Any = "cpu") -> tuple[Any, float]:
    """``(fn(), seconds)`` for one call, on the clock :func:`set_clock` chose."""
    sync(device)
    t0 = _now()
    value = fn()
    sync(device)
    return value, _now() - t0


def choose_threads(requested: int | None) -> str:
    """Apply ``--threads`` (or the automatic choice above); return a line saying why."""
    import torch

    cores = os.cpu_count() or 1
    if requested:
        torch.set_num_threads(requested)
        return f"threads={requested} (--threads)"
    load1 = load_average()[0]
    if load1 > cores / 2 and torch.get_num_threads() > 1:
        torch.set_num_threads(1)
        return (
            f"threads=1 (load average {load1:.1f} > half of {cores} cores: other processes "
            "would make OpenMP threads wait for each other; --threads N forces N)"
        )
    return f"threads={torch.get_num_threads()} (torch default)"


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: Any = "cpu") -> dict[str, Any]:
    """What the figures depend on: CPU, cores, threads, torch, device, date."""
    import torch

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_header(
    title: str, device: Any = "cpu", threads: int | None = None, *, in_process: bool = True
) -> dict[str, Any]:
    """Print the title, the machine and the load average; return the machine dict.

    ``in_process``: the benchmark times work in this process, so set its threads
    (:func:`choose_threads`) and clock (:func:`set_clock`); the Ray benchmarks
    (work in other processes, wall time) pass ``False``.
    """
    import sys

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows live
    if in_process:
        why, clock = choose_threads(threads), set_clock(device)
    else:
        why, clock = (
            "threads: the workers' own (Ray sets OMP_NUM_THREADS per actor)",
            "clock: wall time",
        )
    info = machine_info(device)
    info["clock"] = CLOCK["name"]
    info["load_before"] = [round(v, 2) for v in load_average()]
    print(f"== {title}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items() if k != "load_before"))
    print(why)
    print(clock)
    print("load average before (1/5/15 min): " + "/".join(f"{v:.2f}" for v in load_average()))
    return info


def print_footer() -> list[float]:
    after = [round(v, 2) for v in load_average()]
    print("load average after (1/5/15 min): " + "/".join(f"{v:.2f}" for v in after))
    return after


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table (pasted as is into docs/BENCHMARKS.md)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "HIT" if ok else "MISS"


def write_json(path: str | os.PathLike[str] | None, payload: dict[str, Any]) -> None:
    """Save the figures (for gpu.sh and the docs) when ``path`` is given."""
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    print(f"figures written to {p}")

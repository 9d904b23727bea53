"""The plain progress line (no terminal: CI, a job's log) carries the worker pool."""

from __future__ import annotations

from sweep.execution.progress import SweepProgress


def test_the_pool_is_printed_at_once_then_with_each_line(capsys):
    with SweepProgress(total=3, log_every=3600) as bar:
        bar.pool("waiting for GPU nodes (1 GPU, 1 CPU per worker): 0 of 3 workers placed (0s of "
                 "resources.scale_timeout 600s)")
        bar.pool("workers 1 of 3 placed on 1 node(s)")  # within log_every: not printed again
        for _ in range(3):
            bar.pool("workers 3 of 3 placed on 3 node(s)")
            bar.advance(samples=8)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("cells 0/3, 0 samples/s, elapsed 0s, ETA -; waiting for GPU nodes (1 GPU")
    # the last line, when every cell is done, says where the work ran
    assert lines[-1].startswith("cells 3/3, ") and lines[-1].endswith("; workers 3 of 3 placed on 3 node(s)")
    assert len(lines) == 2

"""Ray Jobs entrypoint for a sweep's driver: ``sweep run SPEC --address auto`` on the head.

A thin wrapper over :func:`sweep.cli.job_entrypoint.job_main`, which is what
``sweep submit`` runs (as ``python -m sweep.cli.job_entrypoint SPEC``). This file is for
submitting with Ray's own CLI, from a folder holding the spec (and any factory
module or checkpoint it names by relative path)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        -- python jobs/run_sweep.py spec.yaml

The job joins the cluster it runs on, computes only the cells not done yet
(``--fresh``: all of them), and exits like ``sweep run``: 0 done, 1 a cell
failed, 2 bad spec. ``output`` in the spec must be an absolute path on storage
every node mounts (the job's working folder is temporary).
"""

from __future__ import annotations

from sweep.cli.job_entrypoint import job_main

if __name__ == "__main__":
    raise SystemExit(job_main())

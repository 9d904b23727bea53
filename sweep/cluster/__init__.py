"""Running a sweep on a Ray cluster through the Ray Job Submission API.

- :mod:`~sweep.cluster.client`: the dashboard's address and the auth token (``connect``);
- :mod:`~sweep.cluster.staging`: what a job ships (the spec, the local files it names,
  the launcher) and its runtime env;
- :mod:`~sweep.cluster.jobs`: submit a sweep job, follow its log, its exit code;
- :mod:`~sweep.cluster.launcher`: the shell script that starts the job on the head;
- :mod:`~sweep.cluster.status`: the cluster's nodes and sweep workers (state API).

The job's own entrypoint, which calls the ``sweep`` command group, lives in
:mod:`sweep.cli.job_entrypoint`: nothing here imports :mod:`sweep.cli`.
"""

"""The Python face, for notebooks: ``sweep.run(spec)`` and ``sweep.load(output)``.

The same validation, the same run and the same numbers as the command line
(``sweep run`` / ``sweep curves`` / ``sweep report``), with the CLI's exit codes
as exceptions:

=====================  ======================================================
``sweep run`` exits    ``sweep.run`` ...
=====================  ======================================================
0 (every cell done)    returns :class:`Results`
1 (a cell failed)      raises :class:`~sweep.errors.SweepFailed`: ``.failures``
                       the cells that failed, ``.results`` what is done
2 (bad spec, input)    raises :class:`~sweep.errors.SpecError` (field, value),
                       before Ray starts or anything is written
130 (Ctrl-C)           raises :class:`KeyboardInterrupt`; finished cells stay
=====================  ======================================================

Example::

    import sweep
    res = sweep.run("sweep/demo/digits.yaml")   # a path, YAML text, or a dict
    res.rows                                    # one row per (cell, sample, epsilon)
    res.curves()                                # robust accuracy per epsilon, worst case too
    res.report("report.html")
    sweep.load("runs/digits-demo").curves()     # later, from the output alone
    adv = sweep.load_adversarials("runs/digits-demo", model="digits-cnn", attack="pgd", epsilon=0.1)
    adv.images, adv.sample_ids                  # tensors: [N, C, H, W] and [N]

What the pipeline would print goes to the ``sweep`` logger (``logging``); the
model checks that fire before a run (``sweep run``'s ``warning:`` lines) are
Python warnings.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import SpecError, SweepFailed

if TYPE_CHECKING:
    import pandas as pd

    from sweep.analysis.collect import ReportData
    from sweep.analysis.sanity import Flag
    from sweep.execution.pool import WorkerPool
    from sweep.spec.config import SweepSpec

SpecSource = str | os.PathLike[str] | Mapping[str, Any]
log = logging.getLogger("sweep")


def read_spec(spec: SpecSource) -> SweepSpec:
    """A path to a YAML file, YAML text, or a mapping -> the validated spec.

    A string is YAML text when it holds a line break; otherwise it is a path.
    Raises :class:`~sweep.errors.SpecError` with the message ``sweep validate`` prints.
    """
    from sweep.spec.config import load_spec, parse_spec
    from sweep.spec.reader import parse_yaml

    if isinstance(spec, Mapping):
        return parse_spec(spec)
    if isinstance(spec, str) and "\n" in spec:
        return parse_spec(parse_yaml(spec), text=spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise SpecError("spec", spec, "expected a path to a YAML file, YAML text or a mapping")


def run(
    spec: SpecSource,
    *,
    fresh: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = False,
    pool: WorkerPool | None = None,
) -> Results:
    """Run (or resume) the sweep ``spec``; the module docstring says what it raises.

    Args:
        spec: a path to a YAML spec, YAML text, or the spec as a mapping (the keys of
            README's "Spec reference").
        fresh: recompute every cell, even those already done (``--fresh``).
        address: a Ray cluster to join (``--address``: ``auto`` or HOST:PORT);
            default: an embedded Ray instance, or ``$RAY_ADDRESS`` when set.
        num_cpus: CPUs of the embedded Ray instance (default: all).
        progress: draw the live progress line (off by default, for notebooks).
        pool: a :class:`~sweep.execution.pool.WorkerPool` to run on and leave open, so
            that several runs in one session reuse its workers and their loaded models
            (``with WorkerPool(keep=True) as pool: ...``); default: one for this run.
    """
    from sweep.cli.options import JOIN_ADDRESS_VAR
    from sweep.execution.pipeline import model_check_lines, prepare_spec, run_sweep

    prepared = prepare_spec(read_spec(spec))
    for line in model_check_lines(prepared):
        warnings.warn(line.removeprefix("warning: "), stacklevel=2)
    outcome = run_sweep(prepared, fresh=fresh, address=address or os.environ.get(JOIN_ADDRESS_VAR),
                        num_cpus=num_cpus, progress=progress, echo=_log, pool=pool)
    results = Results(prepared.spec.output, outcome.analysis)
    if outcome.failures:
        raise SweepFailed(outcome.failures, results)
    return results


def load(output: str | os.PathLike[str]) -> Results:
    """The results under ``output``: a sweep's folder or object-store URI.

    Only files the manifest vouches for are read (recorded done, with the recorded
    size): a stray or torn Parquet file in the folder never enters a number. When
    the folder has a plan (``_manifest/plan.json``), only the latest plan's cells count,
    as in ``sweep curves``.

    Raises:
        FileNotFoundError: nothing is at ``output``.
        ValueError: it holds no verified result (not a sweep's output, or no cell done).
    """
    from sweep.analysis.collect import collect
    from sweep.results import store
    from sweep.results.manifest import Manifest

    if not store.output_exists(output):
        raise FileNotFoundError(f"no such results folder: {os.fspath(output)}")
    manifest = Manifest(output)
    plan = manifest.read_plan()
    verified = manifest.verified(None if plan is None else plan.cell_ids())
    if not verified:
        raise ValueError(f"no verified results under {os.fspath(output)}: no cell of it is "
                         "recorded done in _manifest/ (is it a sweep's output folder?)")
    return Results(output, collect(output, files=sorted(r.file for r in verified.values())))


@dataclass
class Results:
    """A sweep's verified results and what is built from them, computed once.

    ``analysis`` is ``None`` only when a run finished with no cell done (every cell
    failed); then ``rows`` is empty and the tables raise.
    """

    output: str | os.PathLike[str]
    analysis: ReportData | None = field(default=None, repr=False)

    def _data(self) -> ReportData:
        if self.analysis is None:
            raise ValueError(f"no verified results under {os.fspath(self.output)}")
        return self.analysis

    @property
    def rows(self) -> pd.DataFrame:
        """One row per (cell, sample, epsilon), the columns of README's "Results schema"."""
        if self.analysis is None:
            import pandas as pd

            return pd.DataFrame()
        return self.analysis.results

    def curves(self) -> pd.DataFrame:
        """Robust accuracy per (model, attack, norm, epsilon) with 95% intervals, and the
        per-sample worst case over attacks as attack ``worst-case``: ``sweep curves``'s table."""
        return self._data().table

    def summary(self) -> pd.DataFrame:
        """Per (model, attack): clean accuracy, robust AUC, minimal perturbation statistics."""
        return self._data().summary

    def flags(self) -> list[Flag]:
        """The sanity flags (signs of gradient masking or a broken attack), as ``sweep curves``."""
        return list(self._data().flags)

    def adversarials(self, *, model: str | None = None, attack: str | None = None,
                     epsilon: float | None = None) -> Adversarials:
        """:func:`load_adversarials` of this output."""
        return load_adversarials(self.output, model=model, attack=attack, epsilon=epsilon)

    def transfer(self) -> pd.DataFrame:
        """Robust accuracy of each target model on each source's adversarials per attack
        and epsilon (``transfer:``; ``sweep curves``'s transfer table); empty without one."""
        from sweep.analysis.adversarials import transfer_rows, transfer_table

        return transfer_table(transfer_rows(self.output))

    def report(self, path: str | os.PathLike[str] = "report.html", *,
               epsilon: float | None = None) -> Path:
        """Write the self-contained HTML report (``sweep report``) to ``path``; returns it."""
        from sweep.report.builder import render
        from sweep.results import atomic

        return atomic.write_file(path, render(self._data(), epsilon=epsilon).encode("utf-8"))


@dataclass(frozen=True)
class Adversarials:
    """Stored adversarial images (``adversarials:`` in the spec) as tensors.

    Row ``i`` of every tensor is one (sample, epsilon) of one cell: ``images[i]`` is
    the adversarial exactly as verified (re-running the crafting model on it gives
    ``adv_pred[i]``), ``clean[i]`` the clean image; ``rows`` has the same rows with
    ``model``, ``attack``, ``cell_id``, ``sample_id``, ``epsilon``, ``label``,
    ``target``, ``adv_pred``.
    """

    images: Any  # torch.Tensor [N, C, H, W], float32 in [0, 1]
    clean: Any  # torch.Tensor [N, C, H, W]
    sample_ids: Any  # torch.Tensor [N], int64
    labels: Any  # torch.Tensor [N], int64
    adv_pred: Any  # torch.Tensor [N], int64
    epsilons: Any  # torch.Tensor [N], float64
    rows: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_adversarials(
    output: str | os.PathLike[str],
    *,
    model: str | None = None,
    attack: str | None = None,
    epsilon: float | None = None,
) -> Adversarials:
    """The adversarials stored under ``output`` for ``model`` x ``attack`` (its label) at
    ``epsilon`` (None: all of them); only files the manifest vouches for are read.

    Raises:
        FileNotFoundError: nothing is at ``output``.
        ValueError: no stored adversarial matches (``adversarials.keep: none``, or none done).
    """
    import torch

    from sweep.analysis.adversarials import read_adversarials

    found = read_adversarials(output, model=model, attack=attack, epsilon=epsilon)
    rows = found.rows
    return Adversarials(
        images=torch.from_numpy(found.images),
        clean=torch.from_numpy(found.clean),
        sample_ids=torch.tensor(rows["sample_id"].to_numpy()),
        labels=torch.tensor(rows["label"].to_numpy()),
        adv_pred=torch.tensor(rows["adv_pred"].to_numpy()),
        epsilons=torch.tensor(rows["epsilon"].to_numpy()),
        rows=rows,
    )


def _log(message: object = "", *_args: Any, err: bool = False, **_kwargs: Any) -> None:
    """The pipeline's ``echo``: into the ``sweep`` logger (warnings for what goes to stderr)."""
    (log.warning if err else log.info)("%s", message)

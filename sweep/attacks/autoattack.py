"""The ``autoattack`` preset: AutoAttack's components and budgets, run as a cascade.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks" (ICML 2020), arXiv:2003.01690, with the reference
implementation's versions (github.com/fra31/auto-attack, ``AutoAttack.set_version``).
The robust accuracy of the cascade is the AutoAttack number: a sample is robust only
if every component failed on it, each component attacking only what the earlier
ones left robust.

Versions (members in order; every budget is the reference's):

- ``standard`` (the number RobustBench ranks), L-inf and L2: APGD-CE (100 steps,
  1 restart), APGD-T (targeted DLR, 9 target classes, 100 steps each), FAB-T (9
  target classes, 100 steps, 1 restart), Square (5,000 queries, 1 restart).
  L1: APGD-CE (5 restarts), APGD-T (5 target classes), both with the reference's
  ``use_largereps`` schedule (``large_eps``), FAB-T (9 target classes).
- ``plus``: APGD-CE and APGD-DLR (5 restarts each), FAB (untargeted, 5 restarts),
  Square (5,000 queries), APGD-T (9 targets), FAB-T (9 targets).
- ``rand`` (randomised defences): APGD-CE and APGD-DLR with EOT over 20 draws
  (``eot_iter=20``), 1 restart.

Where it departs from the reference (docs/attacks-gradient.md, "AutoAttack"):

- Square halves its window fraction on a schedule rescaled to its 5,000 queries;
  the reference runs it with ``resc_schedule=False``. Ours shrinks the windows
  earlier, which was the stronger setting on the models measured.
- L1: the reference also lists Square, which this package does not offer for L1;
  the L1 preset is APGD-CE, APGD-T and FAB-T.
- Every member gets the cell's seed (the reference also seeds each component with
  the same seed); random draws follow the survivors a member is given.
"""

from __future__ import annotations

from typing import ClassVar

from sweep.attacks.cascade import Cascade
from sweep.attacks.members import VERSIONS as VERSIONS  # where they were
from sweep.attacks.members import Version, entries_of
from sweep.attacks.members import preset_members as preset_members
from sweep.attacks.norms import Norm
from sweep.attacks.params import Fraction


class AutoAttack(Cascade):
    """AutoAttack (Croce & Hein 2020, arXiv:2003.01690) as a cascade of its components.

    Args:
        norm: ``linf`` (default), ``l2`` or ``l1``.
        version: ``standard`` (default), ``plus`` or ``rand`` (module docstring).
        scale: multiplies every member's iterations and queries; default ``1.0``, the
            reference's budgets and the only value that gives the AutoAttack number
            (smaller values are for smoke tests and quick looks).
    """

    name: ClassVar[str] = "autoattack"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    preset: ClassVar[str] = "autoattack"

    def __init__(
        self, norm: Norm | None = None, version: Version = "standard", scale: Fraction = 1.0
    ) -> None:
        chosen = self.norms[0] if norm is None else norm
        members = entries_of(self.preset, {"version": version, "norm": chosen, "scale": scale})
        super().__init__(norm, members=list(members))
        self.version, self.scale = version, float(scale)

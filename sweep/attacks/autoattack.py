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

from typing import Any, ClassVar, Literal

from sweep.attacks.cascade import Cascade
from sweep.attacks.norms import Norm
from sweep.attacks.params import Fraction

Version = Literal["standard", "plus", "rand"]
VERSIONS: tuple[str, ...] = ("standard", "plus", "rand")


def preset_members(version: str, norm: str, scale: float = 1.0) -> list[dict[str, Any]]:
    """The members of AutoAttack ``version`` for ``norm``, as cascade member entries.

    ``scale`` multiplies every iteration and query budget (rounded, at least 1);
    only ``1.0`` is AutoAttack."""
    steps, queries = max(1, round(100 * scale)), max(1, round(5000 * scale))
    apgd_ce = {"name": "apgd", "label": "apgd-ce", "loss": "ce", "steps": steps}
    apgd_dlr = {"name": "apgd", "label": "apgd-dlr", "loss": "dlr", "steps": steps}
    apgd_t = {"name": "apgd-t", "label": "apgd-t", "n_target_classes": 9, "steps": steps, "restarts": 1}
    fab_t = {"name": "fab-t", "label": "fab-t", "n_target_classes": 9, "steps": steps, "restarts": 1}
    square = {"name": "square", "label": "square", "queries": queries, "restarts": 1}
    if version == "standard":
        if norm == "l1":  # the reference's use_largereps: 3 eps, 2 eps, then eps
            return [{**apgd_ce, "restarts": 5, "large_eps": True},
                    {**apgd_t, "n_target_classes": 5, "large_eps": True}, fab_t]
        return [{**apgd_ce, "restarts": 1}, apgd_t, fab_t, square]
    if version == "plus":
        fab = {"name": "fab", "label": "fab", "n_target_classes": 0, "steps": steps, "restarts": 5}
        return [{**apgd_ce, "restarts": 5}, {**apgd_dlr, "restarts": 5}, fab, square, apgd_t, fab_t]
    if version == "rand":
        return [{**apgd_ce, "restarts": 1, "eot_iter": 20}, {**apgd_dlr, "restarts": 1, "eot_iter": 20}]
    raise ValueError(f"autoattack: version must be one of {', '.join(VERSIONS)}, got {version!r}")


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

    def __init__(
        self, norm: Norm | None = None, version: Version = "standard", scale: Fraction = 1.0
    ) -> None:
        chosen = self.norms[0] if norm is None else norm
        super().__init__(norm, members=preset_members(version, chosen, scale))
        self.version, self.scale = version, float(scale)

"""Target 1 (issue 6) and the kernel table (issue 2): attack kernels vs their floor and peer.

For every registered attack, on one batch, in ONE run, interleaved round-robin:

- **ours**: ``sweep.attacks.create(name, **budget)(model, x, y, eps)`` (the whole
  public call: clean prediction, the kernel, projection, verification);
- **floor**: a raw loop of the same number of passes the attack's budget names,
  on the whole batch: forward + cross-entropy + ``autograd.grad`` w.r.t. the
  input for gradient attacks; forward only for black-box ones (Square, One-Pixel,
  noise). Nothing else: no step, no projection, no verification. An attack at
  1.00x its floor costs exactly its model passes;
- **peer**: torchattacks 3.5.1 with the same budget, where it has the attack.

Columns: images/s of each (medians), ``time/floor`` and ``time/peer`` (medians
of the per-round ratios: round i of A against round i of B, same background load),
and the robust accuracy each reached (so "faster" never hides "weaker").
Minimization attacks (CW, DeepFool, FMN, L-BFGS) stop when a sample is fooled,
so their "floor" is the nominal budget and a ratio below 1 means early stop.

Target 1: PGD-L-inf, 10 steps, batch 128 (digits-cnn, and the random-init cnn32
at 3x32x32 where compute dominates): time <= 1.10x floor and <= torchattacks.
Measured on its own (:func:`target1`, more rounds) with five contenders: the
floor; the floor plus two forward passes (the clean prediction and the re-run on
the result that every verified attack pays: the least our API can cost); ours
with ``early_stop=False`` (the same work as the floor and the peer); ours as
shipped (``early_stop=True``); torchattacks' PGD. With ``--variants`` also with
channels_last memory and bf16 autocast, and how many verdicts those change.

Precision: on a GPU every attack call runs in full fp32, without the TF32
convolutions PyTorch allows by default (:func:`sweep.attacks.precision.full_precision`),
so floors and peers are timed in fp32 too (equal arithmetic); target 1 adds the
floor with TF32 allowed, to show what that choice costs.

    python bench/kernels.py                      # target 1 on digits + cnn32, table on digits
    python bench/kernels.py --models cnn32 --attacks pgd,apgd,square --repeats 5
    python bench/kernels.py --device cuda --target-models resnet18 --models resnet18 \\
        --batch 512 --variants
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    interleaved,
    min_ratio,
    paired_ratio,
    print_footer,
    print_header,
    table,
    verdict,
    write_json,
)
from nets import MODELS, workload
from variants import agreement, apply_variant

from sweep.attacks import create
from sweep.attacks.base import predict
from sweep.attacks.norms import lp_norm, within
from sweep.attacks.precision import full_precision
from sweep.attacks.registry import UnknownAttackError, available

# Budgets per norm and model: large enough that a trained digits-cnn keeps some
# survivors (so early stop is not the whole story), CIFAR-standard for 32x32.
EPS: dict[str, dict[str, float]] = {
    "digits": {"linf": 0.1, "l2": 1.0, "l1": 4.0, "l0": 1.0},
    "cnn32": {"linf": 8 / 255, "l2": 0.5, "l1": 10.0, "l0": 1.0},
    "resnet18": {"linf": 8 / 255, "l2": 0.5, "l1": 10.0, "l0": 1.0},
}
TARGET_RATIO = 1.10


@dataclass(frozen=True)
class Case:
    """One attack with one budget, its floor and its peer."""

    label: str
    attack: str
    params: dict[str, Any]
    norm: str
    passes: int  # model passes of the nominal budget, on the whole batch
    forward_only: bool = False
    floor_batch_mult: int = 1  # One-Pixel evaluates population x batch images per pass
    minimal: bool = False  # minimization attack: called with eps = inf
    peer: Callable[[nn.Module, float], Callable[[Tensor, Tensor], Tensor]] | None = None


def _ta() -> Any:
    import torchattacks

    return torchattacks


def cases() -> list[Case]:
    """Every attack of the registry, with a budget the peer can match."""
    ta = _ta
    return [
        Case("fgsm", "fgsm", {}, "linf", 1, peer=lambda m, e: ta().FGSM(m, eps=e)),
        Case(
            "pgd-linf-10",
            "pgd",
            {"steps": 10},
            "linf",
            10,
            peer=lambda m, e: ta().PGD(m, eps=e, alpha=2.5 * e / 10, steps=10),
        ),
        Case(
            "pgd-l2-10",
            "pgd",
            {"norm": "l2", "steps": 10},
            "l2",
            10,
            peer=lambda m, e: ta().PGDL2(m, eps=e, alpha=2.5 * e / 10, steps=10),
        ),
        Case("pgd-l1-10", "pgd", {"norm": "l1", "steps": 10}, "l1", 10),
        Case(
            "apgd-ce-20",
            "apgd",
            {"steps": 20, "loss": "ce"},
            "linf",
            20,
            peer=lambda m, e: ta().APGD(m, norm="Linf", eps=e, steps=20, loss="ce"),
        ),
        Case(
            "cw-50 (1 const)",
            "cw",
            {"steps": 50, "binary_search_steps": 1, "initial_const": 1.0},
            "l2",
            50,
            minimal=True,
            peer=lambda m, e: ta().CW(m, c=1.0, kappa=0, steps=50, lr=0.01),
        ),
        Case(
            "deepfool-l2-50",
            "deepfool",
            {"norm": "l2", "steps": 50},
            "l2",
            50,
            minimal=True,
            peer=lambda m, e: ta().DeepFool(m, steps=50, overshoot=0.02),
        ),
        Case("fmn-linf-50", "fmn", {"norm": "linf", "steps": 50}, "linf", 50, minimal=True),
        Case(
            "lbfgs-2x20",
            "lbfgs",
            {"binary_search_steps": 2, "max_iter": 20},
            "l2",
            40,
            minimal=True,
        ),
        Case(
            "square-linf-300",
            "square",
            {"queries": 300},
            "linf",
            300,
            forward_only=True,
            peer=lambda m, e: ta().Square(m, norm="Linf", eps=e, n_queries=300, seed=0),
        ),
        Case(
            "onepixel-30x10",
            "onepixel",
            {"population": 30, "iterations": 10},
            "l0",
            11,
            forward_only=True,
            floor_batch_mult=30,
            # scipy's popsize is per parameter: 10 x (x, y, value) = 30 candidates per image
            peer=lambda m, e: ta().OnePixel(m, pixels=1, steps=10, popsize=10),
        ),
        Case("noise-10", "noise", {"draws": 10}, "linf", 10, forward_only=True),
    ]


def in_fp32(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``fn`` run in full fp32 (no TF32), as every attack call runs on a GPU
    (:func:`sweep.attacks.precision.full_precision`): floors and peers at equal arithmetic."""

    def run() -> Any:
        with full_precision(torch.device(device)):
            return fn()

    return run


def floor_loop(model: nn.Module, x: Tensor, y: Tensor, case: Case) -> Callable[[], None]:
    """The raw loop: ``case.passes`` forward(+backward) passes on the batch, nothing else."""
    xb = x.repeat(case.floor_batch_mult, *([1] * (x.dim() - 1))) if case.floor_batch_mult > 1 else x
    yb = y.repeat(case.floor_batch_mult)

    def grad_loop() -> None:
        for _ in range(case.passes):
            a = xb.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(a), yb, reduction="sum")
            torch.autograd.grad(loss, a)

    @torch.no_grad()
    def forward_loop() -> None:
        for _ in range(case.passes):
            model(xb)

    return forward_loop if case.forward_only else grad_loop


def robust_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, adv: Tensor, norm: str, eps: float
) -> float:
    """Verified robust accuracy of any adversarial batch (ours or the peer's)."""
    with torch.no_grad():
        clean_ok = predict(model, x) == y
        fooled = (predict(model, adv) != y) & within(
            lp_norm(adv - x, norm), torch.full_like(y, eps, dtype=x.dtype)
        )
    return float((clean_ok & ~fooled).float().mean())


def run_case(
    case: Case,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    repeats: int,
    device: str,
    slow_seconds: float = 10.0,
) -> dict[str, Any]:
    """Time ours / floor / peer interleaved; return one table row."""
    atk = create(case.attack, **case.params)
    call_eps = math.inf if case.minimal else eps
    last: dict[str, Tensor] = {}

    def ours() -> None:
        last["ours"] = atk(model, x, y, call_eps).adv

    contenders: dict[str, Callable[[], None]] = {
        "ours": ours,
        "floor": in_fp32(floor_loop(model, x, y, case), device),
    }
    if case.peer is not None:
        peer = case.peer(model, eps)

        def theirs() -> None:
            last["peer"] = peer(x, y)

        contenders["peer"] = in_fp32(theirs, device)
    t = interleaved(contenders, repeats=repeats, warmup=1, device=device, slow_seconds=slow_seconds)
    b = x.shape[0]
    row: dict[str, Any] = {
        "attack": case.label,
        "eps": "min-norm" if case.minimal else f"{case.norm} {eps:.4g}",
        "passes": case.passes,
        "ours img/s": b / t["ours"].median,
        "floor img/s": b / t["floor"].median,
        "time/floor": paired_ratio(t["ours"], t["floor"]),
        "spread": max(v.spread for v in t.values()),
    }
    # minimization attacks: "robust" here means "no adversarial found at any size"
    check_eps = math.inf if case.minimal else eps
    row["robust ours"] = robust_accuracy(model, x, y, last["ours"], case.norm, check_eps)
    if "peer" in t:
        row["peer img/s"] = b / t["peer"].median
        row["time/peer"] = paired_ratio(t["ours"], t["peer"])
        row["robust peer"] = robust_accuracy(
            model, x, y, last["peer"].to(x.dtype), case.norm, check_eps
        )
    else:
        row["peer img/s"] = row["time/peer"] = row["robust peer"] = float("nan")
    return row


COLUMNS = [
    "attack",
    "eps",
    "passes",
    "ours img/s",
    "floor img/s",
    "peer img/s",
    "time/floor",
    "time/peer",
    "robust ours",
    "robust peer",
    "spread",
]


def target1(
    model_name: str, *, batch: int, repeats: int, device: str, variant: str = "fp32"
) -> dict[str, Any]:
    """PGD-linf-10 against the floor, the floor plus the two forward passes every verified
    attack needs (clean prediction, re-run on the result), and torchattacks' PGD."""
    import torchattacks

    w = workload(model_name, batch=batch, device=device)
    model, x = apply_variant(w.model, w.images, variant)
    y, eps = w.labels, EPS[model_name]["linf"]
    floor = floor_loop(model, x, y, Case("floor", "pgd", {}, "linf", 10))

    def verified_floor() -> None:
        floor()
        # the clean prediction and the re-run on the result, taken as every verdict is:
        # sweep.attacks.base.predict, in full fp32 (no TF32) on a GPU
        predict(model, x)
        predict(model, x)

    equal = create("pgd", steps=10, early_stop=False)
    default = create("pgd", steps=10)
    # the clean predictions a sweep's worker already has (its clean-logits check), handed
    # to the call so it does not run the clean forward again (issue 13)
    clean = predict(model, x)
    peer = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 10, steps=10)
    last: dict[str, Tensor] = {}
    contenders = {
        "floor": in_fp32(floor, device),
        "floor + 2 fwd": in_fp32(verified_floor, device),
        "ours, no early stop": lambda: last.__setitem__("equal", equal(model, x, y, eps).adv),
        "ours, default": lambda: last.__setitem__("default", default(model, x, y, eps).adv),
        "ours, no early stop, clean_pred given": lambda: last.__setitem__(
            "given", equal(model, x, y, eps, clean_pred=clean).adv),
        "torchattacks": in_fp32(lambda: last.__setitem__("peer", peer(x, y)), device),
    }
    if device.startswith("cuda"):
        # what full fp32 costs against PyTorch's default TF32 convolutions
        contenders["floor, TF32 allowed"] = floor
    t = interleaved(contenders, repeats=repeats, warmup=1, device=device)
    f = t["floor"]
    row: dict[str, Any] = {
        "model": model_name,
        "variant": variant,
        "batch": batch,
        "floor img/s": batch / f.median,
    }
    for name in ("floor + 2 fwd", "ours, no early stop", "ours, no early stop, clean_pred given",
                 "ours, default", "torchattacks"):
        row[f"{name} /floor"] = paired_ratio(t[name], f)
        row[f"{name} /floor (min)"] = min_ratio(t[name], f)
    for name in ("ours, no early stop", "ours, no early stop, clean_pred given", "ours, default"):
        row[f"{name} /peer"] = paired_ratio(t[name], t["torchattacks"])
    if "floor, TF32 allowed" in t:
        row["fp32 floor / TF32 floor"] = paired_ratio(f, t["floor, TF32 allowed"])
    # every adversarial batch verified on the plain fp32 model (for a variant: does its
    # answer hold on the model it stands for?)
    for key, label in (("equal", "no early stop"), ("default", "default"), ("peer", "peer")):
        row[f"robust {label} (fp32 check)"] = robust_accuracy(
            w.model, w.images, y, last[key].contiguous(), "linf", eps
        )
    row["spread"] = max(v.spread for v in t.values())
    if variant != "fp32":
        a = agreement(w.model, model, w.images, y, x, eps)
        row["vs fp32"] = f"{a['verdict differs']}/{a['samples']} verdicts differ"
        print(f"  {model_name} [{variant}] vs fp32, PGD-linf-10: {a}")
    print(
        f"  {model_name:<8} [{variant}] floor {row['floor img/s']:8.1f} img/s; /floor: "
        + ", ".join(
            f"{n} {row[n + ' /floor']:.3f}"
            for n in ("floor + 2 fwd", "ours, no early stop", "ours, no early stop, clean_pred given",
                      "ours, default", "torchattacks")
        ),
        flush=True,
    )
    return row


def target1_verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        for name in ("ours, no early stop", "ours, no early stop, clean_pred given", "ours, default"):
            out.append(
                {
                    "model": f"{r['model']} [{r['variant']}]",
                    "pgd-linf-10": name,
                    "time/floor": r[f"{name} /floor"],
                    "time/floor (min)": r[f"{name} /floor (min)"],
                    "time/peer": r[f"{name} /peer"],
                    "<= 1.10x floor": verdict(r[f"{name} /floor"] <= TARGET_RATIO),
                    "<= peer": verdict(r[f"{name} /peer"] <= 1.0),
                }
            )
    return out


def run_model(
    model_name: str, selected: list[Case], *, batch: int, repeats: int, device: str
) -> list[dict[str, Any]]:
    w = workload(model_name, batch=batch, device=device)
    rows = []
    for case in selected:
        eps = EPS[model_name][case.norm]
        try:
            row = run_case(case, w.model, w.images, w.labels, eps, repeats=repeats, device=device)
        except (UnknownAttackError, ImportError, ModuleNotFoundError) as exc:
            print(f"  {case.label}: not measured ({type(exc).__name__}: {exc})")
            continue
        except KeyboardInterrupt:  # a time limit (gpu.sh sends SIGINT): keep what is done
            print(f"  {case.label}: interrupted; the table stops here")
            break
        row = {"model": model_name, **row}
        rows.append(row)
        print(
            f"  {row['model']:<10} {case.label:<18} ours {row['ours img/s']:9.1f} img/s  "
            f"floor {row['floor img/s']:9.1f}  peer {row['peer img/s']:9.1f}  "
            f"time/floor {row['time/floor']:.3f}  time/peer {row['time/peer']:.3f}  "
            f"robust {row['robust ours']:.3f} vs {row['robust peer']:.3f}",
            flush=True,
        )
    return rows


def select(names: str, model_name: str) -> list[Case]:
    every = cases()
    if names == "all":
        return every
    wanted = names.split(",")
    unknown = set(wanted) - {c.attack for c in every} - {c.label for c in every}
    if unknown:
        raise SystemExit(f"unknown attack(s) {sorted(unknown)}; registry: {', '.join(available())}")
    # in the order asked (put slow ones last: a time limit then cuts only them)
    return [c for name in wanted for c in every if name in (c.attack, c.label)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--target-models",
        default="digits,cnn32",
        help=f"target 1 (PGD-linf-10) on these, comma list of {MODELS}; '' skips",
    )
    p.add_argument(
        "--target-repeats", type=int, default=5, help="timed rounds for target 1 (docs: 7)"
    )
    p.add_argument("--models", default="digits", help="per-attack table on these ('' skips)")
    p.add_argument("--attacks", default="all", help="'all' or a comma list (names or labels)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument(
        "--repeats", type=int, default=1, help="timed rounds for the per-attack table (docs: 3)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's, or 1 on an oversubscribed machine)",
    )
    p.add_argument(
        "--variants",
        action="store_true",
        help="target 1 also with channels_last and bf16 autocast, with result agreement",
    )
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    info = print_header(
        "bench/kernels.py: attack kernels vs raw fwd+bwd floor and torchattacks",
        args.device,
        args.threads,
    )
    print(
        f"batch {args.batch}; rounds interleaved after 1 warm-up; ratios are medians of "
        "per-round ratios; '(min)' = min/min; spread = (max-min)/median, noisiest contender"
    )
    t1: list[dict[str, Any]] = []
    if args.target_models:
        print(f"\ntarget 1: PGD-linf-10, {args.target_repeats} rounds")
        variants = ["fp32", "channels_last", "bf16"] if args.variants else ["fp32"]
        for name in args.target_models.split(","):
            for variant in variants:
                t1.append(
                    target1(
                        name,
                        batch=args.batch,
                        repeats=args.target_repeats,
                        device=args.device,
                        variant=variant,
                    )
                )
    rows: list[dict[str, Any]] = []
    if args.models:
        print(f"\nper-attack table, {args.repeats} rounds")
        for name in args.models.split(","):
            rows += run_model(
                name,
                select(args.attacks, name),
                batch=args.batch,
                repeats=args.repeats,
                device=args.device,
            )
    verdicts = target1_verdicts(t1)
    if rows:
        print()
        print(table(rows, ["model", *COLUMNS]))
    if t1:
        print(
            "\ntarget 1 detail (time / floor; 'floor + 2 fwd' = the least a verified attack costs)"
        )
        print(table(t1))
        print("\ntarget 1: PGD-linf-10 time <= 1.10x the raw fwd+bwd floor and <= torchattacks")
        print(table(verdicts))
    info["load_after"] = print_footer()
    write_json(
        args.json,
        {
            "machine": info,
            "target1": t1,
            "target1_verdicts": verdicts,
            "rows": rows,
            "args": vars(args),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

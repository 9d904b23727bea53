"""AutoAttack parity: the ``autoattack`` preset against the reference and torchattacks.

On the built-in digits models and the first ``--samples`` test images, at each
``--eps`` (L-inf), this measures in one run:

- the preset's robust accuracy (the cascade) and after each member, and each member
  run alone on every sample (the per-component numbers AutoAttack's
  ``run_standard_evaluation_individual`` gives);
- the official implementation (github.com/fra31/auto-attack), when importable
  (``--reference DIR``: a checkout whose ``autoattack`` package is imported; CI and
  the test suite never need it), standard version, same samples, seed 0;
- torchattacks 3.5.1's ports: ``AutoAttack(version="standard")``, ``APGD``,
  ``APGDT``, ``FAB(multi_targeted)``, ``Square``;
- the cost of the cascade against running every member on every sample: model
  rows forwarded (a counting wrapper) and CPU/wall time.

Claims checked (printed as PASS/FAIL): the preset never reports more robust
accuracy than either peer's AutoAttack; the cascade equals or beats the worst case
of its members run alone.

    python bench/autoattack_parity.py --samples 256 --eps 0.1 0.2 --reference /path/to/auto-attack
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_footer, print_header, table, verdict, write_json
from sweep.attacks import create
from sweep.attacks.autoattack import preset_members
from sweep.data.digits import load_digits_split
from sweep.models.digits_cnn import load_digits_model


class Counting(nn.Module):
    """Counts rows forwarded: the cost measure that does not move with machine load."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.net(x)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def ours(model: nn.Module, x, y, eps: float, seed: int) -> dict[str, Any]:
    counted = Counting(model).eval()
    t0 = time.process_time()
    out = create("autoattack", norm="linf", version="standard")(counted, x, y, eps, seed=seed)
    cascade_cpu, cascade_rows = time.process_time() - t0, counted.rows
    labels = create("autoattack").labels
    after = {}
    for k, label in enumerate(labels):
        broken = (out.broken_by >= 0) & (out.broken_by <= k)
        after[label] = float(((out.clean_pred == y) & ~broken).float().mean())
    alone, alone_rows, alone_cpu, robust_all = {}, 0, 0.0, torch.ones_like(y, dtype=torch.bool)
    for entry in preset_members("standard", "linf"):
        params = {k: v for k, v in entry.items() if k not in ("name", "label")}
        counted.rows = 0
        t0 = time.process_time()
        single = create(entry["name"], norm="linf", **params)(counted, x, y, eps, seed=seed)
        alone_cpu += time.process_time() - t0
        alone_rows += counted.rows
        alone[entry["label"]] = float(single.robust.float().mean())
        robust_all &= single.robust
    return {
        "robust": float(out.robust.float().mean()), "after": after, "alone": alone,
        "worst_of_alone": float(robust_all.float().mean()),
        "cascade_rows": cascade_rows, "alone_rows": alone_rows,
        "cascade_cpu": cascade_cpu, "alone_cpu": alone_cpu,
    }


def reference(model: nn.Module, x, y, eps: float, seed: int, where: str | None) -> dict[str, Any] | None:
    if not where:
        return None
    sys.path.insert(0, where)
    try:
        aa = importlib.import_module("autoattack")
    except ImportError as exc:
        print(f"reference not importable from {where}: {exc}")
        return None
    adversary = aa.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed,
                              device="cpu", verbose=False)
    t0 = time.process_time()
    adv = adversary.run_standard_evaluation(x, y, bs=len(x))
    total = accuracy(model, adv, y)
    cpu = time.process_time() - t0
    individual = adversary.run_standard_evaluation_individual(x, y, bs=len(x))
    return {"robust": total, "cpu": cpu,
            "alone": {k: accuracy(model, v, y) for k, v in individual.items()}}


def torchattacks_peer(model: nn.Module, x, y, eps: float, seed: int) -> dict[str, Any]:
    import torchattacks

    out: dict[str, Any] = {}
    t0 = time.process_time()
    aa = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=seed)
    out["robust"] = accuracy(model, aa(x, y), y)
    out["cpu"] = time.process_time() - t0
    singles = {
        "apgd-ce": torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, loss="ce", seed=seed),
        "apgd-t": torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_classes=10, seed=seed),
        "fab-t": torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_classes=10,
                                  multi_targeted=True, seed=seed),
        "square": torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, seed=seed),
    }
    out["alone"] = {k: accuracy(model, a(x, y), y) for k, a in singles.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--models", nargs="+", default=["digits-cnn", "digits-cnn-at"])
    ap.add_argument("--reference", default=None, help="a checkout of fra31/auto-attack (optional)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print_header("AutoAttack parity: preset vs reference vs torchattacks", threads=1)
    data = load_digits_split("test").take(args.samples)
    x, y = data.images, data.labels
    rows, ok, payload = [], True, []
    for name in args.models:
        model = load_digits_model(name).eval()
        for eps in args.eps:
            mine = ours(model, x, y, eps, args.seed)
            ref = reference(model, x, y, eps, args.seed, args.reference)
            peer = torchattacks_peer(model, x, y, eps, args.seed)
            never_above = mine["robust"] <= peer["robust"] and (ref is None or mine["robust"] <= ref["robust"])
            ok &= never_above and mine["robust"] <= mine["worst_of_alone"] + 1e-9
            rows.append({
                "model": name, "eps": eps, "clean": f"{accuracy(model, x, y):.1%}",
                "ours": f"{mine['robust']:.1%}",
                "reference": "–" if ref is None else f"{ref['robust']:.1%}",
                "torchattacks": f"{peer['robust']:.1%}",
                "ours alone (ce/t/fab-t/sq)": " / ".join(f"{v:.1%}" for v in mine["alone"].values()),
                "ref alone": "–" if ref is None else " / ".join(f"{v:.1%}" for v in ref["alone"].values()),
                "ta alone": " / ".join(f"{v:.1%}" for v in peer["alone"].values()),
                "rows cascade/all": f"{mine['cascade_rows'] / mine['alone_rows']:.2f}",
                "cpu cascade/all": f"{mine['cascade_cpu'] / mine['alone_cpu']:.2f}",
                "never above peers": verdict(never_above),
            })
            payload.append({"model": name, "eps": eps, "ours": mine, "reference": ref, "torchattacks": peer})
            print(rows[-1], flush=True)
    print(table(rows))
    print_footer()
    write_json(args.json, {"rows": payload})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

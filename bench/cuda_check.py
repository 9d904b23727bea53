"""CUDA check: every registered attack, in every norm it supports, on the GPU and on the CPU.

Not a speed benchmark but a correctness run for the GPU path, which the test suite
(CPU only) cannot reach. On the trained ``digits-cnn`` and the first ``--samples``
images of the digits test split, each attack runs with its default (paper) budget
on CUDA and, with the same seed, on the CPU. For each it reports, and counts as a
FAILURE (exit 1):

- an adversarial outside [0, 1], or a "successful" one whose perturbation,
  re-measured here in float64 on the CPU, exceeds its epsilon (relative 1e-4);
- CUDA verdicts that the CPU copy of the model does not confirm: the CUDA
  adversarials are moved to the CPU and re-run there; a CUDA success the CPU model
  calls correct is *unconfirmed*. More than 1% of the samples fails the check (a
  few can sit within float noise of a decision boundary, and are listed);

and, for information: robust accuracy on each device (random starts draw from
each device's own generator, so random-start attacks may differ by a few
samples), and the wall time of one call on each device after a warm-up.
``pgd`` also runs as a whole curve on CUDA with both strategies (``incremental``
must never rise with epsilon).

    python bench/cuda_check.py --json out.json          # on a machine with CUDA
    python bench/cuda_check.py --device cpu --samples 32  # smoke run of the script itself
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweep.attacks import available, create  # noqa: E402
from sweep.attacks.registry import attack_class  # noqa: E402
from sweep.data.digits import load_digits_split  # noqa: E402
from sweep.models.digits_cnn import load_digits_model  # noqa: E402

# defaults (paper budgets) except these two gradient-free ones, cut so that the CPU
# twin run stays within a few minutes (One-Pixel's default is 40,000 queries a sample)
BUDGETS: dict[str, dict[str, Any]] = {"onepixel": {"population": 100, "iterations": 30},
                                      "square": {"queries": 1000}}
EPS_BY_NORM = {"linf": 0.15, "l2": 1.5, "l1": 8.0, "l0": 3.0}  # clearly attackable budgets
NORM_TOL = 1e-4  # relative slack on the re-measured norm
UNCONFIRMED_LIMIT = 0.01  # fraction of samples
CURVE_EPS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]


def lp(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm in float64 (the re-measurement, independent of sweep.attacks.norms)."""
    flat = delta.reshape(delta.shape[0], -1).double()
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    # l0 counts pixels (any channel changed), as One-Pixel's budget does
    per_pixel = delta.abs().amax(dim=1).reshape(delta.shape[0], -1) if delta.dim() == 4 else flat.abs()
    return (per_pixel > 0).sum(dim=1).double()


def timed(fn: Any, device: str) -> tuple[Any, float]:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def check_one(name: str, norm: str, model_cpu: Any, model_dev: Any, x: torch.Tensor, y: torch.Tensor,
              device: str) -> dict[str, Any]:
    eps = EPS_BY_NORM[norm]
    attack = create(name, norm=norm, **BUDGETS.get(name, {}))
    xd, yd = x.to(device), y.to(device)
    attack(model_dev, xd[:8], yd[:8], eps, seed=1)  # warm-up (CUDA kernels, cuDNN plans)
    on_dev, t_dev = timed(lambda: attack(model_dev, xd, yd, eps, seed=0), device)
    on_cpu, t_cpu = timed(lambda: attack(model_cpu, x, y, eps, seed=0), "cpu")

    adv = on_dev.adv.detach().cpu()
    success = on_dev.success.cpu()
    in_box = bool(((adv >= 0) & (adv <= 1)).all())
    norms = lp(adv - x, norm)
    over = success & (norms > eps * (1 + NORM_TOL) + 1e-6)
    with torch.no_grad():
        cpu_pred = model_cpu(adv).argmax(dim=1)
    cpu_fooled = cpu_pred != y
    unconfirmed = success & ~cpu_fooled
    missed = ~success & cpu_fooled & (norms <= eps * (1 + NORM_TOL) + 1e-6)
    n = len(y)
    row = {
        "attack": name, "norm": norm, "eps": eps, "samples": n,
        "robust_dev": 1.0 - float(on_dev.success.float().mean()),
        "robust_cpu": 1.0 - float(on_cpu.success.float().mean()),
        "seconds_dev": t_dev, "seconds_cpu": t_cpu,
        "in_box": in_box, "over_budget": int(over.sum()),
        "unconfirmed": int(unconfirmed.sum()), "unconfirmed_ids": unconfirmed.nonzero().flatten().tolist()[:10],
        "cpu_finds_more": int(missed.sum()),
    }
    row["ok"] = in_box and row["over_budget"] == 0 and row["unconfirmed"] <= UNCONFIRMED_LIMIT * n
    return row


def curve_check(model_dev: Any, x: torch.Tensor, y: torch.Tensor, device: str) -> list[dict[str, Any]]:
    rows = []
    attack = create("pgd", norm="linf")
    for strategy in ("incremental", "independent"):
        res, secs = timed(lambda s=strategy: attack.curve(model_dev, x.to(device), y.to(device), CURVE_EPS,
                                                          strategy=s, seed=0), device)
        robust = [1.0 - float(s.float().mean()) for s in res.success]
        monotone = all(b <= a + 1e-12 for a, b in itertools.pairwise(robust))
        rows.append({"strategy": strategy, "robust": robust, "seconds": secs, "monotone": monotone,
                     "ok": monotone or strategy == "independent"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--attacks", default=",".join(available()))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to torch", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    data = load_digits_split("test")
    x, y = data.images[: args.samples].float(), data.labels[: args.samples]
    model_cpu = load_digits_model("digits-cnn").eval()
    model_dev = load_digits_model("digits-cnn").eval().to(args.device)
    with torch.no_grad():
        clean_dev = model_dev(x.to(args.device)).argmax(1).cpu()
        clean_cpu = model_cpu(x).argmax(1)
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device == "cuda" else "")
          + f"; {len(y)} digits test samples; clean accuracy {float((clean_dev == y).float().mean()):.4f} "
          f"({args.device}) / {float((clean_cpu == y).float().mean()):.4f} (cpu), "
          f"{int((clean_dev != clean_cpu).sum())} clean predictions differ")

    rows = []
    header = (f"{'attack':10} {'norm':5} {'eps':>5} {'robust dev':>10} {'robust cpu':>10} "
              f"{'t dev s':>8} {'t cpu s':>8} {'cpu/dev':>7} {'over':>4} {'unconf':>6} ok")
    print(header)
    for name in args.attacks.split(","):
        for norm in attack_class(name).norms:
            if norm not in EPS_BY_NORM:
                continue
            try:
                row = check_one(name, norm, model_cpu, model_dev, x, y, args.device)
            except Exception as exc:  # report and go on: one broken attack must not hide the others
                row = {"attack": name, "norm": norm, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                print(f"{name:10} {norm:5} ERROR {row['error']}")
                rows.append(row)
                continue
            rows.append(row)
            ratio = row["seconds_cpu"] / row["seconds_dev"] if row["seconds_dev"] > 0 else math.nan
            print(f"{name:10} {norm:5} {row['eps']:5g} {row['robust_dev']:10.4f} {row['robust_cpu']:10.4f} "
                  f"{row['seconds_dev']:8.3f} {row['seconds_cpu']:8.3f} {ratio:7.1f} {row['over_budget']:4d} "
                  f"{row['unconfirmed']:6d} {'yes' if row['ok'] else 'NO'}", flush=True)
    curves = curve_check(model_dev, x, y, args.device)
    for c in curves:
        print(f"pgd curve ({c['strategy']}) on {args.device}: eps {CURVE_EPS} -> robust "
              f"{[round(r, 4) for r in c['robust']]} in {c['seconds']:.2f}s; monotone {c['monotone']}")
    failed = [r for r in rows if not r["ok"]] + [c for c in curves if not c["ok"]]
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "device": args.device,
                                         "rows": rows, "curves": curves}, indent=1))
    print(f"{len(rows)} attack x norm checks, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

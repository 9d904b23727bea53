#!/usr/bin/env bash
# Target 6 (issue 6): targets 1, 2 and 5 on one CUDA GPU, in one prepared script.
#
#   bench/gpu.sh            # on a GPU machine, from anywhere; about 5-8 minutes
#   bench/gpu.sh --smoke    # a tiny CPU run of the same steps (checks the script itself)
#   bench/gpu.sh --no-e2e   # without steps 4-5 (for a machine with torch but no Ray/MLflow)
#   bench/gpu.sh --cells    # step C alone (issue 13: a sweep's cells through CellWorker), ~3 min
#
# Needs the repository's own environment and nothing else: a venv at .venv made by
# `make setup` (torch/torchvision from constraints.txt, the test extras, torchattacks),
# or PYTHON=/path/to/python with the project importable. It installs nothing and
# downloads nothing (no weights: the ResNet-18 is randomly initialised, seeded;
# its inputs are seeded noise labelled by the net itself, so every sample is attacked.
# Figures from it are for SPEED only; its robustness numbers mean nothing).
#
# Steps (each under its own time limit, so the whole stays under ~10 minutes):
#   0. bench/cuda_check.py  every attack x norm on CUDA and on the CPU: results in the box and
#      the budget, CUDA verdicts confirmed by the CPU model, robust accuracy on both devices.
#   1. bench/kernels.py  target 1: PGD-linf-10 on ResNet-18 3x32x32, batch 512, vs the raw
#      fwd+bwd floor and torchattacks; fp32, channels_last and bf16 autocast, each with the
#      number of verdicts it changes vs fp32 ("where results stay identical"); then the
#      per-attack table on the same net (a peer slower than 10 s per call is timed once;
#      torchattacks' per-image DeepFool goes last, so the time limit can only cut it).
#   2. bench/curve.py    target 2 (+3): whole curves, ResNet-18 512 samples, and the trained
#      digits-cnn on the full digits test split (meaningful survivors).
#   3. bench/e2e.py      target 5: bench/specs/resnet18.yaml (4096 samples, 32 cells of 512)
#      and the demo spec, on the GPU worker, with the phase breakdown.
#   4. bench/figures.py  kernels.png and curve.png.
#   C. bench/cells.py    (issue 13, runs first) real cells of bench/specs/resnet18.yaml (shards
#      of 64, 1024 samples) and of the digits demo through the worker's own path
#      (CellWorker, no Ray: this machine has none), cell by cell vs in the dispatcher's
#      groups: per-cell wall, kernel and non-kernel time, GPU utilisation (NVML), rows
#      identical between the two.
# Everything (logs, JSON, PNG, nvidia-smi) goes to $OUT if set, else bench-out/<time>/.
set -uo pipefail

cd "$(dirname "$0")/.."
SMOKE=0
E2E=1
CELLS_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        --no-e2e) E2E=0 ;;   # a machine without Ray/MLflow: kernels, curves and the CUDA check only
        --cells) CELLS_ONLY=1; E2E=0 ;;
        *) echo "unknown option $arg (known: --smoke, --no-e2e, --cells)" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-.venv/bin/python}"
PY="$(command -v "$PY" || echo "$PY")"   # a name on the PATH (python3) or a path
if [[ ! -x "$PY" ]]; then
    echo "no interpreter at $PY: run 'make setup' first, or set PYTHON=" >&2
    exit 2
fi
OUT="${OUT:-bench-out/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # bench.nets factories for Ray workers
export RAY_USAGE_STATS_ENABLED=0

if [[ $SMOKE == 1 ]]; then
    DEV=cpu
    NET=cnn32                      # ResNet-18 is too slow for a smoke run on 2 CPUs
    KERNELS=(--target-models cnn32 --target-repeats 1 --models cnn32 --attacks fgsm,pgd-linf-10
             --batch 16 --repeats 1)
    CURVE_NET=(--model cnn32 --samples 16 --repeats 1 --skip-minimal)
    CURVE_DIGITS=(--model digits --samples 32 --repeats 1 --skip-minimal)
    E2E_SET=(--set "dataset={factory: 'bench.nets:labelled_noise', kwargs: {n: 32, model: cnn32}, samples: 32, shard_size: 16}"
             --set "models=[{name: cnn32-random, factory: 'bench.nets:cnn32_net'}]"
             --set "attacks=[{name: fgsm}]" --replay 1)
    E2E_DEMO=(--set "dataset={name: digits, split: test, samples: 32, shard_size: 16}"
              --set "attacks=[{name: fgsm}, {name: deepfool, norm: l2}]")
    CHECK=(--samples 16 --attacks fgsm,pgd,deepfool)
    CELLS_NET=(--spec bench/specs/resnet18.yaml --samples 16 --shard-size 4)
    CELLS_DIGITS=(--samples 32)
    LIMIT=(120 120 120 120 120 120)
else
    DEV=cuda
    NET=resnet18
    KERNELS=(--target-models resnet18 --target-repeats 7 --models resnet18
             --attacks fgsm,pgd,apgd,cw,fmn,square,noise,deepfool --batch 512 --repeats 3)
    CURVE_NET=(--model resnet18 --samples 512 --repeats 3)
    CURVE_DIGITS=(--model digits --samples 898 --repeats 3)
    E2E_SET=()
    E2E_DEMO=()
    CHECK=(--samples 512)
    CELLS_NET=(--spec bench/specs/resnet18.yaml --samples 1024 --shard-size 64)
    CELLS_DIGITS=()
    LIMIT=(150 75 120 60 150 90)   # 150 + 2 x 75 + 120 + 60 + 150 + 2 x 90 = 810 s at most
fi

"$PY" - "$DEV" "$E2E" <<'EOF' || exit 2
import importlib, sys
needed = ["torch", "torchvision", "torchattacks", "pyarrow", "matplotlib", "sklearn", "sweep"]
needed += ["ray", "mlflow"] if sys.argv[2] == "1" else []
missing = [m for m in needed if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules {missing}: run 'make setup' (torchattacks: pip install --no-deps torchattacks==3.5.1)")
import torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch; use --smoke for the CPU check")
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(cpu)")
EOF
{ nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv; } \
    > "$OUT/gpu.txt" 2>&1 || echo "(no nvidia-smi)" > "$OUT/gpu.txt"
uptime > "$OUT/load-before.txt"

step() {  # step NAME LIMIT_S CMD...: run with a time limit, log to $OUT/NAME.log, go on on failure
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    if [[ $rc != 0 ]]; then echo "!! $name exited $rc (124: hit its time limit)" | tee -a "$OUT/failed.txt"; fi
}

START=$SECONDS
step cells "${LIMIT[5]}" "$PY" bench/cells.py --device "$DEV" "${CELLS_NET[@]}" --json "$OUT/cells.json"
step cells-digits "${LIMIT[5]}" "$PY" bench/cells.py --device "$DEV" "${CELLS_DIGITS[@]}" \
    --json "$OUT/cells-digits.json"
if [[ $CELLS_ONLY == 1 ]]; then
    echo "== done in $((SECONDS - START))s (--cells); results in $OUT"
    exit 0
fi
step cuda-check "${LIMIT[4]}" "$PY" bench/cuda_check.py --device "$DEV" "${CHECK[@]}" --json "$OUT/cuda-check.json"
step kernels "${LIMIT[0]}" "$PY" bench/kernels.py --device "$DEV" --variants "${KERNELS[@]}" \
    --json "$OUT/kernels.json"
step curve "${LIMIT[1]}" "$PY" bench/curve.py --device "$DEV" "${CURVE_NET[@]}" --json "$OUT/curve.json"
step curve-digits "${LIMIT[1]}" "$PY" bench/curve.py --device "$DEV" "${CURVE_DIGITS[@]}" \
    --json "$OUT/curve-digits.json"
if [[ $E2E == 1 ]]; then
    # Ray gives the worker the GPU; --workers is the CPU count of the local Ray instance
    step e2e "${LIMIT[2]}" "$PY" bench/e2e.py --spec bench/specs/resnet18.yaml --workers 4 "${E2E_SET[@]}" \
        --json "$OUT/e2e.json"
    step e2e-demo "${LIMIT[3]}" "$PY" bench/e2e.py --workers 4 "${E2E_DEMO[@]}" --replay 0 \
        --json "$OUT/e2e-demo.json"
else
    echo "== e2e steps skipped (--no-e2e)" | tee "$OUT/e2e-skipped.txt"
fi
"$PY" bench/figures.py "$OUT" || true
uptime > "$OUT/load-after.txt"
echo "== done in $((SECONDS - START))s ($NET on $DEV); results in $OUT"
ls -l "$OUT"

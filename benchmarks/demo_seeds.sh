#!/usr/bin/env bash
# `edmem demo` for several seeds, then mean ± sd of every hits@1 figure (docs/demo.md, "Seeds").
# Usage: benchmarks/demo_seeds.sh [OUT_ROOT] [extra `edmem demo` flags...]
#   env: SEEDS (default "0 1 2"), PYTHON (default .venv/bin/python),
#        PARALLEL=1 runs the seeds at the same time (wall time on a busy machine; each run still
#        uses one torch thread), NICE (default 10).
# Each seed writes OUT_ROOT/seed<N>/ (summary.json, summary.txt, ...); the table and
# OUT_ROOT/seeds.json come from benchmarks/demo_seeds_summary.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo_seeds}
shift || true
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0 1 2}
NICE=${NICE:-10}
mkdir -p "$OUT"
pids=()
for seed in $SEEDS; do
  cmd=(nice -n "$NICE" "$PY" -m edmem demo --output_dir "$OUT/seed$seed" --overwrite --seed "$seed" "$@")
  if [ "${PARALLEL:-0}" = 1 ]; then
    "${cmd[@]}" > "$OUT/seed$seed.log" 2>&1 &
    pids+=($!)
  else
    echo "seed $seed ..." >&2
    "${cmd[@]}" > "$OUT/seed$seed.log" 2>&1
  fi
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if [ "$status" != 0 ]; then echo "a seed's run failed; see $OUT/seed*.log" >&2; exit 1; fi
summaries=()
for seed in $SEEDS; do summaries+=("$OUT/seed$seed/summary.json"); done
"$PY" benchmarks/demo_seeds_summary.py --json "$OUT/seeds.json" "${summaries[@]}"

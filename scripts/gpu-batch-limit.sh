#!/usr/bin/env bash
# Reproduces and pins issue 16's "batch 256 aborts the process" on the GPU machine (docs/PERFORMANCE.md,
# "Batch 256 aborted the process"). Small mode, synthetic weights, bf16, 32 new tokens, one H100, ~3 minutes:
#   1. bench --batch 200,256 with the CUDA-graph decode step (one process; 200 first). A binary without the
#      guard aborts at 256 (exit 134, "Rust cannot catch foreign exceptions"); one with it runs both.
#   2. bench --batch 256 --no-cuda-graph: the same batch decoded eagerly (expected to run with any binary:
#      thrust's scan may allocate and synchronise outside a capture).
#   3. if step 1 failed and gdb exists: the failing batch again under gdb, every C++ throw stopped with its
#      backtrace (then continued), and the abort's backtrace: the throwing frame
#      (expected: thrust::inclusive_scan in calculate_expert_offsets, moe_gemm_wmma, candle-kernels' moe_utils.cuh).
# Binary: $CB (default /tmp/cb), unpacked from .dist/cb.xz when that exists (as scripts/gpu-train.sh does).
# Everything goes under $OUT (log.txt, bench-*.txt, gdb.txt, verdict.txt). Exit status 0 when batch 256 ran with
# the graph, 1 otherwise.
# Use (repository root, on the device):  scripts/gpu-batch-limit.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
CB=${CB:-/tmp/cb}
LIMIT=${LIMIT:-150}
mkdir -p "$OUT"
if [ -f .dist/cb.xz ]; then xz -dc .dist/cb.xz > "$CB" && chmod +x "$CB"; fi
test -x "$CB" || { echo "no binary at $CB (and no .dist/cb.xz)" | tee "$OUT/verdict.txt"; exit 2; }
log() { echo "$*" | tee -a "$OUT/log.txt"; }
: > "$OUT/log.txt"
log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
log "binary: $CB sha256 $(sha256sum "$CB" | cut -c1-16); guard strings: $(strings "$CB" | grep -c 'captured into a CUDA graph')"
ARGS=(bench --synthetic-weights full --device cuda --dtype bf16 --modes small --new-tokens 32 --warmup 0
      --encoder-batch 0)
export RUST_BACKTRACE=1
bench() { # NAME FLAGS...: one bench process, its output in $OUT/bench-NAME.txt, its exit status in rc_NAME
  local name=$1; shift
  timeout "$LIMIT" "$CB" "${ARGS[@]}" --out "/tmp/bl-$name" "$@" > "$OUT/bench-$name.txt" 2>&1
  local rc=$?
  eval "rc_$name=$rc"
  log "== bench $name ($*): exit $rc"
  grep -E 'batch +[0-9]+ |fatal runtime|terminate called|error|Error|warn' "$OUT/bench-$name.txt" | head -20 | tee -a "$OUT/log.txt"
}
bench graph --batch 200,256
bench eager --batch 256 --no-cuda-graph
if [ "$rc_graph" -ne 0 ] && command -v gdb > /dev/null; then
  cat > /tmp/bl.gdb <<'EOF'
set pagination off
set print thread-events off
catch throw
commands
  bt 40
  continue
end
catch signal SIGABRT
commands
  bt 40
end
run
bt 40
EOF
  log "== gdb: batch 256 with the graph, every throw and the abort"
  timeout "$LIMIT" gdb -batch -x /tmp/bl.gdb --args "$CB" "${ARGS[@]}" --out /tmp/bl-gdb --batch 256 > "$OUT/gdb.txt" 2>&1
  log "gdb exit $?; throwing frames:"
  grep -E -A10 'in __cxa_throw' "$OUT/gdb.txt" | grep -E '^#[0-9]+ ' | cut -c1-220 | head -40 | tee -a "$OUT/log.txt"
elif [ "$rc_graph" -ne 0 ]; then
  log "gdb not found: no throwing frame (the abort's message is in bench-graph.txt)"
fi
if [ "$rc_graph" -eq 0 ]; then
  verdict="batch 200 and 256 ran with the CUDA graph (guarded binary); eager 256: exit $rc_eager"
else
  verdict="batch 256 with the CUDA graph failed (exit $rc_graph); eager 256: exit $rc_eager"
fi
log "verdict: $verdict"
echo "$verdict" > "$OUT/verdict.txt"
[ "$rc_graph" -eq 0 ]

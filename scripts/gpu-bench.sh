#!/usr/bin/env bash
# GPU speed benchmark: `compress-bench bench` and the PyTorch reference (tests/reference/bench_reference.py) in the same
# GPU run, then the comparison table (tests/reference/perf_table.py).
#
# Run from the repository root on the GPU machine (no network). Expects the git-ignored folders
#   .dist/cb.xz   our binary, xz-compressed (built with --features cuda)
#   .whl/         wheels for the reference: transformers 4.46.3, tokenizers, huggingface_hub, addict, easydict
#   ref/          reference code (ref/dsocr/*.py), config.json, tokenizer files (tokenizer.json or .json.gz)
# Writes under $OUT (default /tmp/out), five files: ours.json (JSON Lines of `compress-bench --json`), ref.json,
# perf_table.md, PERFORMANCE.md (docs/PERFORMANCE.md with the table block updated) and log.txt (everything
# printed, environment first).
# Environment overrides: MODES (tiny,small,base), BATCHES (1,32), NEW_TOKENS (512), REF_MODES ($MODES),
# ENCODER_BATCH (32), WARMUP (1), NO_REPEAT_NGRAM (0 = off; 20 = infer's blocker, `--ngram hf` on our side),
# REF_EXTRA / OURS_EXTRA (extra flags, split on spaces).
# Each stage's failure is reported and the next stages still run where they can; exit status 1 if any failed.
set -euo pipefail

OUT=${OUT:-/tmp/out}
MODES=${MODES:-tiny,small,base}
BATCHES=${BATCHES:-1,32}
NEW_TOKENS=${NEW_TOKENS:-512}
REF_MODES=${REF_MODES:-$MODES}
ENCODER_BATCH=${ENCODER_BATCH:-32}
WARMUP=${WARMUP:-1}
NO_REPEAT_NGRAM=${NO_REPEAT_NGRAM:-0}
REF_EXTRA=${REF_EXTRA:-}
OURS_EXTRA=${OURS_EXTRA:-}
CB=/tmp/cb
SITE=/tmp/site
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: > "$OUT/log.txt"

FAILED=()
say() { echo "$*" | tee -a "$OUT/log.txt"; }
# stage NAME FUNCTION: runs FUNCTION with its output shown and appended to $OUT/log.txt. The functions run
# in a pipeline (a subshell where `set -e` does not apply), so they chain their steps with `|| return`.
stage() {
  local name=$1 rc=0 t0=$SECONDS
  shift
  say "=== [$name] start $(date -u +%H:%M:%S)"
  "$@" 2>&1 | tee -a "$OUT/log.txt" || rc=$?
  if [ "$rc" -eq 0 ]; then
    say "=== [$name] ok in $((SECONDS - t0)) s"
  else
    say "=== [$name] FAILED (exit $rc) after $((SECONDS - t0)) s"
    FAILED+=("$name")
  fi
  return "$rc"
}

environment() {
  date -u
  nvidia-smi || echo "nvidia-smi failed"
  python3 --version
  python3 -c 'import torch, PIL
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("PIL", PIL.__version__)
try:
    import transformers; print("transformers", transformers.__version__, transformers.__file__)
except Exception as e:
    print("transformers: not importable:", e)'
  git rev-parse HEAD 2>/dev/null || true
  git status --short 2>/dev/null | head -20 || true
  echo "MODES=$MODES BATCHES=$BATCHES NEW_TOKENS=$NEW_TOKENS REF_MODES=$REF_MODES"
  echo "ENCODER_BATCH=$ENCODER_BATCH WARMUP=$WARMUP NO_REPEAT_NGRAM=$NO_REPEAT_NGRAM"
}

setup_binary() {
  xz -dc .dist/cb.xz > "$CB" || return
  chmod +x "$CB" || return
  "$CB" --version
}

setup_python() {
  if [ ! -f ref/tokenizer.json ]; then gunzip -kf ref/tokenizer.json.gz || return; fi
  python3 -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl || return
  PYTHONPATH=$SITE python3 -c 'import transformers as t; print("transformers", t.__version__, "from", t.__file__)'
}

# REF_EXTRA / OURS_EXTRA are split into words on purpose.
# shellcheck disable=SC2206
ref_cmd=(python3 tests/reference/bench_reference.py --reference-dir ref --out "$OUT/ref.json"
         --modes "$REF_MODES" --new-tokens "$NEW_TOKENS" --warmup "$WARMUP" --encoder-batch "$ENCODER_BATCH"
         --no-repeat-ngram "$NO_REPEAT_NGRAM" $REF_EXTRA)
# `--ngram hf` is transformers' no_repeat_ngram_size 20, what the reference gets from NO_REPEAT_NGRAM=20.
ours_ngram=none
if [ "$NO_REPEAT_NGRAM" != 0 ]; then ours_ngram=hf; fi
# shellcheck disable=SC2206
ours_cmd=("$CB" bench --synthetic-weights full --device cuda --dtype bf16 --modes "$MODES" --batch "$BATCHES"
          --new-tokens "$NEW_TOKENS" --warmup "$WARMUP" --encoder-batch "$ENCODER_BATCH" --ngram "$ours_ngram"
          --json $OURS_EXTRA)

reference_bench() {
  rm -f "$OUT/ref.json"
  echo "+ ${ref_cmd[*]}"
  "${ref_cmd[@]}"
}

ours_bench() {
  rm -f "$OUT/ours.json"
  echo "+ ${ours_cmd[*]} > $OUT/ours.json"
  # stdout is JSON Lines (a `bench` message, `warning`s, an `error` on failure): kept whatever the exit status
  local rc=0
  "${ours_cmd[@]}" > "$OUT/ours.json" || rc=$?
  cat "$OUT/ours.json"
  [ "$rc" -eq 0 ] || return "$rc"
  python3 tests/reference/perf_table.py --ours "$OUT/ours.json" > /dev/null
}

table() {
  local args=()
  if [ -s "$OUT/ours.json" ]; then args+=(--ours "$OUT/ours.json"); fi
  if [ -s "$OUT/ref.json" ]; then args+=(--reference "$OUT/ref.json"); fi
  cp docs/PERFORMANCE.md "$OUT/PERFORMANCE.md" || return
  python3 tests/reference/perf_table.py "${args[@]}" \
    --command "MODES=$MODES BATCHES=$BATCHES NEW_TOKENS=$NEW_TOKENS scripts/gpu-bench.sh" \
    --command "${ref_cmd[*]}" --command "${ours_cmd[*]}" \
    --update "$OUT/PERFORMANCE.md" > "$OUT/perf_table.md" || return
  cat "$OUT/perf_table.md"
}

environment 2>&1 | tee -a "$OUT/log.txt" || true
stage setup_python setup_python || true
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
# The reference first (a failure there does not stop ours); each bench has the GPU to itself.
stage reference reference_bench || true
if stage setup_binary setup_binary; then stage ours ours_bench || true; else FAILED+=(ours); fi
stage table table || true

say "=== outputs in $OUT:"
ls -l "$OUT"
if [ "${#FAILED[@]}" -gt 0 ]; then
  say "=== FAILED stages: ${FAILED[*]}"
  exit 1
fi
say "=== all stages ok"

#!/usr/bin/env bash
# One training call on the GPU machine (docs/TRAINING.md, docs/GPU.md): unpacks the carried binary,
# restores the carried checkpoint if there is one, trains for at most $TIME_LIMIT seconds, and puts
# what the next call needs into $OUT within the machine's limits (files <= 16 MiB, 64 MiB in all):
# the latest checkpoint's reader files (weights split into 15 MiB parts), its state.json, the
# journals and curves. The optimiser state (2x the weights) does not fit, so the next call resumes
# with a documented warm restart (occ_train::checkpoint).
#
# Use (on the device, from the repository root):
#   CONFIG=experiments/train/mini-s.toml TIME_LIMIT=540 scripts/gpu-train.sh
# Carried: .dist/cb.xz (the CUDA build of compress-bench), and optionally .ckpt/ (a previous call's
# $OUT, the same file names).
set -euo pipefail
CONFIG=${CONFIG:?set CONFIG=experiments/train/<name>.toml}
TIME_LIMIT=${TIME_LIMIT:-540}
RUN=${RUN:-/tmp/run}
OUT=${OUT:?run on the device machine, where OUT is set}
xz -dc .dist/cb.xz > /tmp/cb && chmod +x /tmp/cb
mkdir -p "$RUN"
resume=()
if [ -f .ckpt/state.json ]; then
  step=$(python3 -c 'import json,sys; print(json.load(open(".ckpt/state.json"))["step"])')
  name=$(printf 'ckpt-%07d' "$step")
  mkdir -p "$RUN/$name"
  cat .ckpt/model.safetensors.part-* > "$RUN/$name/model.safetensors"
  cp .ckpt/state.json .ckpt/mini.json .ckpt/vocab.json "$RUN/$name/"
  for f in train_log.jsonl eval_log.jsonl; do [ -f ".ckpt/$f" ] && cp ".ckpt/$f" "$RUN/"; done
  printf '%s' "$name" > "$RUN/latest"
  resume=(--resume)
  echo "resuming from step $step (weights only: warm restart)"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
set +e
/tmp/cb train --config "$CONFIG" --out "$RUN" --device cuda --time-limit "$TIME_LIMIT" "${resume[@]}" ${EXTRA:-} 2>&1 | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
set -e
latest=$(cat "$RUN/latest")
split -b 15M -d "$RUN/$latest/model.safetensors" "$OUT/model.safetensors.part-"
cp "$RUN/$latest/state.json" "$RUN/$latest/mini.json" "$RUN/$latest/vocab.json" "$OUT/"
for f in train_log.jsonl eval_log.jsonl curves.parquet eval.parquet; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
ls -la "$OUT"
exit "$rc"

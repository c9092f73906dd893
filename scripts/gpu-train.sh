#!/usr/bin/env bash
# One training call on the GPU machine (docs/TRAINING.md). A call may run 10 minutes and bring back
# 64 MiB in files of at most 16 MiB, and the working tree it is sent with is limited to 64 MiB, so:
#
# - A fresh run trains STEPS steps under the time limit when STEPS is given; otherwise it trains
#   20 steps, measures the step time, sets the schedule's length (--steps) so that CALLS calls of
#   TIME_LIMIT seconds finish it, and resumes exactly (optimiser state on the local disk).
# - On a warm machine (the previous call's run folder still in $RUN: calls within ~30 s of each
#   other get the same machine), the run resumes exactly from its latest checkpoint (float32
#   weights and AdamW state), whatever .ckpt/ holds.
# - Otherwise a resumed run (a previous call's $OUT carried as .ckpt/) restores the weights, which travel in
#   bf16 (the f32 weights and the optimiser state do not fit the limits), and continues with a warm
#   restart (zero moments, learning rate re-warmed over 50 steps; occ_train::checkpoint).
# - $OUT gets the latest checkpoint's reader in bf16 (weights split into 15 MiB parts) and
#   meta.tar.gz (state.json, mini.json, vocab.json, journals, curves, the log); unpacked together
#   into .ckpt/ they are what the next call resumes from.
#
# Use (on the device, from the repository root, with .dist/cb.xz = the CUDA build of compress-bench):
#   CONFIG=experiments/train/mini-s.toml TIME_LIMIT=540 CALLS=2 scripts/gpu-train.sh
#   CONFIG=experiments/train/mini-s.toml INIT=.init STEPS=4000 scripts/gpu-train.sh   (from a 128-px reader)
#   RUN=/tmp/run256 INIT=/tmp/run CONFIG=… scripts/gpu-train.sh   (warm machine: from the last call's run)
set -euo pipefail
CONFIG=${CONFIG:?set CONFIG=experiments/train/<name>.toml}
TIME_LIMIT=${TIME_LIMIT:-540}
CALLS=${CALLS:-1}
RUN=${RUN:-/tmp/run}
OUT=${OUT:?run on the device machine, where OUT is set}
start=$(date +%s)
# a warm machine keeps the previous call's binary: a call may leave .dist/cb.xz behind to carry other files
if [ -f .dist/cb.xz ]; then xz -dc .dist/cb.xz > /tmp/cb && chmod +x /tmp/cb; else test -x /tmp/cb; fi
META=/tmp/meta
rm -rf /tmp/export
mkdir -p "$RUN" "$META"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU"; } | tee "$META/device.txt"
# INIT=DIR: a fresh run starts from that reader's weights (`train --init`: another page side, the
# same model otherwise); DIR may hold the weights as model.safetensors.part-* (as $OUT brings them)
# or be the previous call's run folder on a warm machine (then set RUN to another folder).
INIT_ARGS=()
if [ -n "${INIT:-}" ]; then
  if [ -f "$INIT/latest" ] || [ -f "$INIT/model.safetensors" ]; then
    INIT_ARGS=(--init "$INIT")  # a run folder (its latest checkpoint, float32) or a reader folder
  else
    rm -rf /tmp/init && mkdir -p /tmp/init && cp "$INIT"/mini.json "$INIT"/vocab.json /tmp/init/
    cat "$INIT"/model.safetensors.part-* > /tmp/init/model.safetensors
    INIT_ARGS=(--init /tmp/init)
  fi
fi
cb_train() { /tmp/cb train --config "$CONFIG" --out "$RUN" --device "${DEVICE:-cuda}" --export /tmp/export "$@" 2>&1 | tee -a "$META/train.log"; }
steps_of() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s[sys.argv[2]] if sys.argv[2] in s else s["config"]["optim"]["steps"])' "$@"; }
set +e
if [ -f "$RUN/latest" ]; then
  step=$(steps_of "$RUN/$(cat "$RUN/latest")/state.json" step)
  total=${STEPS:-$(steps_of "$RUN/$(cat "$RUN/latest")/state.json" total)}
  echo "warm machine: resuming exactly from step $step of $total" | tee -a "$META/train.log"
  left=$(( TIME_LIMIT - ($(date +%s) - start) - 45 ))
  cb_train --resume --steps "$total" --time-limit "$left"
  rc=${PIPESTATUS[0]}
elif [ -f .ckpt/state.json ]; then
  step=$(steps_of .ckpt/state.json step)
  total=${STEPS:-$(steps_of .ckpt/state.json total)}
  name=$(printf 'ckpt-%07d' "$step")
  mkdir -p "$RUN/$name"
  cat .ckpt/model.safetensors.part-* > "$RUN/$name/model.safetensors"
  cp .ckpt/state.json .ckpt/mini.json .ckpt/vocab.json "$RUN/$name/"
  for f in train_log.jsonl eval_log.jsonl; do [ -f ".ckpt/$f" ] && cp ".ckpt/$f" "$RUN/"; done
  printf '%s' "$name" > "$RUN/latest"
  echo "resuming from step $step of $total (weights carried in bf16: warm restart)" | tee -a "$META/train.log"
  left=$(( TIME_LIMIT - ($(date +%s) - start) - 45 ))
  cb_train --resume --steps "$total" --time-limit "$left"
  rc=${PIPESTATUS[0]}
elif [ -n "${RESUME_ONLY:-}" ]; then
  # a call that carries no checkpoint (to carry other files) must not start a new run on a fresh machine
  echo "RESUME_ONLY: no run on this machine and no .ckpt/ to resume from; not starting a new run" | tee -a "$META/train.log"
  rc=3
elif [ -n "${STEPS:-}" ]; then
  # the schedule's length is given: no probe. Out of device memory before the first checkpoint:
  # every batch size in the config is halved and the run starts again (at most twice).
  for attempt in 1 2 3; do
    left=$(( TIME_LIMIT - ($(date +%s) - start) - 45 ))
    cb_train --steps "$STEPS" --time-limit "$left" "${INIT_ARGS[@]}"
    rc=${PIPESTATUS[0]}
    # the error line is followed by a backtrace, so the whole log is searched
    if [ "$rc" -eq 0 ] || [ -f "$RUN/latest" ] || ! grep -qi "out of memory" "$META/train.log"; then break; fi
    python3 - "$CONFIG" /tmp/config-halved.toml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(re.sub(r"(?m)^batch = (\d+)", lambda m: f"batch = {max(1, int(m.group(1)) // 2)}", text))
PY
    CONFIG=/tmp/config-halved.toml
    rm -rf "$RUN"; mkdir -p "$RUN"
    echo "out of device memory: batch sizes halved, starting again" | tee -a "$META/train.log"
  done
else
  cb_train --stop-at 20 "${INIT_ARGS[@]}"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    per_step=$(python3 -c 'import json; r=[json.loads(l) for l in open("'"$RUN"'/train_log.jsonl")]; t=[x["seconds"] for x in r if x["step"]>10]; print(sum(t)/len(t))')
    left=$(( TIME_LIMIT - ($(date +%s) - start) - 45 ))
    total=${STEPS:-$(python3 -c "print(max(40, 20 + int(($left - 40) / $per_step) + ($CALLS - 1) * int(($TIME_LIMIT - 60) / $per_step)))")}
    echo "measured ${per_step} s/step; schedule: $total steps over $CALLS call(s)" | tee -a "$META/train.log"
    cb_train --resume --steps "$total" --time-limit "$left"
    rc=${PIPESTATUS[0]}
  fi
fi
set -e
if [ -f /tmp/export/model.safetensors ]; then
  split -b 15M -d /tmp/export/model.safetensors "$OUT/model.safetensors.part-"
  cp /tmp/export/mini.json /tmp/export/vocab.json "$META/"
  python3 - "$RUN" "$META" <<'PY'
import json, sys, os
run, out = sys.argv[1:]
latest = open(os.path.join(run, "latest")).read().strip()
s = json.load(open(os.path.join(run, latest, "state.json")))
s["total"] = s["config"]["optim"]["steps"]
json.dump(s, open(os.path.join(out, "state.json"), "w"), indent=1)
PY
fi
for f in train_log.jsonl eval_log.jsonl curves.parquet eval.parquet loss.svg precision.svg; do
  [ -f "$RUN/$f" ] && cp "$RUN/$f" "$META/"
done
# at most 8 files come back: the weight parts and one archive of everything else
tar -czf "$OUT/meta.tar.gz" -C "$META" .
ls -la "$OUT"
exit "$rc"

#!/usr/bin/env bash
# DeepSeek-OCR-2 full-size parity and speed on the GPU, ours beside transformers' implementation in the same
# device call (docs/PARITY.md, "DeepSeek-OCR-2").
#
# Run from the repository root on the GPU machine (no network needed), with transformers >= 5.17 importable
# (installed, or a source tree given as --transformers-dir) and torch with CUDA:
#
#   scripts/gpu-v2-parity.sh [--transformers-dir DIR] [--recipe 1|2] [--steps 256] [--batch 8] [--out DIR]
#
# 1. scripts/gpu_v2_parity.py: transformers' DeepseekOcr2ForConditionalGeneration at the released shapes on
#    synthetic weights (recipe, seed 0, filled under the original checkpoint names), f32 on CUDA with TF32
#    off: per page (square 640² = no tiles, portrait 600×848 = 2×3 tiles, wide 1700×620 = 3×1 tiles) the
#    laid-out vision rows, `generate` greedy STEPS tokens (no EOS stop, no blocker) with their logits, its
#    own bf16 teacher-forced on that sequence (the yardstick), and its bf16 speed (vision tower, prefill,
#    batch-1 decode tok/s, batched pages/s).
# 2. the ignored test ocr2::v2_full_size_gpu_parity (crates/model/tests/ocr2.rs): f32 rows rel <= 1e-4 and
#    f32 greedy identical for all STEPS tokens on every page (fails otherwise); bf16 teacher-forced argmax
#    agreement and min cosine against transformers' f32 and its own bf16; our bf16 prefill, decode tok/s and
#    batched pages/s. Writes OUT/rust_report.json.
#
# The test binary: built here with `cargo test --release -p occ-model --features cuda --test ocr2 --no-run`,
# or given prebuilt as OCC_V2_TEST_BIN (e.g. built elsewhere and carried; source scripts/cuda-toolchain.sh to
# build without a GPU). Large files (logits, 132 MB per page at 256 steps) stay in OUT; set OUT under $OUT of
# the device call to bring the JSON back.
set -euo pipefail

OUT=${OUT:-/tmp/v2-parity}
RECIPE=1
STEPS=256
BATCH=8
TDIR=()
while [ $# -gt 0 ]; do
  case $1 in
    --transformers-dir) TDIR=(--transformers-dir "$2"); shift 2 ;;
    --recipe) RECIPE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; python3 -c 'import torch, PIL; print("torch", torch.__version__, "PIL", PIL.__version__)'; } | tee "$OUT/env.txt"

python3 scripts/gpu_v2_parity.py --out "$OUT" "${TDIR[@]}" --recipe "$RECIPE" --steps "$STEPS" --batch "$BATCH" \
  2>&1 | tee "$OUT/reference.log"

if [ -n "${OCC_V2_TEST_BIN:-}" ]; then
  OCC_V2_PARITY_DIR="$OUT" "$OCC_V2_TEST_BIN" v2_full_size_gpu_parity --ignored --nocapture 2>&1 | tee "$OUT/rust.log"
else
  OCC_V2_PARITY_DIR="$OUT" cargo test --release -p occ-model --features cuda --test ocr2 v2_full_size_gpu_parity \
    -- --ignored --nocapture 2>&1 | tee "$OUT/rust.log"
fi
echo "reports: $OUT/meta.json (transformers) and $OUT/rust_report.json (ours)"

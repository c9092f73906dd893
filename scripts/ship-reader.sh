#!/usr/bin/env bash
# Ships a trained reader: its weights, config and vocabulary into DEST (default models/occ-mini-s,
# the reader `--engine mini` uses when no --weights is given), the held-out curve beside Tesseract
# on the same pages, and a model card (DEST/README.md) written from the run's own records.
#
#   scripts/ship-reader.sh READER META [DEST]
#
# READER  a reader folder: mini.json, vocab.json and model.safetensors (or model.safetensors.part-*,
#         as scripts/gpu-train.sh brings them back), e.g. `train --export DIR`'s output
# META    the run's records: state.json, train_log.jsonl, eval_log.jsonl, loss.svg, precision.svg
#         and device.txt (a gpu-train.sh call's meta.tar.gz unpacked, or the run folder itself)
# DEST    where the reader goes (default models/occ-mini-s)
#
# Environment: CB (the compress-bench binary; default: `cargo run --release -p compress-bench --`),
# PAGES (pages per ratio of the held-out sweep; default 20), RATIOS (default 2,5,10,15,20,25),
# HISTORY (extra run records to sum the training cost over: META folders of earlier stages, e.g. a
# page-size curriculum's first stage, space separated).
#
# The held-out pages are the test split (datasets/en.jsonl: no training or validation passage shares
# a 200-character run with it, datasets/train/splits.toml). Nothing here needs a GPU or a network.
set -euo pipefail
READER=${1:?usage: scripts/ship-reader.sh READER META [DEST]}
META=${2:?usage: scripts/ship-reader.sh READER META [DEST]}
DEST=${3:-models/occ-mini-s}
PAGES=${PAGES:-20}
RATIOS=${RATIOS:-2,5,10,15,20,25}
if [ -n "${CB:-}" ]; then cb=("$CB"); else cb=(cargo run --release -q -p compress-bench --); fi
root=$(cd "$(dirname "$0")/.." && pwd)

for f in mini.json vocab.json; do
  [ -f "$READER/$f" ] || { echo "ship-reader: $READER/$f is missing (a reader folder has mini.json, vocab.json, model.safetensors)" >&2; exit 2; }
done
for f in state.json train_log.jsonl eval_log.jsonl; do
  [ -f "$META/$f" ] || { echo "ship-reader: $META/$f is missing (the run's records)" >&2; exit 2; }
done

tmp="$DEST.partial-$$"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$READER/mini.json" "$READER/vocab.json" "$tmp/"
if [ -f "$READER/model.safetensors" ]; then
  cp "$READER/model.safetensors" "$tmp/"
else
  cat "$READER"/model.safetensors.part-* > "$tmp/model.safetensors"
fi
size=$(stat -c %s "$tmp/model.safetensors")
if [ "$size" -gt 20000000 ]; then
  echo "ship-reader: $tmp/model.safetensors is $size bytes, above the 20 MB a committed file may have" >&2
  exit 2
fi
for f in loss.svg precision.svg device.txt; do [ -f "$META/$f" ] && cp "$META/$f" "$tmp/"; done
cp "$META/state.json" "$tmp/training-state.json"
cp "$META/eval_log.jsonl" "$tmp/eval_log.jsonl"
cp "$META/train_log.jsonl" "$tmp/train_log.jsonl"

canvas=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["canvas"])' "$tmp/mini.json")
mode="custom:${canvas}x${canvas}"
out="$tmp/heldout"
mkdir -p "$out"
echo "ship-reader: held-out sweep of the reader ($mode, ratios $RATIOS, $PAGES pages each), Tesseract on the same pages" >&2
"${cb[@]}" sweep --engine mini --weights "$tmp" --baseline tesseract --modes "$mode" --ratios "$RATIOS" \
  --pages "$PAGES" --out "$out" --name heldout --quiet
mini_run=$(ls -d "$out"/heldout/*/ | head -1)
tess_run="$mini_run/baseline-tesseract"

python3 "$root/scripts/model_card.py" --reader "$tmp" --mini-run "$mini_run" --tesseract-run "$tess_run" \
  --history "${HISTORY:-}" --name "$(basename "$DEST")" > "$tmp/README.md"
# the sweeps' page images and journals stay out of the shipped folder: only their summaries
mkdir -p "$tmp/heldout-summary"
cp "$mini_run/summary.csv" "$tmp/heldout-summary/mini-summary.csv"
cp "$tess_run/summary.csv" "$tmp/heldout-summary/tesseract-summary.csv"
# the comparison's report and charts (both readers' curves on shared axes, paired differences)
find "$mini_run/compare" \( -name '*.svg' -o -name 'compare.md' -o -name 'paired.csv' \) -exec cp {} "$tmp/heldout-summary/" \;
rm -rf "$out"
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "ship-reader: $DEST (model card: $DEST/README.md)" >&2

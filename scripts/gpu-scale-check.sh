#!/usr/bin/env bash
# On a GPU machine: `sweep --gpus 0` (one worker process on GPU 0, shard 1/1, merged) equals a plain
# `sweep --device cuda` run of the same spec (docs/SCALE.md). Compares the two runs' journals sample by
# sample without the volatile fields (run id, timings) and their summary.csv byte for byte, and with
# several GPUs also `--gpus all` (its shards batch other pages together, so only the counts and sample
# indices are compared there: bf16 greedy text may differ with the batch). Exit 0 when equal.
#
# Usage (repository root, on the device): CB=/tmp/cb scripts/gpu-scale-check.sh
#   CB       the compress-bench binary built with --features cuda (default /tmp/cb)
#   OUT      where the runs and check.json go (default /tmp/scale-check)
#   SWEEP    the sweep flags (default: synthetic full-size DeepSeek-OCR weights, 2 modes x 2 ratios x 2 pages)
set -euo pipefail
CB="${CB:-/tmp/cb}"
OUT="${OUT:-/tmp/scale-check}"
read -r -a SWEEP <<< "${SWEEP:---engine deepseek-ocr --synthetic-weights full --modes tiny,small --ratios 8,12 --pages 2 --max-new-tokens 64 --datasets datasets --name gpucheck --no-report}"
rm -rf "$OUT/plain" "$OUT/gpus0" "$OUT/gpusall"
mkdir -p "$OUT"
nvidia-smi -L
t0=$(date +%s.%N)
"$CB" --progress-interval 0 sweep "${SWEEP[@]}" --device cuda --out "$OUT/plain"
t1=$(date +%s.%N)
"$CB" --progress-interval 0 sweep "${SWEEP[@]}" --gpus 0 --out "$OUT/gpus0"
t2=$(date +%s.%N)
ngpu=$(nvidia-smi -L | wc -l)
if [ "$ngpu" -gt 1 ]; then
  "$CB" --progress-interval 0 sweep "${SWEEP[@]}" --gpus all --out "$OUT/gpusall"
fi
python3 - "$OUT" "$t0" "$t1" "$t2" "$ngpu" <<'EOF'
import glob, json, os, sys
out, t0, t1, t2, ngpu = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def run(root):
    dirs = [d for d in glob.glob(f"{root}/gpucheck/*") if os.path.isfile(f"{d}/manifest.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]
def stable(d):
    rows = {}
    for line in open(f"{d}/journal.jsonl"):
        e = json.loads(line)
        for part in e.values():
            for k in list(part):
                if k == "run_id" or k.endswith("_ms"):
                    del part[k]
        rows[e["sample"]["sample_index"]] = e
    return rows
plain, gpus0 = run(f"{out}/plain"), run(f"{out}/gpus0")
a, b = stable(plain), stable(gpus0)
same_rows = a == b
same_summary = open(f"{plain}/summary.csv").read() == open(f"{gpus0}/summary.csv").read()
report = {"plain": plain, "gpus0": gpus0, "samples": len(a), "rows_equal": same_rows,
          "summary_equal": same_summary, "plain_s": round(t1 - t0, 1), "gpus0_s": round(t2 - t1, 1), "gpus": ngpu}
if ngpu > 1:
    c = stable(run(f"{out}/gpusall"))
    report["gpus_all_indices_equal"] = sorted(c) == sorted(a)
    report["gpus_all_rows_equal"] = c == a
json.dump(report, open(f"{out}/check.json", "w"), indent=1)
print(json.dumps(report, indent=1))
sys.exit(0 if same_rows and same_summary and report.get("gpus_all_indices_equal", True) else 1)
EOF

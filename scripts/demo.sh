#!/usr/bin/env bash
# The main job on the embedded sample: run `real` and `static` on hdtf-mini, score them with every metric
# whose weights are available (the others are listed as skipped with the command that fetches them),
# and write the paper-style report. Offline this still gives real numbers: FPS, CPBD, offline head pose
# (dlib 68 landmarks) and offline identity (dlib ResNet), plus every network metric whose weights you fetched.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_out}
KDB="$PY -m kdbench"
# metric options that keep the CPU demo to minutes; drop them (or use --device cuda) for the full protocol
EVAL_SETS=${EVAL_SETS:-"--set diversity.max_frames=8"}

echo "== dataset"
$KDB data verify hdtf-mini
for m in real static; do
  echo "== run $m"
  $KDB run --method "$m" --dataset hdtf-mini --out "$OUT/runs/$m" -q
done
for m in real static; do
  echo "== eval $m"
  $KDB eval "$OUT/runs/$m" $EVAL_SETS -q
done
echo "== report"
$KDB report "$OUT/runs/real" "$OUT/runs/static" --out "$OUT/report" --compare-paper
echo
echo "report: $OUT/report (table.md, table.tex, table.csv, report.html, figures/)"

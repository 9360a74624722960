#!/usr/bin/env bash
# The whole pipeline on the bundled sample data, on the CPU, in a few minutes.
# Usage: scripts/demo.sh OUT [WORKERS]
set -euo pipefail
OUT=${1:-demo-out}
WORKERS=${2:-2}
RSSN=${RSSN:-.venv/bin/rssn}
export RSSN_PROGRESS=${RSSN_PROGRESS:-1}
mkdir -p "$OUT"
step() { printf '\n==> %s\n' "$*"; }

step "sample data (procedural animals with hair-like alpha, HD background photos)"
$RSSN sample-data "$OUT/sample"

step "build-bg: HD filter, resize to 1080 px short side, duplicates, split (no detector weights offline)"
$RSSN build-bg "$OUT/sample/photos" --out "$OUT/backgrounds" --detector none --workers "$WORKERS"

step "prepare: splits, foreground estimates, BM3D-denoised foregrounds (fast profile)"
$RSSN prepare "$OUT/sample/am2k" --out "$OUT/prepared" --categories "$OUT/sample/am2k/categories.json" \
    --denoise --denoise-profile fast --workers "$WORKERS"

step "denoise: BM3D-denoised backgrounds into the same cache"
$RSSN denoise "$OUT/backgrounds" --cache "$OUT/prepared/denoise" --profile fast --max-side 480 --workers "$WORKERS"

step "compose: RSSN composites as webdataset shards"
$RSSN compose --matting "$OUT/prepared" --backgrounds "$OUT/backgrounds/train" --out "$OUT/shards" \
    --per-fg 4 --shard-size 8 --bg-denoise-max-side 480 --workers "$WORKERS"

step "compose: the plain-blending baseline from the same foregrounds"
$RSSN compose --matting "$OUT/prepared" --backgrounds "$OUT/backgrounds/train" --out "$OUT/shards-plain" \
    --route plain --per-fg 4 --shard-size 8 --workers "$WORKERS"

step "inspect: route statistics and a contact sheet"
$RSSN inspect "$OUT/shards" --grid "$OUT/shards/contact_sheet.png"

step "gap: how far each composite set is from the real photos"
$RSSN gap "$OUT/shards" --reference "$OUT/sample/am2k" --out "$OUT/gap-rssn" --workers "$WORKERS"
$RSSN gap "$OUT/shards-plain" --reference "$OUT/sample/am2k" --out "$OUT/gap-plain" --workers "$WORKERS"

step "train: a tiny GFM-TT on the RSSN shards for 30 steps (CPU; real runs use --backbone r34_2b)"
$RSSN train --shards "$OUT/shards" --backbone tiny --rosta TT --steps 30 --batch-size 4 --size 160 --lr 1e-3 \
    --workers 0 --threads 1 --log-every 2 --out "$OUT/run"

step "eval: the trained model on the sample's validation split, both protocols, hybrid inference"
$RSSN eval --checkpoint "$OUT/run/model.pth" --dataset "$OUT/sample/am2k" --out "$OUT/eval" --protocol both

step "predict: alpha mattes and RGBA cut-outs for a folder"
$RSSN predict --checkpoint "$OUT/run/model.pth" "$OUT/sample/am2k/validation/original" --out "$OUT/mattes"

echo
echo "Demo finished. Results are in $OUT/:"
echo "  backgrounds      $OUT/backgrounds (manifest.jsonl, review.html)"
echo "  prepared set     $OUT/prepared"
echo "  shards           $OUT/shards (index.json, run.json)"
echo "  contact sheet    $OUT/shards/contact_sheet.png"
echo "  gap reports      $OUT/gap-rssn/report.md, $OUT/gap-plain/report.md"
echo "  trained model    $OUT/run/model.pth (log.csv, loss.png)"
echo "  evaluation       $OUT/eval/summary.md"
echo "  mattes           $OUT/mattes"

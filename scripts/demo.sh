#!/usr/bin/env bash
# The demo pipeline on the bundled sample data. Usage: scripts/demo.sh OUT [WORKERS]
set -euo pipefail
OUT=${1:-demo-out}
WORKERS=${2:-2}
RSSN=${RSSN:-.venv/bin/rssn}
mkdir -p "$OUT"
$RSSN sample-data "$OUT/sample"
echo
echo "Demo finished. Results are in $OUT/"

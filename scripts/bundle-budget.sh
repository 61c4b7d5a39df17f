#!/usr/bin/env bash
# The widget's bundle against its budget, in gzipped bytes (`gzip -9`, what a server sends):
# fails when `dist/tally-frontend_bg.wasm` is over it, so the figure in docs/benchmarks.md
# cannot go stale again. Run after `trunk build --release` (the test command does).
#
# The goal is 250 KB (issue 31) and is not met: the widget is about 430 KB since the locales,
# the phone layout, formatting, reactions, threads and quiet hours (docs/benchmarks.md, "The
# widget bundle", says what each costs). The budget is the size it has, plus a little: it can
# only go down. Lower it when the bundle shrinks; never raise it without a line in the docs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${TALLY_BUNDLE_BUDGET:-440000}
wasm=dist/tally-frontend_bg.wasm
js=dist/tally-frontend.js
[ -f "$wasm" ] || { echo "no $wasm: run trunk build --release first" >&2; exit 1; }
raw=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
js_gz=$(gzip -9 -c "$js" | wc -c)
echo "bundle: $wasm $raw B raw, $gz B gzipped (budget $BUDGET B); $js $js_gz B gzipped"
if [ "$gz" -gt "$BUDGET" ]; then
  echo "bundle over budget by $((gz - BUDGET)) B: measure with twiggy what grew (docs/benchmarks.md)"
  echo "test result: FAILED. 0 passed; 1 failed; (bundle budget)"
  exit 1
fi
echo "test result: ok. 1 passed; 0 failed; (bundle budget, $((BUDGET - gz)) B to spare)"

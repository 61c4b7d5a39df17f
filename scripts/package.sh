#!/usr/bin/env bash
# `make package`: the widget as an npm tarball, target/package/tally-widget-VERSION.tgz, from the
# release bundle in dist/ (trunk build --release): the ES module and its WebAssembly (which
# carries the widget's styles, applied inside its shadow root: no stylesheet touches the host's
# page), the TypeScript declarations, and the <script>-tag loader.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
for f in tally-frontend.js tally-frontend_bg.wasm tally-loader.js; do
  [ -f "dist/$f" ] || { echo "dist/$f is missing: run trunk build --release first" >&2; exit 1; }
done
out=target/package
rm -rf "$out/tally-widget"
mkdir -p "$out/tally-widget"
cp dist/tally-frontend.js dist/tally-frontend_bg.wasm dist/tally-loader.js frontend/tally.d.ts \
  frontend/package/README.md "$out/tally-widget/"
cp LICENSE "$out/tally-widget/" 2>/dev/null || true
sed "s/\"version\": \"0.0.0\"/\"version\": \"$version\"/" frontend/package/package.json > "$out/tally-widget/package.json"
rm -f "$out"/tally-widget-*.tgz
(cd "$out" && npm pack --silent ./tally-widget >/dev/null)
echo "$out/tally-widget-$version.tgz"

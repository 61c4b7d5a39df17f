#!/usr/bin/env bash
# Installs what Tally's build and tests need on a fresh Debian machine, skipping what is there.
#   scripts/setup.sh build    Rust wasm target, wasm-bindgen CLI (the Cargo.lock version), trunk,
#                             binaryen's wasm-opt (npm), and the crates (cargo fetch)
#   scripts/setup.sh test     all of the above, plus Chromium + ChromeDriver, e2e npm packages,
#                             PostgreSQL + nats-server for the cluster tests, and the
#                             standardwebhooks Python package for a webhook test
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-build}"
TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  say "installing wasm-bindgen-cli $bindgen_version (the Cargo.lock version; ~3 min)"
  # Not --locked: its lock file names a webpki-roots release the registry does not serve.
  cargo install --force wasm-bindgen-cli@"$bindgen_version"
fi

if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (~7 min; 0.22 needs a newer rustc)"
  cargo install --locked --force trunk@"$TRUNK_VERSION"
fi

# Debian's binaryen (108) cannot read what current rustc emits; npm's binaryen can.
if [ "$(tools/binaryen/node_modules/.bin/wasm-opt --version 2>/dev/null | awk '{print $3}')" != "$BINARYEN_VERSION" ]; then
  say "installing binaryen $BINARYEN_VERSION (wasm-opt) from npm into tools/binaryen"
  mkdir -p tools/binaryen
  npm install --silent --no-audit --no-fund --prefix tools/binaryen "binaryen@$BINARYEN_VERSION"
fi

# Trunk builds offline, so the crates must be here first.
cargo fetch --locked >/dev/null

if [ "$what" = test ]; then
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    say "installing Debian's chromium and chromium-driver"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  # The cluster tests start a throwaway PostgreSQL and nats-server of their own.
  missing=()
  command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v nats-server >/dev/null || missing+=(nats-server)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian's ${missing[*]} (for the cluster tests)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Python for the Django app's tests, the API fuzzer and the Standard Webhooks reference
  # library: a venv with the pinned packages, remade when the pins change.
  if [ ! -x tools/venv/bin/python ] || [ clients/python/requirements-test.txt -nt tools/venv/.installed ]; then
    say "installing the Python test packages from PyPI into tools/venv"
    python3 -m venv tools/venv
    tools/venv/bin/pip install --quiet --disable-pip-version-check -r clients/python/requirements-test.txt
    touch tools/venv/.installed
  fi
  if [ -f e2e/package.json ] && { [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; }; then
    say "installing the end-to-end tests' npm packages"
    (cd e2e && npm ci --silent --no-audit --no-fund)
  fi
fi

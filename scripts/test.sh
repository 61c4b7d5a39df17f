#!/usr/bin/env bash
# Runs every test of Tally and ends with one line counting them all. Called by `make test`
# (which installs the tools first) and so by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() {
  printf '\n\033[1m== %s\033[0m\n' "$1"
  shift
  "$@" 2>&1 | tee -a "$log"
}

# A CI machine builds once: incremental caches would only take disk (one run filled it).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
echo "disk before: $(df -h --output=avail . | tail -1 | tr -d ' ') free"

step "format" cargo fmt --all -- --check
step "clippy (native)" cargo clippy --workspace --all-targets --locked -- -D warnings
# shared's property tests use proptest, which does not target wasm32; its library does.
step "clippy (wasm32, shared)" cargo clippy -p tally-shared --lib --target wasm32-unknown-unknown --locked -- -D warnings
step "clippy (wasm32, frontend)" cargo clippy -p tally-frontend --lib --tests --target wasm32-unknown-unknown --locked -- -D warnings
step "native tests" cargo test --workspace --locked
# The relay's suite again with every relay a one-node cluster on a throwaway PostgreSQL (the
# cluster tests, which start PostgreSQL, NATS and three nodes of their own, ran above).
step "relay tests on PostgreSQL" scripts/with-postgres.sh cargo test -p tally-relay --locked
step "browser tests (wasm-bindgen-test in headless Chromium)" \
  cargo test -p tally-frontend --target wasm32-unknown-unknown --locked
step "release bundle" trunk build --release
step "bundle budget (gzipped wasm)" scripts/bundle-budget.sh
step "widget package (npm tarball)" scripts/package.sh
step "release relay" cargo build --release --locked -p tally-relay --bins
# The Python package (clients/python), installed from its path as a user would, typed, and
# tested against the release relay built above.
step "python package (pip install, mypy, pytest against the relay)" bash -c '
  tools/venv/bin/pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./clients/python
  cd clients/python && ../../tools/venv/bin/mypy src/tally_client && ../../tools/venv/bin/pytest -q'
if [ -f e2e/package.json ]; then
  step "end to end (node --test, playwright-core, Chromium)" bash -c 'cd e2e && node --test --test-concurrency=1 --test-reporter=spec'
fi

# One closing line that counts every test run above (cargo's last line is often doc-tests' 0).
# A grep that finds nothing (no Python failures, say) must not end the script under pipefail.
count() { grep -oE "$1" "$log" || true; }
passed=$(count 'test result: [a-zA-Z]+\. [0-9]+ passed' | awk '{s+=$4} END {print s+0}')
failed=$(count '[0-9]+ failed;' | awk '{s+=$1} END {print s+0}')
py_pass=$(count '^([0-9]+ failed, )?[0-9]+ passed' | { grep -oE '[0-9]+ passed' || true; } | awk '{s+=$1} END {print s+0}')
py_fail=$(count '^[0-9]+ failed, [0-9]+ passed' | awk '{s+=$1} END {print s+0}')
e2e_pass=$(count '^ℹ pass [0-9]+' | awk '{s+=$3} END {print s+0}')
e2e_fail=$(count '^ℹ fail [0-9]+' | awk '{s+=$3} END {print s+0}')
echo
echo "disk after: $(df -h --output=avail . | tail -1 | tr -d ' ') free, target $(du -sh target 2>/dev/null | cut -f1)"
echo "tests: $((passed + py_pass + e2e_pass)) passed, $((failed + py_fail + e2e_fail)) failed"

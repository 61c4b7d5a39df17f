# Tally: `make run` starts the demo, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
export PATH := $(CURDIR)/tools/binaryen/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
export TRUNK_OFFLINE := true
export TRUNK_SKIP_VERSION_CHECK := true
export CHROMEDRIVER := /usr/bin/chromedriver

LISTEN ?= 127.0.0.1:8080
DATA ?= data

.PHONY: run test simulate soak setup-build setup-test frontend relay relay-dev package bench bench-history bench-tab bench-feel bench-cluster bench-capacity bench-scale cluster fuzz screenshots

## Build the widget and the relay (release), then serve the demo on http://$(LISTEN).
run: setup-build frontend relay
	./target/release/tally-relay serve --demo --listen $(LISTEN) --data $(DATA) --static dist

## Every test: format, lints (native and wasm32), native tests, browser tests, bundle, e2e.
test: setup-test
	scripts/test.sh

## Deterministic simulation of the relay's core (release): SEEDS is one seed or a range a-b,
## STEPS the steps per seed. A failing seed prints the command that replays it exactly.
SEEDS ?= 1-200
STEPS ?= 3000
simulate:
	SIM_SEEDS=$(SEEDS) SIM_STEPS=$(STEPS) cargo test --release -p tally-relay --lib core::sim -- --nocapture

## The nemesis test for MINUTES: random network faults between three nodes and PostgreSQL/NATS
## under load, then every acknowledged send checked once in the log and every client converged.
MINUTES ?= 10
soak: setup-test
	TALLY_SOAK_SECONDS=$$(( $(MINUTES) * 60 )) cargo test --release -p tally-relay --test cluster \
	  under_random_network_faults -- --nocapture

setup-build:
	@scripts/setup.sh build

setup-test:
	@scripts/setup.sh test

frontend:
	trunk build --release

relay:
	cargo build --release -p tally-relay --bins

## The widget as an npm package: target/package/tally-widget-VERSION.tgz (ESM, wasm, .d.ts, loader).
package: setup-build frontend
	scripts/package.sh

## A local cluster to look at: PostgreSQL, NATS and three nodes serving the demo on
## http://127.0.0.1:8081, :8082 and :8083 (installs PostgreSQL and nats-server if missing).
cluster: setup-test frontend relay
	scripts/cluster.sh

## The relay in debug mode for `trunk serve` (which proxies /ws and /api to it).
relay-dev:
	cargo run -p tally-relay -- serve --demo --listen 127.0.0.1:8080 --data $(DATA) --static dist

## Benchmarks (release): criterion for the projection and store, then the relay under load
## against the bare fan-out ceiling (about 7 minutes on 2 cores).
bench:
	cargo bench -p tally-shared --bench projection
	cargo build --release -p tally-relay -p tally-loadgen --bins
	./target/release/tally-loadgen run --scenario all --quick --json target/loadgen.json

## A relay that has lived a while (not in `bench`: generating 10 million messages takes ~3
## minutes and 6 GB): restart, memory, 1,000 staff connecting, steady load on top, and a
## client hammering snapshots and history. HISTORY_MESSAGES sets the size.
HISTORY_MESSAGES ?= 10000000
bench-history:
	cargo build --release -p tally-relay -p tally-loadgen --bins
	test -f target/history-$(HISTORY_MESSAGES)/history.json || \
	  ./target/release/tally-loadgen history --data target/history-$(HISTORY_MESSAGES) --messages $(HISTORY_MESSAGES)
	./target/release/tally-loadgen run --scenario history --history target/history-$(HISTORY_MESSAGES) --quick

## Cluster mode against one node (~4 minutes): the same load on one SQLite node, one
## PostgreSQL node and three nodes on PostgreSQL + NATS, then a node killed under 1,000 staff.
bench-cluster: setup-test
	cargo build --release -p tally-relay -p tally-loadgen --bins
	./target/release/tally-loadgen run --scenario cluster --quick --json target/cluster.json

## What a cluster's nodes hold and carry (~2 minutes): idle connections per node on one node
## and three, what a node pays for the others' events, sends/s on 1, 2 and 3 nodes.
bench-capacity: setup-test
	cargo build --release -p tally-relay -p tally-loadgen --bins
	./target/release/tally-loadgen run --scenario capacity --json target/capacity.json

## A whole company on one node: 100,000 idle connections (or as many as `ulimit -n` allows),
## then all of them resuming at once behind a trusted proxy (docs/operations.md, "Sizing a node").
bench-scale:
	cargo build --release -p tally-relay -p tally-loadgen --bins
	./target/release/tally-loadgen run --scenario scale --json target/scale.json

## The tab keeping up with bursts, in headless Chromium against the release relay (~1 min).
bench-tab: setup-test frontend relay
	node e2e/bench-tab.mjs

## What a person feels (~2 min): page load to the right badge, a big snapshot rendered, opening a
## conversation of 2,000 loaded messages.
bench-feel: setup-test frontend relay
	node e2e/bench-feel.mjs

## Fuzz the frame decoder, the projection, the importer's checker and the Markdown renderer (60 s each; nightly +
## cargo-fuzz; not in CI, where the importer's and the renderer's property tests run instead).
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	cd fuzz && cargo +nightly fuzz run -O decode_frames corpus/decode_frames -- -max_total_time=60
	cd fuzz && cargo +nightly fuzz run -O projection corpus/projection -- -max_total_time=60
	cd fuzz && cargo +nightly fuzz run -O import_lines corpus/import_lines -- -max_total_time=60
	cd fuzz && cargo +nightly fuzz run -O markup corpus/markup -- -max_total_time=60

## Retake the README's screenshots from the demo (release builds first).
screenshots: setup-test frontend relay
	node e2e/screenshots.mjs

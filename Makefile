# Darkroom: `make run` serves the app, `make test` runs every test.
# Both install what is missing first (and skip what is present).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO_LEPTOS_VERSION := 0.3.10
WASM_BINDGEN_VERSION := 0.2.130
NODE_BIN := $(CURDIR)/end2end/node_modules/.bin
# cargo-leptos finds wasm-opt 132 (npm binaryen) and wasm-bindgen on PATH.
export PATH := $(NODE_BIN):$(HOME)/.cargo/bin:$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps rust-deps system-deps python-deps node-deps build run dev test test-rust test-e2e lint fmt bench bench-node-deps clean-data

help:
	@echo "make run    install what is missing, build, serve on http://127.0.0.1:3000"
	@echo "make test   install what is missing, run unit, integration and Playwright tests"
	@echo "make dev    cargo leptos watch (rebuilds on save)"
	@echo "make lint   cargo fmt --check and clippy for both feature sets"
	@echo "make bench  benchmarks (results in BENCHMARKS.md)"

deps: rust-deps system-deps python-deps node-deps

rust-deps:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@cargo leptos --version 2>/dev/null | grep -q "$(CARGO_LEPTOS_VERSION)" || \
		cargo install cargo-leptos --version $(CARGO_LEPTOS_VERSION) --locked
	@wasm-bindgen --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)" || \
		CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

# Debian packages: Chromium for Playwright, psql for the PostgreSQL leg.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v psql >/dev/null || missing="$$missing postgresql-client"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; fi

# moto: an S3-compatible server (from PyPI) for the storage tests.
python-deps:
	@command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]'

# npm ci only when package-lock.json changed since the last install.
node-deps: end2end/node_modules/.package-lock.json
end2end/node_modules/.package-lock.json: end2end/package-lock.json
	cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	@touch $@

build: rust-deps node-deps
	cargo leptos build --release

run: build
	./target/release/darkroom

dev: rust-deps node-deps
	cargo leptos watch

test: deps test-rust test-e2e

# PostgreSQL for the second leg of the integration tests (this machine kind
# runs one on loopback; each test creates a database of its own there).
TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432

# Unit and integration tests of the server build (SQLite, then the app's
# tests again on PostgreSQL), then the unit tests of the browser build
# (compiled natively).
test-rust: rust-deps system-deps python-deps
	scripts/with-moto.sh cargo test --features ssr
	@psql "$(TEST_POSTGRES)/postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'darkroom_test_%'" \
		| while read -r db; do psql -q "$(TEST_POSTGRES)/postgres" -c "DROP DATABASE IF EXISTS $$db"; done
	DARKROOM_TEST_POSTGRES=$(TEST_POSTGRES) scripts/with-moto.sh \
		cargo test --features ssr --test api -- accounts:: tasks:: storage:: scaleout::
	cargo test --lib --features hydrate

test-e2e: build system-deps node-deps
	cd end2end && npx playwright test

lint:
	cargo fmt --all -- --check
	cargo clippy --features ssr --all-targets -- -D warnings
	cargo clippy --lib --features hydrate --target wasm32-unknown-unknown -- -D warnings

fmt:
	cargo fmt --all

# The load harness (benches/load.rs) drives the release server built by
# `make build`; a copy of it and of target/site is taken first, because
# `cargo bench` rebuilds target/release/darkroom without cargo-leptos'
# settings (it would then link the wasm under another name) and a
# concurrent `make dev` rewrites target/site. Results go
# into BENCHMARKS.md. The Node reference's better-sqlite3 compiles from
# source on `npm ci` (about 2 min, only when its lock file changed).
BENCH_BIN := $(CURDIR)/target/bench/darkroom
bench: build bench-node-deps
	@rm -rf target/bench && mkdir -p target/bench && cp target/release/darkroom $(BENCH_BIN) && cp -r target/site target/bench/site
	DARKROOM_BENCH_BIN=$(BENCH_BIN) DARKROOM_BENCH_SITE=$(CURDIR)/target/bench/site cargo bench --bench load --features ssr -- $(BENCH_ARGS)

bench-node-deps: benches/node/node_modules/.package-lock.json
benches/node/node_modules/.package-lock.json: benches/node/package-lock.json
	cd benches/node && npm ci --no-audit --no-fund
	@touch $@

clean-data:
	rm -rf data

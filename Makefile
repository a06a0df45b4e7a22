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

.PHONY: help deps rust-deps system-deps python-deps node-deps build run dev test test-rust test-e2e check-bench-target lint fmt bench bench-postgres bench-node-deps clean-data

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

# Debian packages: Chromium for Playwright, psql for the PostgreSQL leg,
# openssl for the certificate fal's Python client is tested behind.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v psql >/dev/null || missing="$$missing postgresql-client"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; fi

# moto: an S3-compatible server (from PyPI) for the storage tests;
# replicate, fal-client and stripe: the official clients, run against the
# simulators;
# aiosmtpd: a real SMTP server for the mail tests.
python-deps:
	@command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]'
	@python3 -c 'import replicate' 2>/dev/null || python3 -m pip install --quiet 'replicate==1.0.7'
	@python3 -c 'import stripe' 2>/dev/null || python3 -m pip install --quiet 'stripe==16.1.0'
	@python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet 'aiosmtpd==1.4.6'
	@python3 -c 'import fal_client' 2>/dev/null || python3 -m pip install --quiet 'fal-client==1.0.3'

# npm ci only when package-lock.json changed since the last install.
node-deps: end2end/node_modules/.package-lock.json
end2end/node_modules/.package-lock.json: end2end/package-lock.json
	cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	@touch $@

# The release build, skipped when nothing it is built from has changed
# since the last one (cargo-leptos would otherwise re-run wasm-bindgen and
# wasm-opt, about a minute, on an unchanged tree). The stamp is a digest of
# the inputs, written only after a build succeeded.
BUILD_STAMP := target/.release-inputs
BUILD_INPUTS := src style public migrations Cargo.toml Cargo.lock Leptos.toml
# --split: islands marked lazy get WebAssembly files of their own, loaded
# only by the pages that show them (see BENCHMARKS.md, issue 16).
LEPTOS_BUILD := cargo leptos build --release --split
build: rust-deps node-deps
	@digest=$$( (echo "$(LEPTOS_BUILD)"; find $(BUILD_INPUTS) -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1); \
	if [ -x target/release/darkroom ] && [ -f target/site/pkg/darkroom.wasm ] && [ "$$(cat $(BUILD_STAMP) 2>/dev/null)" = "$$digest" ]; then \
		echo "release build is up to date (inputs unchanged since the last build)"; \
	else \
		rm -f $(BUILD_STAMP) && $(LEPTOS_BUILD) && echo "$$digest" > $(BUILD_STAMP); \
	fi

run: build
	./target/release/darkroom

dev: rust-deps node-deps
	cargo leptos watch --split

test: deps check-bench-target test-rust test-e2e

# PostgreSQL for the second leg of the integration tests (this machine kind
# runs one on loopback; each test creates a database of its own there).
TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432

# Unit and integration tests of the server build (SQLite, then the app's
# tests again on PostgreSQL, with the tests that need PostgreSQL or S3,
# which are #[ignore]d without them, so a missing server fails instead of
# skipping; then the official provider clients against the simulators),
# then the unit tests of the browser build (compiled natively).
test-rust: rust-deps system-deps python-deps node-deps
	cargo test --features ssr
	@psql "$(TEST_POSTGRES)/postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'darkroom_test_%'" \
		| while read -r db; do psql -q "$(TEST_POSTGRES)/postgres" -c "DROP DATABASE IF EXISTS $$db"; done
	DARKROOM_TEST_POSTGRES=$(TEST_POSTGRES) scripts/with-moto.sh \
		cargo test --features ssr --test api -- --include-ignored \
		account:: accounts:: cancel:: images:: inputs:: mail:: pages:: payments:: providers:: queue:: tasks:: storage:: scaleout:: security:: webhooks::
	cargo test --features ssr --test api -- --ignored clients::
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
# `make build`; a copy of it and of target/site is taken first, because a
# concurrent `make dev` rewrites target/site. `cargo bench` builds in a
# target directory of its own: it builds the crate's binary too, without
# cargo-leptos' settings (linking the wasm under another name), and must
# never overwrite target/release/darkroom. Results go into BENCHMARKS.md.
# The Node reference's better-sqlite3 compiles from source on `npm ci`
# (about 2 min, only when its lock file changed).
BENCH_BIN := $(CURDIR)/target/bench/darkroom
BENCH_TARGET_DIR := $(CURDIR)/target/bench-build
bench: build bench-node-deps
	@rm -rf target/bench && mkdir -p target/bench && cp target/release/darkroom $(BENCH_BIN) && cp -r target/site target/bench/site
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) DARKROOM_BENCH_BIN=$(BENCH_BIN) DARKROOM_BENCH_SITE=$(CURDIR)/target/bench/site cargo bench --bench load --features ssr -- $(BENCH_ARGS)

# The same sections on PostgreSQL (the machine's, on loopback; a fresh
# database per server), into a results block of their own.
BENCH_ONLY ?= 1,2,3,5,6,7,9
bench-postgres: build bench-node-deps
	@rm -rf target/bench && mkdir -p target/bench && cp target/release/darkroom $(BENCH_BIN) && cp -r target/site target/bench/site
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) DARKROOM_BENCH_BIN=$(BENCH_BIN) DARKROOM_BENCH_SITE=$(CURDIR)/target/bench/site cargo bench --bench load --features ssr -- --postgres $(TEST_POSTGRES) --only $(BENCH_ONLY) --skip-minimal

# `make bench` must leave the release binary alone: every cargo command in
# its recipe builds in a target directory other than target/.
check-bench-target:
	@$(MAKE) --no-print-directory -n bench | grep -E '(^|[[:space:]])cargo (bench|build|test|run)' | \
		grep -v 'CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) ' && { echo "make bench would build into target/"; exit 1; } || \
		echo "make bench builds into $(BENCH_TARGET_DIR), not target/release"

bench-node-deps: benches/node/node_modules/.package-lock.json
benches/node/node_modules/.package-lock.json: benches/node/package-lock.json
	cd benches/node && npm ci --no-audit --no-fund
	@touch $@

clean-data:
	rm -rf data

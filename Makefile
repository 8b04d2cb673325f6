# Keyscope — one entry point for people and CI.
#
#   make demo   a fresh anvil + the relayer: deploy, two traders, a session key trading through the relayer
#               and refused, a price slide to a margin call and a liquidation; report + chart; exits when done
#   make test   the format and lint gates, then every test: forge (unit, fuzz, invariant) then cargo
#   make gas    gas of handleOps (beside SimpleAccount v0.8) and of venue calls -> snapshots/*.json
#
# Set-up is part of every target: npm installs the pinned Foundry binaries, the wasm solc and the
# contract libraries from package-lock.json (npm ci cannot be used: the lock lists only this
# platform's Foundry binary packages).

SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: all deps native build lint test test-contracts test-rust gas demo clean softhsm postgres

all: test

node_modules/.keyscope-installed: package.json package-lock.json
	npm install --no-audit --no-fund
	@touch $@

deps: node_modules/.keyscope-installed

# The threshold-signing crate (cggmp21) builds GMP from source, whose build needs m4 (Debian package m4):
# installed when missing and this runs as root with apt; otherwise the Rust build cannot run, and says so.
native:
	@if command -v m4 >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing m4 (GMP's build, for threshold signing)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq m4 >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq m4 >/dev/null 2>&1; } || \
	  { echo "ERROR: apt could not install m4, which GMP's build needs"; exit 1; }; \
	else \
	  echo "ERROR: m4 is missing (GMP's build needs it, for threshold signing): install the m4 package"; \
	  exit 1; \
	fi

build: deps
	forge build

test: lint test-contracts test-rust

# Formatting and lints first: a style slip fails in seconds, not after the tests.
lint: build native
	cargo fmt --all --check
	forge fmt --check
	cargo clippy --workspace --all-targets -- -D warnings

# Gas tests run isolated (one transaction per call, cold storage as on a real chain) and must match
# the committed snapshots/*.json: after a contract change, `make gas` rewrites them.
test-contracts: build
	forge test --no-match-path 'test/gas/*'
	FORGE_SNAPSHOT_CHECK=true forge test --isolate --match-path 'test/gas/*'

# SoftHSM2 stands in for an HSM in the PKCS#11 tests (Debian package softhsm2): installed when missing
# and this runs as root with apt; otherwise those tests print SKIPPED and say why.
SOFTHSM_MODULE := /usr/lib/softhsm/libsofthsm2.so
softhsm:
	@if [ -e $(SOFTHSM_MODULE) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing softhsm2 (PKCS#11 tests)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq softhsm2 >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq softhsm2 >/dev/null 2>&1; } || \
	  echo "NOTE: apt could not install softhsm2: the PKCS#11 tests will be SKIPPED"; \
	else \
	  echo "NOTE: softhsm2 is not installed and cannot be here (not root, or no apt): the PKCS#11 tests"; \
	  echo "      (crates/signer/tests/hsm.rs, crates/cli/tests/signer_walkthrough.rs) will be SKIPPED"; \
	fi

# The relayer's scale-out tests start their own throwaway Postgres cluster (initdb + pg_ctl in a temp dir)
# from the Debian package postgresql: installed when missing and this runs as root with apt; otherwise
# those tests print SKIPPED and say why.
postgres:
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing postgresql (relayer scale-out tests)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq postgresql >/dev/null 2>&1; } || \
	  echo "NOTE: apt could not install postgresql: the scale-out tests will be SKIPPED"; \
	else \
	  echo "NOTE: postgresql is not installed and cannot be here (not root, or no apt): the scale-out"; \
	  echo "      tests (crates/relayer/tests/cluster_store.rs, crates/cli/tests/cluster.rs) will be SKIPPED"; \
	fi

# Doc tests and benchmarks (each run once, as a test) first, so the run closes on the unit and
# integration tests' counts.
test-rust: softhsm postgres native
	cargo test --workspace --doc
	cargo test --workspace --benches
	cargo test --workspace --lib --bins --tests

gas: build
	forge test --isolate --match-path 'test/gas/*'
	@cat snapshots/account.json snapshots/session-limits.json snapshots/venue.json

demo: build native
	cargo run -q -p keyscope-cli -- demo

clean:
	rm -rf out cache target node_modules/.keyscope-installed

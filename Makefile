# One task runner for people and CI alike. `make demo` and `make test` work on
# a fresh machine: `scripts/deps.sh` installs what they need (as root) or
# names the missing package.
SHELL := /bin/bash
CARGO ?= cargo
export XDG_RUNTIME_DIR ?= /tmp/quiver-xdg-$(shell id -u)
export CARGO_TERM_COLOR ?= never

.PHONY: deps demo test lint bench fuzz clean

deps:
	@./scripts/deps.sh

demo: deps
	$(CARGO) run --release --bin quiver -- demo

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

test: lint
	$(CARGO) test --workspace --release

bench: deps
	./bench/run.sh

# Each fuzz target for FUZZ_SECONDS (default 600); corpora kept in fuzz/corpus/.
fuzz: deps
	./fuzz/run.sh

clean:
	$(CARGO) clean

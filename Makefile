# One task runner for people and CI alike. `make demo` and `make test` work on
# a fresh machine: `scripts/deps.sh` installs what they need (as root) or
# names the missing package.
SHELL := /bin/bash
CARGO ?= cargo
export XDG_RUNTIME_DIR ?= /tmp/quiver-xdg-$(shell id -u)
export CARGO_TERM_COLOR ?= never

.PHONY: deps demo test lint python pytest serve-load bench diff-ladybug pbg-distributed stress fuzz clean

PYTHON ?= python3
WHEELS := target/wheels

deps:
	@./scripts/deps.sh

demo: deps
	$(CARGO) run --release --bin quiver -- demo

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

# deps installs lavapipe, so the GPU tests must find an adapter, not skip.
test: lint
	QUIVER_REQUIRE_GPU=1 $(CARGO) test --workspace --release
	$(MAKE) pytest
	$(MAKE) serve-load

# `quiver serve` under load on loopback: 32 clients of 1-hop queries for 20 s
# while a writer commits and a training job runs; any failed request fails it.
serve-load:
	$(CARGO) build --release --bin quiver && $(CARGO) build --release -p quiver-bench
	rm -rf target/serve-load && mkdir -p target/serve-load
	target/release/quiver-bench twhin --out target/serve-load/data --users 5000 >/dev/null
	target/release/quiver import --create-types target/serve-load/db target/serve-load/data/train.txt >/dev/null
	target/release/quiver-bench serve --quiver target/release/quiver --db target/serve-load/db \
		--clients 32 --seconds 20 --write --train

# The Python package: builds the wheel (maturin) and installs it into .venv.
python: deps
	[ -x .venv/bin/python ] || $(PYTHON) -m venv .venv
	.venv/bin/pip install -q "maturin>=1.7,<2" numpy
	rm -f $(WHEELS)/quiver-*.whl
	.venv/bin/maturin build --release --strip -m python/Cargo.toml -o $(WHEELS)
	.venv/bin/pip install -q --force-reinstall --no-deps $(WHEELS)/quiver-*.whl

# The pytest suite against the wheel, installed into a fresh venv.
pytest: python
	$(CARGO) build --release --bin quiver
	rm -rf target/pytest-venv && $(PYTHON) -m venv target/pytest-venv
	target/pytest-venv/bin/pip install -q $(WHEELS)/quiver-*.whl pytest pandas tqdm pyarrow polars mypy networkx playwright h5py
	QUIVER_BIN=target/release/quiver QUIVER_WHEEL=$$(ls $(WHEELS)/quiver-*.whl) \
		target/pytest-venv/bin/python -m pytest -q python/tests
	# The package's types (every public function annotated) and its stubs against the built module.
	cd python && ../target/pytest-venv/bin/python -m mypy quiver
	target/pytest-venv/bin/python -m mypy.stubtest --ignore-disjoint-bases quiver._native

bench: deps
	./bench/run.sh

# The query language against LadybugDB on random typed graphs (not in CI:
# it installs LadybugDB from PyPI into bench/venv).
diff-ladybug: deps
	$(CARGO) build --release --bin quiver
	[ -x bench/venv/bin/python ] || python3 -m venv bench/venv
	bench/venv/bin/python -c "import ladybug" 2>/dev/null || bench/venv/bin/pip install -q ladybug
	bench/venv/bin/python bench/ladybug_diff.py --quiver target/release/quiver $(DIFF_ARGS)

# FB15k-237 through PyTorch-BigGraph's distributed trainer (two local ranks)
# and back into quiver (not in CI: torchbiggraph into bench/venv; needs ../shared/data).
pbg-distributed: deps
	$(CARGO) build --release --bin quiver
	[ -x bench/venv/bin/python ] || python3 -m venv bench/venv
	bench/venv/bin/python -c "import torchbiggraph, h5py" 2>/dev/null || bench/venv/bin/pip install -q torchbiggraph "setuptools<81" h5py
	d=$$(mktemp -d) && tar -xzf ../shared/data/FB15k-237.tar.gz -C $$d && \
		bench/venv/bin/python bench/pbg_distributed.py --data $$(dirname $$(find $$d -name train.txt)) --quiver target/release/quiver $(PBG_ARGS)

# Readers, a writer and training together for 10 minutes (2 in `make test`).
stress: deps
	QUIVER_STRESS_SECS=$${QUIVER_STRESS_SECS:-600} $(CARGO) test --release -p quiver-tests --test stress -- --nocapture

# Each fuzz target for FUZZ_SECONDS (default 600); corpora kept in fuzz/corpus/.
fuzz: deps
	./fuzz/run.sh

clean:
	$(CARGO) clean

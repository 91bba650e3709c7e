# The two commands of the README, and the set-up they share.
# One cargo profile (release) for build, run and test, so RocksDB compiles once.

.PHONY: run test bench rush-bench deps screenshots

deps:
	@./scripts/install-deps.sh

run: deps
	cargo run --release -- serve $(ARGS)

test: deps
	cargo test --release
	cd tests/browser && npm ci --no-audit --no-fund && npm test

screenshots: deps
	cargo build --release
	cd tests/browser && npm ci --no-audit --no-fund && UPDATE_SCREENSHOTS=1 npm test

bench: deps
	cargo bench --bench engine

# The end-to-end figures of BENCHMARKS.md (about 8 minutes; RUSH_SCALE=0.1 for a quick look).
rush-bench: deps
	cargo bench --bench ceiling --no-run
	cargo bench --bench rush

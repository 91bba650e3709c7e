# The two commands of the README, and the set-up they share.
# One cargo profile (release) for build, run and test, so RocksDB compiles once.

.PHONY: run test bench deps screenshots

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

# The two commands of the README, and the set-up they share.
# One cargo profile (release) for build, run and test, so RocksDB compiles once.

.PHONY: run test bench deps

deps:
	@./scripts/install-deps.sh

run: deps
	cargo run --release -- serve $(ARGS)

test: deps
	cargo test --release

bench: deps
	cargo bench --bench engine

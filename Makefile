# The two commands of the README, and the set-up they share.
# One cargo profile (release) for build, run and test, so RocksDB compiles once.

.PHONY: run test bench rush-bench deps screenshots soak chaos history-bench cluster fuzz schemathesis

deps:
	@./scripts/install-deps.sh

run: deps
	cargo run --release -- serve $(ARGS)

# Rust unit and integration tests (the short kill soak, hostile clients and the
# full-disk test among them), schema fuzzing against /openapi.json, and the
# browser tests of the screens.
test: deps
	cargo test --release
	./scripts/check-metrics.sh
	./scripts/schemathesis.sh 60
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

# The long kill soak: 100 SIGKILL cycles (about 5 minutes); SOAK_CYCLES=N for another count.
soak: deps
	SOAK_CYCLES=$${SOAK_CYCLES:-100} cargo test --release --test api soak -- --nocapture

# The replicated kill soak, long: crema killed and its data dir deleted every
# cycle, JetStream's journal leader killed or a server paused on the way
# (three real nats-server processes); CHAOS_CYCLES=N for another count.
chaos: deps
	CHAOS_CYCLES=$${CHAOS_CYCLES:-60} cargo test --release --test api replicated_soak -- --nocapture

# A store with 1,000,000 settled orders and 1,000 live ones, beside one with
# no history, loaded by a node with an empty data dir (three real nats-server
# processes; about 3 minutes); CREMA_HISTORY=N for another history.
history-bench: deps
	CREMA_HISTORY=$${CREMA_HISTORY:-1000000} cargo test --release --test api long_history -- --nocapture

# Three JetStream servers, payment-sim and three crema nodes sharing the
# chain's stores, on loopback; prints the URLs and the admin key; Ctrl-C stops
# them all. See README, "A cluster of crema nodes".
cluster: deps
	cargo build --release
	./scripts/cluster.sh

# Schema fuzzing alone, for longer: make schemathesis SECONDS=600
schemathesis: deps
	cargo build --release
	./scripts/schemathesis.sh $${SECONDS:-300}

# cargo-fuzz on the nightly toolchain: each target for FUZZ_SECONDS (default 60).
fuzz:
	./scripts/fuzz.sh $${FUZZ_SECONDS:-60}

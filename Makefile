# One entry point for every routine task. CI runs `make test` (see .ci/run).
.PHONY: replay test deps lint fmt bench bless doc fuzz load agent-load agent-load-real k8s-bench soak deny images

# The main job: replay the built-in synthetic cluster and print the report.
replay:
	cargo run --release -p tide-datasets --bin tide-replay

# Everything CI checks: installs what the tests need, then lints, builds docs and runs every test.
test:
	bash scripts/test.sh

# Only the installation step of `make test`.
deps:
	bash scripts/test.sh --deps-only

# Container images (OCI archives in target/images): deploy/images/*.Containerfile, buildah.
images:
	bash scripts/build-images.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# The dependency policy (licences, duplicate versions, sources) in deny.toml, as CI checks it;
# see docs/supply-chain.md, also for the advisory check (`cargo deny check advisories`).
deny:
	cargo deny --locked check bans licenses sources

fmt:
	cargo fmt --all

doc:
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

bench:
	cargo bench -p tide-benches --benches

# HTTP load (5,000 nodes, filter+prioritize cycles on loopback) and the extender's memory with
# 5,000 nodes and 150,000 pods cached (the real binary against the fake API server).
load:
	cargo build --release -p tide-benches -p tide-scheduler --bins
	./target/release/extender-load throughput --connections 2 --seconds 10
	./target/release/extender-load memory --nodes 5000 --pods 150000

# The node agent's own CPU and memory at 100 containers, 1 s cadence (needs root and cgroup v1).
agent-load:
	cargo build --release -p tide-benches -p tide-agent --bins
	./target/release/agent-load --containers 100 --seconds 60

# The same on a real node: 100 containers (50 pods) on the v1.20.2 kubelet with containerd,
# the agent as its DaemonSet runs it (root, cgroup v1; builds the Kubernetes binaries first).
agent-load-real:
	bash scripts/build-k8s.sh >/dev/null
	cargo test --release -p tide-agent --test real_node -- --ignored --nocapture agent_cost_with_100_real_containers

# Regenerate checked-in generated files (CRD YAML, golden outputs) on purpose.
bless:
	TIDE_BLESS=1 cargo test --workspace

# Fuzz every target (extender requests, trace loaders, kernel-file parsers, the agent's
# checkpoint, cold-memory frames) for FUZZ_SECS each (cargo-fuzz; the stable toolchain is
# allowed its nightly flags through RUSTC_BOOTSTRAP). `make test` replays the corpora.
FUZZ_SECS ?= 60
fuzz:
	bash scripts/fuzz.sh run $(FUZZ_SECS)

# A real kube-scheduler's throughput with and without the Tide extender, on the same Node
# objects of a real control plane (v1.20.2 from Debian's source, or TIDE_K8S_BIN).
k8s-bench:
	bash scripts/build-k8s.sh >/dev/null
	cargo build --release -p tide-benches --bin k8s-throughput -p tide-scheduler --bin tide-scheduler
	./target/release/k8s-throughput --nodes 1000 --pods 2000 --rounds 2
	./target/release/k8s-throughput --nodes 5000 --pods 2000

# Soak: tide-scheduler under watch churn on a real control plane, then tide-agent under pod
# churn on a real node, SOAK_SECS each (default 600); each prints RSS, open files, threads
# and live tasks every 30 s and fails if they grew after the warm-up.
SOAK_SECS ?= 600
soak:
	bash scripts/build-k8s.sh >/dev/null
	TIDE_SOAK_SECS=$(SOAK_SECS) cargo test -p tide-scheduler --test real_cluster -- --ignored --nocapture soak_extender_under_watch_churn
	TIDE_SOAK_SECS=$(SOAK_SECS) cargo test -p tide-agent --test real_node -- --ignored --nocapture soak_agent_under_container_churn

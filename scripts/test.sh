#!/usr/bin/env bash
# The whole test suite: install what the tests need, then lint, build docs, run every test.
# `make test` and CI (.ci/run) call this; `--deps-only` stops after the installation step.
set -euo pipefail
cd "$(dirname "$0")/.."

deps_only=false
[[ "${1:-}" == "--deps-only" ]] && deps_only=true

log() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

log "installing test dependencies"
# The toolchain pinned in rust-toolchain.toml, with rustfmt and clippy.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
apt_install ca-certificates openssl procps prometheus qemu-system-x86 busybox-static cpio xz-utils e2fsprogs \
  etcd-server curl util-linux containerd runc containernetworking-plugins iproute2 libc6-dev \
  buildah
# Kubernetes v1.20.2 server binaries built from Debian's source (cached outside the clone,
# keyed by the source version; set TIDE_K8S_BIN to test against other binaries instead).
if [[ -z "${TIDE_K8S_BIN:-}" ]]; then
  log "Kubernetes server binaries (scripts/build-k8s.sh)"
  bash scripts/build-k8s.sh >/dev/null
fi
# kustomize renders the install package (deploy/): Debian trixie's kustomize, unpacked into
# the cache outside the clone (bookworm's kubectl 1.20 embeds kustomize v2, too old).
log "kustomize (scripts/kustomize.sh)"
bash scripts/kustomize.sh --install >/dev/null
# Kubernetes manifest validation against the OpenAPI schemas (kubernetes-validate, PyPI).
if ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  python3 -m pip install --quiet kubernetes-validate \
    || python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi
# cargo-deny checks the dependency policy in deny.toml (docs/supply-chain.md). Pinned, built
# from crates.io with the toolchain above into ~/.cargo/bin (on PATH); a cold build takes
# about 4.5 minutes on 2 cores.
CARGO_DENY_VERSION=0.20.2
if [[ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
  log "cargo install cargo-deny $CARGO_DENY_VERSION"
  cargo install --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi
$deps_only && exit 0

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo deny (licenses, bans, sources; policy in deny.toml)"
cargo deny --locked check bans licenses sources

log "fuzz targets build and replay their corpora"
bash scripts/fuzz.sh replay

log "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

log "Kubernetes manifests and the install package (kustomize, kubernetes-validate, promtool)"
bash scripts/validate-manifests.sh

log "container images (scripts/build-images.sh)"
k8s_bin="${TIDE_K8S_BIN:-$(bash scripts/build-k8s.sh --print-dir)}"
bash scripts/build-images.sh --out target/images --kube-scheduler "$k8s_bin/kube-scheduler"
export TIDE_IMAGES="$PWD/target/images"

log "cargo test (unit, integration, doc tests)"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
log "cold memory in a sandbox VM (qemu, Debian bookworm-backports kernel)"
bash cold-memory/vm/run-vm-test.sh 2>&1 | tee target/vm-test-output.txt
grep -E '^test result:' target/test-output.txt | awk '{p+=$4; f+=$6; i+=$8} END {printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i}'

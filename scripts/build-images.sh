#!/usr/bin/env bash
# Container images of Tide's components, as OCI archives, built with Debian's buildah from the
# Containerfiles in deploy/images/ (docs/install.md, "Images").
#
#   scripts/build-images.sh [--out DIR] [--kube-scheduler BINARY]
#
# - tide-scheduler and tide-agent: static release binaries (glibc, crt-static, the same build
#   as the sandbox VM's tide-coldmem), stripped, on an empty base, labelled with the version (Cargo.toml),
#   the commit (git) and the licence; written as DIR/<name>.oci.tar, named
#   docker.io/tide/<name>:<version> inside (the name the manifests' `tide/<name>:<version>`
#   resolves to), ready for `ctr images import` or `skopeo copy oci-archive:… docker://…`.
# - tide-coldmem: the cold-memory daemon for sandbox guest images, as a static binary
#   DIR/tide-coldmem (guests run it from their own init, not from a container image).
# - --kube-scheduler BINARY: also packs that kube-scheduler (a static Go binary, e.g. the one
#   scripts/build-k8s.sh built) as DIR/kube-scheduler.oci.tar, for the tests of the
#   second-scheduler profile (production uses the upstream image).
#
# DIR defaults to target/images. buildah keeps its storage under DIR/buildah (vfs driver,
# chroot isolation; nothing under /var/lib/containers), removed at the end. DIR/images.tsv
# lists name, reference, archive and size of each image.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/images
kube_scheduler=""
while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --kube-scheduler) kube_scheduler="$2"; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--kube-scheduler BINARY]" >&2; exit 2 ;;
  esac
done

log() { printf '==> %s\n' "$*" >&2; }

command -v buildah >/dev/null 2>&1 || { echo "buildah is not installed (apt-get install buildah)" >&2; exit 1; }
if [[ -n "$kube_scheduler" && ! -x "$kube_scheduler" ]]; then
  echo "--kube-scheduler $kube_scheduler: not an executable file" >&2
  exit 2
fi

version=$(cargo metadata --no-deps --format-version 1 --locked \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "tide-scheduler"))')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ "$revision" != unknown ]] && ! git diff --quiet HEAD 2>/dev/null; then
  revision="$revision-dirty"
fi

target=x86_64-unknown-linux-gnu
log "static release build of tide-scheduler, tide-agent, tide-coldmem"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --locked --target "$target" \
  -p tide-scheduler --bin tide-scheduler -p tide-agent --bin tide-agent -p tide-coldmem --bin tide-coldmem
bin=target/$target/release

mkdir -p "$out"
out=$(cd "$out" && pwd)
store=$out/buildah
rm -rf "$store"
trap 'rm -rf "$store"' EXIT
bah() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

# Refuses a binary that would need a dynamic loader in an empty image.
check_static() {
  if ldd "$1" 2>&1 | grep -q '=>'; then
    echo "$1 is dynamically linked; an image FROM scratch cannot run it" >&2
    exit 1
  fi
}

printf 'name\treference\tarchive\tbytes\n' >"$out/images.tsv"
# build NAME BINARY REFERENCE VERSION: one image from deploy/images/NAME.Containerfile.
build() {
  local name=$1 binary=$2 ref=$3 version=$4
  check_static "$binary"
  local ctx=$store/context/$name
  mkdir -p "$ctx"
  # Without the line tables the release profile keeps for profiling (100 MB → a tenth).
  strip -o "$ctx/$(basename "$binary")" "$binary"
  log "buildah bud $ref"
  bah bud --quiet --isolation chroot --layers=false \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    -f "deploy/images/$name.Containerfile" -t "$ref" "$ctx" >/dev/null
  rm -f "$out/$name.oci.tar"
  bah push --quiet "$ref" "oci-archive:$out/$name.oci.tar:$ref" >/dev/null
  printf '%s\t%s\t%s\t%s\n' "$name" "$ref" "$out/$name.oci.tar" "$(stat -c %s "$out/$name.oci.tar")" >>"$out/images.tsv"
}

build tide-scheduler "$bin/tide-scheduler" "docker.io/tide/tide-scheduler:$version" "$version"
build tide-agent "$bin/tide-agent" "docker.io/tide/tide-agent:$version" "$version"
if [[ -n "$kube_scheduler" ]]; then
  ks_version=$("$kube_scheduler" --version 2>/dev/null | awk '{print $2}')
  ks_version=${ks_version:-dev}
  build kube-scheduler "$kube_scheduler" "docker.io/tide/kube-scheduler:$ks_version" "$ks_version"
fi
check_static "$bin/tide-coldmem"
strip -o "$out/tide-coldmem" "$bin/tide-coldmem"
printf 'tide-coldmem\t-\t%s\t%s\n' "$out/tide-coldmem" "$(stat -c %s "$out/tide-coldmem")" >>"$out/images.tsv"

column -t -s $'\t' "$out/images.tsv" >&2 || cat "$out/images.tsv" >&2

#!/usr/bin/env bash
# Builds Kubernetes v1.20.2 (kube-apiserver, kube-scheduler, kube-controller-manager, kubelet)
# from Debian bookworm's `kubernetes` source package with Debian's Go, and caches the binaries
# outside the clone, keyed by the source version, so a reused machine does not rebuild.
#
# Prints the directory holding the binaries on its last line of stdout. Facts behind each step:
# ../shared/k8s/README.md. Usage: scripts/build-k8s.sh [--print-dir]
#   TIDE_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/tide)
set -euo pipefail

SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="v1.20.2"
COMPONENTS=(kube-apiserver kube-scheduler kube-controller-manager kubelet)

cache_root="${TIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tide}"
out="$cache_root/k8s/$SRC_VERSION"
bin="$out/bin"

log() { printf '==> %s\n' "$*" >&2; }

have_all() {
  [[ -f "$bin/.complete" ]] || return 1
  for c in "${COMPONENTS[@]}"; do [[ -x "$bin/$c" ]] || return 1; done
}

if [[ "${1:-}" == "--print-dir" ]]; then
  have_all || { echo "not built: run scripts/build-k8s.sh" >&2; exit 1; }
  echo "$bin"
  exit 0
fi

if have_all; then
  log "Kubernetes $K8S_VERSION binaries cached in $bin"
  echo "$bin"
  exit 0
fi

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
need=()
for pkg in golang-go make rsync golang-github-modern-go-reflect2-dev dpkg-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

work="$out/work"
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/parts" "$work/src"

# The source through a private apt configuration: /etc/apt stays untouched.
echo "deb-src http://deb.debian.org/debian bookworm main" >"$work/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=$work/apt/parts"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -qq)
log "fetching the kubernetes $SRC_VERSION source package"
apt-get "${apt_opts[@]}" update >&2
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$SRC_VERSION" >&2)
orig=$(ls "$work/src"/kubernetes_*.orig.tar.gz)

# GOPATH mode: the tree at $GOPATH/src/k8s.io/kubernetes.
gopath="$work/gopath"
tree="$gopath/src/k8s.io/kubernetes"
mkdir -p "$tree"
log "unpacking $(basename "$orig")"
tar -xzf "$orig" -C "$tree" --strip-components=1

# The vendored reflect2 v1.0.1 breaks json-iterator on Go >= 1.18: use Debian's 1.0.2.
r2="$tree/vendor/github.com/modern-go/reflect2"
find "$r2" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r2/"
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r2/" 2>/dev/null || true
find "$r2" -maxdepth 1 -name '*_test.go' -delete

export GOPATH="$gopath" GO111MODULE=off CGO_ENABLED=0 GOPROXY=off GOFLAGS= GOCACHE="$work/gocache"
cd "$tree"
log "make gen_openapi"
make gen_openapi >&2

pkg=k8s.io/kubernetes/vendor/k8s.io
ldflags="-s -w"
for p in "$pkg/component-base/version" "$pkg/client-go/pkg/version"; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
mkdir -p "$bin"
# One `go build` for all four commands: their shared packages compile once, and each link
# (one core, ~100 MB of output) overlaps with compiling what the next command still needs
# instead of leaving the second core idle. GOGC=400 lets the compiler collect less often:
# the same output, less time in the toolchain's garbage collector.
log "go build ${COMPONENTS[*]}"
GOGC=400 go build -o "$bin/" -ldflags "$ldflags" "${COMPONENTS[@]/#/k8s.io/kubernetes/cmd/}" >&2
"$bin/kube-apiserver" --version >&2
echo "$SRC_VERSION $K8S_VERSION" >"$bin/.complete"
cd /
rm -rf "$work"
log "Kubernetes $K8S_VERSION built into $bin"
echo "$bin"

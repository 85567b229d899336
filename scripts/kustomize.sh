#!/usr/bin/env bash
# kustomize for rendering deploy/: Debian trixie's `kustomize` package, fetched through a
# private apt configuration (/etc/apt untouched) and unpacked into a cache outside the clone
# (nothing installed machine-wide; the binary needs only libc6 >= 2.34, which bookworm has).
#
#   scripts/kustomize.sh --install   fetch it into the cache unless there; print its path
#   scripts/kustomize.sh --path      print the kustomize used (non-zero if none)
#   scripts/kustomize.sh DIR         render the kustomization in DIR to stdout
#
# The kustomize used: $TIDE_KUSTOMIZE, else the cached trixie build, else `kustomize` on PATH,
# else `kubectl kustomize` when that kubectl embeds kustomize v5 (bookworm's kubectl 1.20 has
# kustomize v2, which lacks what deploy/ uses).
#   TIDE_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/tide)
set -euo pipefail

PKG_VERSION="5.6.0+ds-1+b2"
cache_root="${TIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tide}"
out="$cache_root/kustomize/$PKG_VERSION"
cached="$out/root/usr/bin/kustomize"

log() { printf '==> %s\n' "$*" >&2; }

# Prints the command that renders a directory (one word, or "kubectl kustomize").
find_kustomize() {
  if [[ -n "${TIDE_KUSTOMIZE:-}" ]]; then
    echo "$TIDE_KUSTOMIZE"
  elif [[ -x "$cached" ]]; then
    echo "$cached"
  elif command -v kustomize >/dev/null 2>&1; then
    command -v kustomize
  elif command -v kubectl >/dev/null 2>&1 &&
    kubectl version --client 2>/dev/null | grep -qE '^Kustomize Version: v[5-9]'; then
    echo "kubectl kustomize"
  else
    return 1
  fi
}

install() {
  if [[ -x "$cached" ]]; then
    echo "$cached"
    return
  fi
  local work="$out/work"
  rm -rf "$work" "$out/root"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/parts" "$out/root"
  echo "deb http://deb.debian.org/debian trixie main" >"$work/apt/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list"
    -o "Dir::Etc::SourceParts=$work/apt/parts" -o "Dir::State::Lists=$work/apt/lists"
    -o "Dir::Cache=$work/apt/cache" -qq)
  log "fetching Debian trixie's kustomize $PKG_VERSION"
  apt-get "${apt_opts[@]}" update >&2
  (cd "$work" && apt-get "${apt_opts[@]}" download "kustomize=$PKG_VERSION" >&2)
  dpkg-deb -x "$work"/kustomize_*.deb "$out/root"
  rm -rf "$work"
  "$cached" version >&2
  echo "$cached"
}

case "${1:-}" in
  --install) install ;;
  --path) find_kustomize || { echo "no kustomize: run scripts/kustomize.sh --install" >&2; exit 1; } ;;
  "" | -*) sed -n '2,12p' "$0" >&2; exit 2 ;;
  *)
    k=$(find_kustomize) || { echo "no kustomize: run scripts/kustomize.sh --install" >&2; exit 1; }
    if [[ "$k" == "kubectl kustomize" ]]; then
      exec kubectl kustomize "$1"
    fi
    exec "$k" build "$1"
    ;;
esac

#!/usr/bin/env bash
# Fuzz targets of every component (each `*/fuzz` crate, built by cargo-fuzz).
#
#   scripts/fuzz.sh replay        build every target without instrumentation and run each one
#                                 over its checked-in corpus (CI: cheap, no nightly, no
#                                 cargo-fuzz; a regression in a corpus input fails the build)
#   scripts/fuzz.sh run [SECS]    fuzz every target for SECS seconds each (default 60) with
#                                 cargo-fuzz; new inputs go to <crate>/fuzz/target/corpus/<target>,
#                                 crashes to <crate>/fuzz/artifacts/<target>
#   scripts/fuzz.sh run SECS T..  only the targets named
#
# The pinned stable toolchain is allowed cargo-fuzz's nightly flags through RUSTC_BOOTSTRAP;
# no sanitizer is used (the code is safe Rust: panics, overflows, hangs and runaway
# allocations are what is looked for; `-malloc_limit_mb` turns the last into a crash).
set -euo pipefail
cd "$(dirname "$0")/.."

# FUZZ_CRATES="cold-memory/fuzz" narrows either mode to some crates.
read -r -a crates <<< "${FUZZ_CRATES:-scheduler-plugin/fuzz datasets/fuzz qos-agent/fuzz cold-memory/fuzz}"
mode="${1:-replay}"

# The targets' scratch files go here and are removed with it, whatever happens.
TIDE_FUZZ_SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tide-fuzz.XXXXXX")
[[ -d /dev/shm && -w /dev/shm ]] && TIDE_FUZZ_SCRATCH=$(rm -rf "$TIDE_FUZZ_SCRATCH"; mktemp -d /dev/shm/tide-fuzz.XXXXXX)
export TIDE_FUZZ_SCRATCH
trap 'rm -rf "$TIDE_FUZZ_SCRATCH"' EXIT

targets_of() {
  sed -n 's/^name = "\(.*\)"$/\1/p' "$1/Cargo.toml" | tail -n +2
}

case "$mode" in
  replay)
    # One target folder for every fuzz crate: the dependencies are built once.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz-replay}"
    for c in "${crates[@]}"; do
      cargo build --quiet --locked --manifest-path "$c/Cargo.toml"
      for t in $(targets_of "$c"); do
        corpus="$c/corpus/$t"
        [[ -d "$corpus" ]] || { echo "fuzz: $c: target $t has no corpus at $corpus" >&2; exit 1; }
        n=$(find "$corpus" -type f | wc -l)
        # Files given one by one: libFuzzer runs each once, instrumented or not.
        find "$corpus" -type f -print0 \
          | xargs -0 -r "$CARGO_TARGET_DIR/debug/$t" -rss_limit_mb=2048 -malloc_limit_mb=1024 >/dev/null 2>"$CARGO_TARGET_DIR/$t.log" \
          || { cat "$CARGO_TARGET_DIR/$t.log" >&2; echo "fuzz: $c $t failed on its corpus" >&2; exit 1; }
        printf 'fuzz corpus replayed: %-40s %4d inputs\n' "$c/$t" "$n"
      done
    done
    ;;
  run)
    secs="${2:-60}"
    shift $(( $# > 1 ? 2 : 1 ))
    only=("$@")
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
    for c in "${crates[@]}"; do
      for t in $(targets_of "$c"); do
        if ((${#only[@]})) && [[ ! " ${only[*]} " == *" $t "* ]]; then continue; fi
        mkdir -p "$c/target/corpus/$t"
        (cd "$(dirname "$c")" && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none \
          --target-dir "$PWD/../target/fuzz" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
          -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10)
      done
    done
    ;;
  *)
    echo "usage: scripts/fuzz.sh replay | run [SECS] [TARGET...]" >&2
    exit 2
    ;;
esac

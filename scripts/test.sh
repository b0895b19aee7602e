#!/usr/bin/env bash
# tsforge's test command: formatting, lints, the Windows runner build, every test (the Wine test
# of the Windows runner included). Run from anywhere; scripts/setup.sh installs what it needs.
#
#   scripts/test.sh
#
# With CI=true, a missing tool (wine, mingw, …) fails the tests instead of skipping them
# (TSFORGE_REQUIRE_TOOLS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOWS_TARGET=x86_64-pc-windows-gnu
started=$SECONDS
phase() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }

if [ "${CI:-}" = true ]; then
    export TSFORGE_REQUIRE_TOOLS=1
fi

phase "cargo fmt --all --check"
cargo fmt --all --check

phase "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

phase "cargo build --target $WINDOWS_TARGET -p tsforge (the Windows runner)"
# The exe's path comes from cargo itself, so CARGO_TARGET_DIR and build.target-dir both work.
exe=$(cargo build --target "$WINDOWS_TARGET" -p tsforge --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*tsforge\.exe\)".*/\1/p' | tail -n 1)
if [ -z "$exe" ] || [ ! -f "$exe" ]; then
    echo "test.sh: error: cargo built no tsforge.exe" >&2
    exit 1
fi
export TSFORGE_WINDOWS_EXE="$exe"
echo "TSFORGE_WINDOWS_EXE=$exe"

phase "cargo test --workspace"
# The end-to-end tests (tests/e2e_qemu.rs) append their boot times here.
e2e_times=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/tmp/e2e/times.txt
rm -f "$e2e_times"
cargo test --workspace
if [ -f "$e2e_times" ]; then
    phase "QEMU end-to-end times (tests/e2e_qemu.rs, TCG)"
    cat "$e2e_times"
fi

if [ -f fuzz/Cargo.toml ]; then
    phase "cargo check (fuzz/)"
    cargo check --manifest-path fuzz/Cargo.toml --bins
    # Every fuzz target for FUZZ_SECONDS (default 20) from its seeds and kept regression
    # inputs; a new crash fails the tests (fuzz/README.md). FUZZ_SECONDS=0 skips it.
    if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
        if command -v cargo-fuzz >/dev/null 2>&1; then
            phase "fuzz/run.sh ${FUZZ_SECONDS:-20} (every target)"
            bash fuzz/run.sh "${FUZZ_SECONDS:-20}"
        elif [ "${TSFORGE_REQUIRE_TOOLS:-}" = 1 ]; then
            echo "test.sh: cargo-fuzz is missing (TSFORGE_REQUIRE_TOOLS=1); run scripts/setup.sh" >&2
            exit 1
        else
            echo "SKIP fuzzing: cargo-fuzz is not installed (scripts/setup.sh installs it)"
        fi
    fi
fi

phase "all passed"

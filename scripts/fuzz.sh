#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time: FUZZ_SECONDS each
# (default 20), or only the targets named as arguments. Installs cargo-fuzz when missing.
# A finding fails the run and names the input; fuzz/README.md says what to do with it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
cargo_fuzz_version=0.13.2
tools="$PWD/target/fuzz-tools"
export PATH="$tools/bin:$PATH"
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    echo "scripts/fuzz.sh: installing cargo-fuzz $cargo_fuzz_version in $tools"
    cargo install -q --locked --root "$tools" cargo-fuzz --version "$cargo_fuzz_version"
fi

# No sanitizer: the workspace forbids unsafe code, and AddressSanitizer (cargo-fuzz's
# default) slows the build and every run. Without one, cargo-fuzz gives rustc only stable
# flags (coverage instrumentation, --cfg fuzzing), so the stable toolchain builds the
# targets: CI needs no nightly.
build=(--sanitizer none --target-dir target/fuzz)

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build "${build[@]}"
for target in "${targets[@]}"; do
    # New inputs go to a scratch corpus under target/, the kept one (fuzz/corpus) is
    # only read; a failing input is written under target/fuzz/artifacts.
    scratch="target/fuzz/corpus/$target"
    artifacts="target/fuzz/artifacts/$target"
    mkdir -p "$scratch" "$artifacts"
    echo "scripts/fuzz.sh: $target for ${seconds}s"
    if ! cargo fuzz run "${build[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"target/fuzz/$target.log" 2>&1; then
        tail -n 60 "target/fuzz/$target.log"
        echo "scripts/fuzz.sh: $target failed; the input is in $artifacts (see fuzz/README.md)"
        exit 1
    fi
    grep -E '^stat::number_of_executed_units|^Done' "target/fuzz/$target.log" || true
done

#!/usr/bin/env bash
# The whole test suite, as the README gives it. Installs what the tests need when it is
# missing, so that a fresh machine with only Rust needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-features

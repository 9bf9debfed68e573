#!/usr/bin/env bash
# The whole test suite, as the README gives it. Installs what the tests need when it is
# missing, so that a fresh machine with only Rust needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# Redis tests start their own redis-server processes on free loopback ports (and a local
# Redis Cluster with redis-cli); they need the Debian packages, not a running service.
# The TLS test makes its certificates with openssl.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]} (Debian packages)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --workspace --all-features

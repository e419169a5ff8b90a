#!/usr/bin/env bash
# What the gateway costs: the same `coffer bench` workloads against one release `coffer serve` directly, then through
# a release `coffer gateway` whose only backend is that node (http://127.0.0.1:PORT/store), in the same run. The
# gateway may open GW_CONNS connections to the node (default 64, as many as the clients; its own default is 10).
#   bench/gateway.sh [seconds per row, default 10]
# Every answer is integrity-checked; the script fails on invalid or lost data. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
swift build -c release --product coffer >/dev/null
bin=$PWD/.build/release/coffer
work=$(mktemp -d /var/tmp/coffer-gateway-bench.XXXXXX)
node_port=7841
gw_port=7842
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$bin" serve --listen 127.0.0.1:$node_port --dir "$work/node" >"$work/node.log" 2>&1 &
pids+=($!)
"$bin" gateway --listen 127.0.0.1:$gw_port --max-conns-per-backend "${GW_CONNS:-64}" --backend http://127.0.0.1:$node_port/store >"$work/gw.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
until curl -sf http://127.0.0.1:$node_port/health >/dev/null; do sleep 0.05; done
until curl -s -o /dev/null http://127.0.0.1:$gw_port/store/x; do sleep 0.05; done

run() { # url mix size conns -> "req/s p99-ms"
    "$bin" bench --url "$1" --mix "$2" --size "$3" -c "$4" --keys 1000 --duration "${secs}s" --warmup 2s \
        --json --quiet >"$work/r.json"
    python3 - "$work/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["total"]
assert r["invalid"] == 0 and r["lost"] == 0, "invalid or lost data"
s = r["total"]["status"]
assert s.get("errors", 0) == 0 and s.get("5xx", 0) == 0, f"errors or 5xx: {s}"
print(f'{t["requestsPerSecond"]:.0f} {t["latencyMs"]["p99"]:.1f}')
PY
}
echo "| workload (coffer bench, c=64 unless noted, 1000 keys) | node req/s | via gateway req/s | gateway/node | node p99 ms | gateway p99 ms |"
echo "|---|---|---|---|---|---|"
row() { # name mix size conns
    local d g
    sync
    d=$(run http://127.0.0.1:$node_port/store "$2" "$3" "$4")
    sync
    g=$(run http://127.0.0.1:$gw_port/store "$2" "$3" "$4")
    set -- "$1" $d $g
    printf '| %s | %s | %s | %.2f | %s | %s |\n' "$1" "$2" "$4" "$(echo "$4 / $2" | bc -l)" "$3" "$5"
}
row "GET 1 KiB" get=100 1KiB 64
row "PUT 1 KiB" put=100 1KiB 64
row "90/10 GET/PUT 1 KiB" get=90,put=10 1KiB 64
row "GET 1 MiB c=16" get=100 1MiB 16
echo
echo "gateway RSS: $(awk '/VmHWM/ { printf "%.0f MiB peak", $2 / 1024 }' /proc/$gw_pid/status)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"

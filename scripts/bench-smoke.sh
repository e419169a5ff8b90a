#!/usr/bin/env bash
# A few seconds of `coffer bench` (JSON report) against a `coffer serve` on a free loopback port: fails on invalid or
# lost data, on errors or 5xx, or when no request was answered. Part of `make test`.
#   scripts/bench-smoke.sh [build directory, default .build]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${1:-.build}
swift build --scratch-path "$scratch" --product coffer
bin=$scratch/debug/coffer
dir=$(mktemp -d)
"$bin" serve --listen 127.0.0.1:0 --dir "$dir/data" 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
port=""
for _ in $(seq 200); do
    port=$(sed -n 's/.*address=.*:\([0-9][0-9]*\) .*listening.*/\1/p' "$dir/serve.log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { cat "$dir/serve.log"; echo "bench-smoke: the node did not start"; exit 1; }
status=0
"$bin" bench --url "http://127.0.0.1:$port/store" --duration 3s --warmup 1s -c 16 --keys 400 \
    --size 0-64KiB --mix get=70,put=20,post=5,delete=5 --json >"$dir/report.json" || status=$?
requests=$(awk '/"requests" :/ { gsub(",", ""); print $3; exit }' "$dir/report.json")
if [ "$status" -ne 0 ] || [ "${requests:-0}" -eq 0 ] || grep -qE '"(5xx|errors)" : [1-9]' "$dir/report.json"; then
    cat "$dir/report.json"
    echo "bench-smoke: 0 passed, 1 failed (exit $status, ${requests:-0} requests)"
    exit 1
fi
echo "coffer bench: $requests requests in 3 s, 0 invalid, 0 lost"
echo "bench-smoke: 1 passed, 0 failed"

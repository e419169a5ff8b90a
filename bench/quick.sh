#!/usr/bin/env bash
# A quick look at the node's speed on this machine: durable PUT and GET of 1 KiB blobs with wrk, the node's memory,
# and the restart time with everything written. Not a comparison (that is bench/compare.sh, to come): one run's
# numbers, to be quoted with the machine and this command.
#   bench/quick.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
swift build -c release --product coffer >/dev/null
bin=.build/release/coffer
dir=$(mktemp -d)
port=7790
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
start() {
    local t0 t1
    t0=$(date +%s%N)
    "$bin" serve --listen 127.0.0.1:$port --dir "$dir" >>"$dir.log" 2>&1 &
    pid=$!
    until curl -sf http://127.0.0.1:$port/health >/dev/null 2>&1; do sleep 0.01; done
    t1=$(date +%s%N)
    echo "startup to first answer: $(( (t1 - t0) / 1000000 )) ms"
}
rss() { awk '/VmRSS/ {print $2 / 1024 " MiB"}' /proc/$pid/status; }
start
echo "RSS empty: $(rss)"
echo "== PUT 1 KiB, new key each, c=64, ${secs}s (every write fsynced before its answer)"
BODY_SIZE=1024 wrk -t2 -c64 -d"${secs}s" -s bench/put-unique.lua http://127.0.0.1:$port | grep -E 'Requests/sec|Latency|requests in|Non-2xx'
blobs=$(ls "$dir"/segments | wc -l)
echo "RSS after PUTs: $(rss)"
echo "== GET 1 KiB, c=64, ${secs}s"
KEYS=1000 THREADS=2 wrk -t2 -c64 -d"${secs}s" -s bench/get-keys.lua http://127.0.0.1:$port | grep -E 'Requests/sec|Latency|requests in|Non-2xx'
kill "$pid"; wait "$pid" || true; pid=""
start
grep 'recovery done' "$dir.log" | tail -1
echo "RSS after restart (index only): $(rss)"
rm -f "$dir.log"

#!/usr/bin/env bash
# The fileserver challenge: five of its file servers (Tests/Fixtures/challenge-fileserver.py, the double with every
# habit of the Go original: 333 ms a request, 429 past 15 in flight, per-process name caches and locks,
# truncate-then-write PUTs, chunked GETs, 200 with the error text when an open fails) sharing one directory, behind
#   1. nginx round robin (2 workers, keepalive 10 per server, access log off), the baseline the challenge suggests;
#   2. `coffer gateway --shared-volume --max-conns-per-backend 10` (release build, its defaults otherwise).
# Each is driven by `coffer bench` with the challenge tester's mix, in the same run, one after the other, against the
# same five servers (restarted between rows, with an empty volume):
#   coffer bench --mix get=75,put=1,delete=1 --keys 3000 -c 50 --size 1KiB
# coffer bench checks every answer against what was acknowledged: invalid (a wrong body) and lost (an acknowledged
# write gone) are counted, as are 5xx and transport errors.
#   bench/fileserver.sh [seconds measured per row, default 30]
# Environment: KEYS (3000), CONNS (50), SIZE (1KiB), MIX (get=75,put=1,delete=1), LATENCY_MS (333).
# Installs nginx from Debian's packages if it is missing. Prints a Markdown table; exits 1 if Coffer's row has invalid
# or lost answers or any 5xx.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
keys=${KEYS:-3000}
conns=${CONNS:-50}
size=${SIZE:-1KiB}
mix=${MIX:-get=75,put=1,delete=1}
latency=${LATENCY_MS:-333}
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
swift build -c release --product coffer >/dev/null
bin=$PWD/.build/release/coffer
work=$(mktemp -d /var/tmp/coffer-fileserver-bench.XXXXXX)
front_port=7851
fs_ports=(7861 7862 7863 7864 7865)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

servers_up() { # starts five file servers on an empty shared volume
    rm -rf "$work/volume"
    mkdir -p "$work/volume"
    fs_pids=()
    for port in "${fs_ports[@]}"; do
        python3 Tests/Fixtures/challenge-fileserver.py --port "$port" --dir "$work/volume" --latency-ms "$latency" \
            >"$work/fs-$port.log" 2>&1 &
        fs_pids+=($!)
        pids+=($!)
    done
    for port in "${fs_ports[@]}"; do
        until curl -s -o /dev/null "http://127.0.0.1:$port/health"; do sleep 0.05; done
    done
}
servers_down() {
    for pid in "${fs_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

run() { # label -> prints a table row from coffer bench's JSON report; returns bench's exit status
    local label=$1 status=0
    "$bin" bench --url "http://127.0.0.1:$front_port/api/fileserver" --mix "$mix" --keys "$keys" -c "$conns" \
        --size "$size" --duration "${secs}s" --warmup 5s --json --quiet \
        >"$work/report.json" 2>"$work/bench.err" || status=$?
    python3 - "$label" "$work/report.json" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
t = r["total"]
s = t["status"]
print(f'| {label} | {t["requestsPerSecond"]:.0f} | {t["bestSecond"]} | {s.get("2xx", 0)} | {s.get("4xx", 0)} '
      f'| {s.get("5xx", 0)} | {s.get("errors", 0)} | {r["invalid"]} | {r["lost"]} | {t["latencyMs"]["p50"]:.1f} '
      f'| {t["latencyMs"]["p99"]:.1f} |')
with open(path + ".rate", "w") as f:
    f.write(f'{t["requestsPerSecond"]:.3f} {r["invalid"]} {r["lost"]} {s.get("5xx", 0)}\n')
PY
    return $status
}

echo "coffer bench --mix $mix --keys $keys -c $conns --size $size, ${secs} s measured after 5 s warmup (prefill and final check unmeasured); five file servers at ${latency} ms a request, 429 past 15 in flight"
echo
echo "| front | req/s | best second | 2xx | 4xx | 5xx | errors | invalid | lost | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"

# 1. nginx round robin
servers_up
{
    echo "worker_processes 2; pid $work/nginx.pid; error_log $work/nginx-error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; client_max_body_size 0; client_body_temp_path $work/ngx; proxy_temp_path $work/ngx;"
    echo "  upstream fileservers {"
    for port in "${fs_ports[@]}"; do echo "    server 127.0.0.1:$port max_conns=10;"; done
    echo "    keepalive 10;"
    echo "  }"
    echo "  server { listen 127.0.0.1:$front_port;"
    echo "    location / { proxy_pass http://fileservers; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    echo "      proxy_request_buffering off; proxy_buffering off; proxy_read_timeout 300s; } } }"
} >"$work/nginx.conf"
mkdir -p "$work/ngx"
nginx -c "$work/nginx.conf"
until curl -s -o /dev/null "http://127.0.0.1:$front_port/api/fileserver/x"; do sleep 0.05; done
run "nginx round robin" || true
nginx_rate=$(cut -d' ' -f1 "$work/report.json.rate")
nginx_pid=$(cat "$work/nginx.pid")
kill "$nginx_pid"
while kill -0 "$nginx_pid" 2>/dev/null; do sleep 0.05; done
servers_down

# 2. coffer gateway --shared-volume
servers_up
backends=()
for port in "${fs_ports[@]}"; do backends+=(--backend "http://127.0.0.1:$port/api/fileserver"); done
"$bin" gateway --listen 127.0.0.1:$front_port --shared-volume --max-conns-per-backend 10 "${backends[@]}" \
    >"$work/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
until curl -s -o /dev/null "http://127.0.0.1:$front_port/health"; do sleep 0.05; done
status=0
run "coffer gateway --shared-volume" || status=$?
read -r coffer_rate invalid lost fivexx <"$work/report.json.rate"
gw_rss=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' /proc/$gw_pid/status)
servers_down

echo
echo "coffer/nginx: $(python3 -c "print(f'{$coffer_rate / max($nginx_rate, 0.001):.1f}')")x;" \
    "backends' ceiling 5 x 10 / $(python3 -c "print($latency / 1000)") s = $(python3 -c "print(round(50 / ($latency / 1000)))") req/s;" \
    "gateway VmHWM ${gw_rss} MiB"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
if [ "$status" -ne 0 ] || [ "$invalid" -ne 0 ] || [ "$lost" -ne 0 ] || [ "$fivexx" -ne 0 ]; then
    echo "fileserver bench: coffer's row has invalid=$invalid lost=$lost 5xx=$fivexx (bench exit $status)"
    exit 1
fi

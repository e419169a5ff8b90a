#!/usr/bin/env bash
# Coffer next to nginx on this machine, one after the other in the same run, and the ratio coffer/nginx per row.
# nginx: 2 workers, access log off, WebDAV PUT/DELETE on, data on the same disk as Coffer's. Pure-throughput rows use
# wrk; the mixed row uses `coffer bench`, which checks every answer (invalid and lost must be 0).
#   bench/compare.sh [seconds per row, default 10]
# Installs nginx and wrk from Debian's packages if they are missing. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light wrk >/dev/null; }
done
swift build -c release --product coffer >/dev/null
bin=$PWD/.build/release/coffer
work=$(mktemp -d /var/tmp/coffer-compare.XXXXXX)
coffer_port=7831
nginx_port=7832
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/dav/store" "$work/nginx-tmp"
# nginx's workers run as nobody: let them into the work folder and own what they write.
chmod 755 "$work"
chown -R nobody:nogroup "$work/dav" "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
user nobody nogroup;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_max_body_size 0;
    client_body_temp_path $work/nginx-tmp;
    proxy_temp_path $work/nginx-tmp;
    fastcgi_temp_path $work/nginx-tmp;
    uwsgi_temp_path $work/nginx-tmp;
    scgi_temp_path $work/nginx-tmp;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/dav;
        location / {
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }
    }
}
EOF
nginx -c "$work/nginx.conf"
"$bin" serve --listen 127.0.0.1:$coffer_port --dir "$work/coffer" >"$work/coffer.log" 2>&1 &
coffer_pid=$!
pids+=("$coffer_pid")
until curl -sf http://127.0.0.1:$coffer_port/health >/dev/null; do sleep 0.05; done
until curl -s -o /dev/null http://127.0.0.1:$nginx_port/; do sleep 0.05; done

# The same bytes under the same paths on both: /store/bench/1-<k> for k in 2..1001 (see bench/get-keys.lua).
seed_blobs() {
    local size=$1
    head -c "$size" /dev/urandom >"$work/blob"
    for k in $(seq 2 1001); do
        curl -sf -X PUT --data-binary @"$work/blob" http://127.0.0.1:$coffer_port/store/bench/1-$k -o /dev/null
        curl -sf -X PUT --data-binary @"$work/blob" http://127.0.0.1:$nginx_port/store/bench/1-$k -o /dev/null
    done
}
rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'; }
wrk_row() { # name, connections, script, env...
    local name=$1 conns=$2 script=$3
    shift 3
    local c n
    # Each measurement starts with no dirty pages, so neither server pays for the other's (or the seeding's) writeback.
    sync
    c=$(env "$@" wrk -t2 -c"$conns" -d"${secs}s" -s "$script" http://127.0.0.1:$coffer_port | rps)
    sync
    n=$(env "$@" wrk -t2 -c"$conns" -d"${secs}s" -s "$script" http://127.0.0.1:$nginx_port | rps)
    printf '| %s | %.0f | %.0f | %.2f |\n' "$name" "$c" "$n" "$(echo "$c / $n" | bc -l)"
}

echo "| row | coffer req/s | nginx req/s | coffer/nginx |"
echo "|---|---|---|---|"
seed_blobs 1024
wrk_row "GET 1 KiB c=64" 64 bench/get-keys.lua KEYS=1000 THREADS=1
seed_blobs 65536
wrk_row "GET 64 KiB c=64" 64 bench/get-keys.lua KEYS=1000 THREADS=1
seed_blobs 1048576
wrk_row "GET 1 MiB c=16" 16 bench/get-keys.lua KEYS=1000 THREADS=1
wrk_row "PUT 1 KiB c=64 (new keys; coffer fsyncs, nginx does not)" 64 bench/put-unique.lua BODY_SIZE=1024 PREFIX=put1k
wrk_row "PUT 64 KiB c=64 (new keys)" 64 bench/put-unique.lua BODY_SIZE=65536 PREFIX=put64k
mixed() { # base url -> requests/s; `coffer bench` exits non-zero (and so does this script) on invalid or lost data
    "$bin" bench --url "$1" --key-prefix mix --size 1KiB --keys 1000 -c 64 --duration "${secs}s" --warmup 2s \
        --mix get=90,put=10 --json --quiet >"$work/mixed.json"
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["total"]["requestsPerSecond"])' "$work/mixed.json"
}
sync
c=$(mixed http://127.0.0.1:$coffer_port/store)
sync
n=$(mixed http://127.0.0.1:$nginx_port/store)
printf '| %s | %.0f | %.0f | %.2f |\n' "90/10 GET/PUT 1 KiB c=64 (coffer bench, checked)" "$c" "$n" "$(echo "$c / $n" | bc -l)"
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"

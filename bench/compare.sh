#!/usr/bin/env bash
# Coffer next to nginx on this machine, one after the other in the same run, and the ratio coffer/nginx per row.
# nginx: 2 workers, access log off, WebDAV PUT/DELETE on, data on the same disk as Coffer's. Pure-throughput rows use
# wrk; the mixed row uses `coffer bench`, which checks every answer (invalid and lost must be 0).
#   bench/compare.sh [seconds per row, default 10]
# Environment: BIG_MIB (the big blob, default 1024), FILL_BLOBS (blobs for the restart row, default 1000000).
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

# One big blob, PUT then GET, on a fresh node so that its peak RSS (VmHWM) is the transfer's own. The disk's
# sequential write rate is measured the way a durable PUT writes: 1 MiB writes of the same bytes, then fdatasync.
big_mib=${BIG_MIB:-1024}
head -c $((big_mib << 20)) /dev/urandom >"$work/big"
mibps() { echo "$big_mib / $1" | bc -l; } # seconds -> MiB/s
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
sync
t0=$(date +%s%N)
dd if="$work/big" of="$work/dd.out" bs=1M conv=fdatasync status=none
t1=$(date +%s%N)
rm -f "$work/dd.out"
disk=$(mibps "$(echo "($t1 - $t0) / 1000000000" | bc -l)")
big_port=$((coffer_port + 2))
"$bin" serve --listen 127.0.0.1:$big_port --dir "$work/coffer-big" >"$work/coffer-big.log" 2>&1 &
big_pid=$!
pids+=("$big_pid")
until curl -sf http://127.0.0.1:$big_port/health >/dev/null; do sleep 0.05; done
put_secs() { curl -sf -T "$work/big" -o /dev/null -w '%{time_total}' "$1"; }
get_secs() { curl -sf -o /dev/null -w '%{time_total}' "$1"; }
sync
cp_=$(put_secs http://127.0.0.1:$big_port/store/big/one)
sync
np_=$(put_secs http://127.0.0.1:$nginx_port/store/big/one)
hwm_put=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' /proc/$big_pid/status)
# Both serve the same bytes: check Coffer's copy once, untimed.
curl -sf http://127.0.0.1:$big_port/store/big/one | cmp - "$work/big"
cg=$(median3 "$(get_secs http://127.0.0.1:$big_port/store/big/one)" "$(get_secs http://127.0.0.1:$big_port/store/big/one)" \
    "$(get_secs http://127.0.0.1:$big_port/store/big/one)")
ng=$(median3 "$(get_secs http://127.0.0.1:$nginx_port/store/big/one)" "$(get_secs http://127.0.0.1:$nginx_port/store/big/one)" \
    "$(get_secs http://127.0.0.1:$nginx_port/store/big/one)")
hwm_all=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' /proc/$big_pid/status)
kill "$big_pid"
wait "$big_pid" 2>/dev/null || true
rm -rf "$work/coffer-big" "$work/dav/store/big"
echo
echo "| ${big_mib} MiB blob | coffer MiB/s | reference MiB/s | ratio |"
echo "|---|---|---|---|"
printf '| PUT, fsynced before the answer (reference: dd of the same bytes + fdatasync) | %.0f | %.0f | %.2f |\n' \
    "$(mibps "$cp_")" "$disk" "$(echo "$(mibps "$cp_") / $disk" | bc -l)"
printf '| PUT (reference: nginx WebDAV, no fsync) | %.0f | %.0f | %.2f |\n' \
    "$(mibps "$cp_")" "$(mibps "$np_")" "$(echo "$np_ / $cp_" | bc -l)"
printf '| GET, median of 3 (reference: nginx sendfile) | %.0f | %.0f | %.2f |\n' \
    "$(mibps "$cg")" "$(mibps "$ng")" "$(echo "$ng / $cg" | bc -l)"
echo "node peak RSS (VmHWM of a fresh node): ${hwm_put} MiB after the PUT, ${hwm_all} MiB after the GETs"
rm -f "$work/big"

# Restart with many small blobs: fill a fresh node with FILL_BLOBS 1 KiB blobs (durable PUTs), stop it (SIGTERM),
# start it again and time the first answer. The index's memory per blob is (RSS after restart - RSS empty) / blobs.
fill=${FILL_BLOBS:-1000000}
fill_port=$((coffer_port + 3))
start_fill() {
    "$bin" serve --listen 127.0.0.1:$fill_port --dir "$work/coffer-fill" >>"$work/coffer-fill.log" 2>&1 &
    fill_pid=$!
    pids+=("$fill_pid")
    until curl -sf http://127.0.0.1:$fill_port/health >/dev/null; do sleep 0.01; done
}
rss_kib() { awk '/VmRSS/ { print $2 }' /proc/$fill_pid/status; }
start_fill
empty_kib=$(rss_kib)
t0=$(date +%s)
TOTAL=$fill THREADS=2 BODY_SIZE=1024 DONE="$work/fill-done" \
    wrk -t2 -c64 -d3600s -s bench/put-count.lua http://127.0.0.1:$fill_port >/dev/null &
wrk_pid=$!
until [ -e "$work/fill-done.1" ] && [ -e "$work/fill-done.2" ]; do sleep 0.2; done
kill -INT "$wrk_pid"
wait "$wrk_pid" || true
t1=$(date +%s)
filled_kib=$(rss_kib)
kill "$fill_pid"
wait "$fill_pid" 2>/dev/null || true
sync
t2=$(date +%s%N)
start_fill
t3=$(date +%s%N)
after_kib=$(rss_kib)
blobs=$(grep 'recovery done' "$work/coffer-fill.log" | tail -1 | sed -n 's/.*blobs=\([0-9]*\).*/\1/p')
recovery_ms=$(grep 'recovery done' "$work/coffer-fill.log" | tail -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p')
echo
echo "restart with $blobs blobs of 1 KiB (filled in $((t1 - t0)) s): first answer after $(( (t3 - t2) / 1000000 )) ms" \
    "(recovery ${recovery_ms} ms); RSS $((empty_kib / 1024)) MiB empty, $((filled_kib / 1024)) MiB after the fill," \
    "$((after_kib / 1024)) MiB after the restart: $(( (after_kib - empty_kib) * 1024 / blobs )) bytes per blob"
kill "$fill_pid"
wait "$fill_pid" 2>/dev/null || true

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"

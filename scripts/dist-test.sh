#!/usr/bin/env bash
# Extracts challenge.tar.gz into a fresh folder and runs challenge/bin/challenge-executable from the folder above it,
# as an unprivileged user, with no arguments: it must serve on 0.0.0.0:7777 with data under ./data, round-trip a blob,
# keep it across a restart, and stop cleanly on SIGTERM. Needs root (to drop to `nobody`) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f challenge.tar.gz ] || scripts/dist.sh
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
tar -C "$work" -xzf challenge.tar.gz
entries=$(tar -tzf challenge.tar.gz | sed 's#/$##' | sort | tr '\n' ' ')
[ "$entries" = "challenge challenge/bin challenge/bin/challenge-executable " ] || {
    echo "FAIL: unexpected archive contents: $entries"; exit 1; }
chmod 777 "$work"
if ldd "$work/challenge/bin/challenge-executable" 2>/dev/null | grep -q 'libswift'; then
    echo "FAIL: the executable links Swift runtime libraries dynamically"; exit 1
fi
run_as=()
if [ "$(id -u)" = 0 ]; then run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups); fi
start() {
    (cd "$work" && exec "${run_as[@]}" ./challenge/bin/challenge-executable) >>"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -sf http://127.0.0.1:7777/health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "FAIL: the server did not answer on 127.0.0.1:7777"; cat "$work/server.log"; exit 1
}
start
head -c 300000 /dev/urandom >"$work/payload"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$work/payload" http://127.0.0.1:7777/store/dist/test)
[ "$code" = 201 ] || { echo "FAIL: POST answered $code"; exit 1; }
kill -TERM "$pid"; wait "$pid" || { echo "FAIL: SIGTERM did not exit 0"; cat "$work/server.log"; exit 1; }
pid=""
[ -d "$work/data/segments" ] || { echo "FAIL: no ./data directory beside challenge/"; exit 1; }
start
curl -sf http://127.0.0.1:7777/store/dist/test | cmp - "$work/payload" || { echo "FAIL: blob differs after restart"; exit 1; }
kill -TERM "$pid"; wait "$pid"; pid=""
echo "dist: 1 passed, 0 failed"

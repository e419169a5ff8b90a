#!/usr/bin/env bash
# Builds challenge.tar.gz: exactly one folder, challenge/, holding challenge/bin/challenge-executable, a static-stdlib
# release build of `coffer` that serves with its defaults when run under that name.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${SCRATCH_PATH:-.build-dist}
swift build -c release --static-swift-stdlib --product coffer --scratch-path "$scratch"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/challenge/bin"
cp "$scratch/release/coffer" "$staging/challenge/bin/challenge-executable"
strip "$staging/challenge/bin/challenge-executable" 2>/dev/null || true
chmod 755 "$staging/challenge" "$staging/challenge/bin" "$staging/challenge/bin/challenge-executable"
tar -C "$staging" --owner=0 --group=0 -czf challenge.tar.gz challenge
echo "challenge.tar.gz: $(du -h challenge.tar.gz | cut -f1) compressed," \
    "executable $(du -h "$staging/challenge/bin/challenge-executable" | cut -f1)"

#!/usr/bin/env bash
# Installs what the test suites need and this machine lacks: Debian's packages (curl, util-linux's setpriv, binutils'
# strip, e2fsprogs and mount for the disk-full file systems, docker.io and busybox-static for the Docker suites,
# docker-compose for the compose check, iproute2, tar) and PyPI's moto server (the gateway's S3 backends). Python 3
# itself runs the fileserver-challenge double (Tests/Fixtures). Called by `make test` (and so by .ci/run); does nothing
# when everything is there. Needs root (or sudo) only when something is missing.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "install-test-deps: missing packages and not root: $*" >&2; exit 1
    fi
}

packages=()
need() { # tool package
    command -v "$1" >/dev/null 2>&1 || packages+=("$2")
}
need curl curl
need setpriv util-linux
need strip binutils
need mkfs.ext4 e2fsprogs
need mount mount
need losetup mount
need dockerd docker.io
need docker-compose docker-compose
need ip iproute2
need tar tar
need python3 python3
# The Docker tests build their image from a statically linked busybox (a dynamic one would not run in it).
dpkg -s busybox-static >/dev/null 2>&1 || packages+=(busybox-static)
if [ ${#packages[@]} -gt 0 ]; then
    mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
    echo "install-test-deps: installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The gateway's S3 tests run moto's server (one per backend) in place of MinIO.
if ! python3 -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
    echo "install-test-deps: installing moto[server] from PyPI"
    python3 -m pip install -q 'moto[server]'
fi
echo "install-test-deps: everything the tests need is installed"

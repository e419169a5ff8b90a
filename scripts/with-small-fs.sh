#!/usr/bin/env bash
# Runs a command with two freshly made 40 MiB ext4 file systems on loop devices (or, where loop devices are
# unavailable, 40 MiB tmpfs mounts, and says so), unmounted afterwards: COFFER_SMALL_FS for the engine's disk-full
# tests and COFFER_SMALL_FS_HTTP for the API's, which run at the same time. The tests fill them.
# Without root (or without any way to mount) the command runs without them, and those tests say they were skipped.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "small-fs: not root, cannot mount; the disk-full tests will be skipped"
    exec "$@"
fi
mounts=()
cleanup() {
    for mnt in "${mounts[@]}"; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
        rm -rf "$mnt" "$mnt.img"
    done
}
trap cleanup EXIT
kinds=()
# Makes one small file system; its mount point is appended to `mounts`.
make_fs() {
    local mnt
    mnt=$(mktemp -d /tmp/coffer-small-fs.XXXXXX)
    mounts+=("$mnt")
    if truncate -s 40M "$mnt.img" && mkfs.ext4 -q -F -m 0 -J size=1 "$mnt.img" && mount -o loop "$mnt.img" "$mnt"; then
        kinds+=("ext4 on a loop device")
    elif mount -t tmpfs -o size=40m tmpfs "$mnt"; then
        kinds+=("tmpfs (loop devices unavailable)")
    else
        return 1
    fi
}
if ! make_fs || ! make_fs; then
    echo "small-fs: could not mount; the disk-full tests will be skipped"
    "$@"
    exit $?
fi
echo "small-fs: ${kinds[0]} at ${mounts[0]} and ${mounts[1]}"
COFFER_SMALL_FS="${mounts[0]}" COFFER_SMALL_FS_KIND="${kinds[0]}" COFFER_SMALL_FS_HTTP="${mounts[1]}" "$@"

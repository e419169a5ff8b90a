#!/usr/bin/env bash
# Runs a command with COFFER_SMALL_FS pointing at a freshly made 40 MiB ext4 file system on a loop device (or, where
# loop devices are unavailable, a 40 MiB tmpfs, and says so), unmounted afterwards. The disk-full tests fill it.
# Without root (or without any way to mount) the command runs without it, and those tests say they were skipped.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "small-fs: not root, cannot mount; the disk-full tests will be skipped"
    exec "$@"
fi
mnt=$(mktemp -d /tmp/coffer-small-fs.XXXXXX)
img="$mnt.img"
cleanup() {
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    rm -rf "$mnt" "$img"
}
trap cleanup EXIT
if truncate -s 40M "$img" && mkfs.ext4 -q -F -m 0 -J size=1 "$img" && mount -o loop "$img" "$mnt"; then
    kind="ext4 on a loop device"
elif mount -t tmpfs -o size=40m tmpfs "$mnt"; then
    kind="tmpfs (loop devices unavailable)"
else
    echo "small-fs: could not mount anything; the disk-full tests will be skipped"
    exec "$@"
fi
echo "small-fs: $kind at $mnt"
COFFER_SMALL_FS="$mnt" COFFER_SMALL_FS_KIND="$kind" "$@"

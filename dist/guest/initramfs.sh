#!/usr/bin/env bash
# initramfs.sh OUT.cpio.gz MEMTEST_BINARY: the demo guest's initramfs:
# busybox (static, from Debian's busybox-static), dist/guest/init and the
# static memory workload.
set -euo pipefail
out=${1:?usage: initramfs.sh OUT.cpio.gz MEMTEST_BINARY}
memtest=${2:?usage: initramfs.sh OUT.cpio.gz MEMTEST_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
busybox=/bin/busybox
if ldd "$busybox" >/dev/null 2>&1; then
	echo "initramfs.sh: $busybox is not static (install busybox-static)" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp" # the guest's /: its users must get past it
mkdir -p "$tmp"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$tmp/bin/busybox"
cp "$memtest" "$tmp/bin/gvm-guest-memtest"
install -m 0755 "$here/init" "$tmp/init"
(cd "$tmp" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$out.tmp"
mv "$out.tmp" "$out"

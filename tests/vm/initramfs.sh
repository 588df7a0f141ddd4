#!/usr/bin/env bash
# initramfs.sh OUT.cpio.gz BIN_DIR MODULES_DIR CLIENT [KMOD]: the initramfs of
# test_cuse_vm: static busybox, fuse.ko and cuse.ko (and KMOD, the
# giantvm-kvm coherence core's self-test module), the release build's
# gvm-broker, gvm-memserver, gvmctl and the test's cuse_client with every
# shared library they load, users root, vmuser (group gvm) and stranger,
# and tests/vm/init.
set -euo pipefail
out=${1:?usage: initramfs.sh OUT.cpio.gz BIN_DIR MODULES_DIR CLIENT}
bin=$2 modules=$3 client=$4 kmod=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp" # the guest's /: its users must get past it
mkdir -p "$tmp"/{bin,dev,proc,sys,tmp,run,etc,lib/modules}
cp /bin/busybox "$tmp/bin/busybox"
cp "$modules/fuse.ko" "$modules/cuse.ko" "$tmp/lib/modules/"
[ -z "$kmod" ] || cp "$kmod" "$tmp/lib/modules/"
progs=("$bin/gvm-broker" "$bin/gvm-memserver" "$bin/gvmctl" "$client")
for p in "${progs[@]}"; do
	cp "$p" "$tmp/bin/"
	# Every library it loads, at the same path (the loader included).
	ldd "$p" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
		mkdir -p "$tmp$(dirname "$lib")"
		cp -L "$lib" "$tmp$lib"
	done
done
printf 'root:x:0:0:root:/:/bin/sh\nvmuser:x:1000:1000::/tmp:/bin/sh\nstranger:x:1001:1001::/tmp:/bin/sh\n' >"$tmp/etc/passwd"
printf 'root:x:0:\nvmuser:x:1000:\nstranger:x:1001:\ngvm:x:995:vmuser\n' >"$tmp/etc/group"
install -m 0755 "$here/init" "$tmp/init"
(cd "$tmp" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 >"$out.tmp"
mv "$out.tmp" "$out"

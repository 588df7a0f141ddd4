#!/usr/bin/env bash
# kernel.sh OUT_DIR: Debian's current linux-image-amd64 kernel for the test
# and demo guests, unpacked with `apt-get download` + `dpkg-deb -x` (nothing
# is installed on the host): OUT_DIR/vmlinuz, OUT_DIR/kernel-version and the
# modules later steps load (fuse.ko, cuse.ko) in OUT_DIR/modules/.
set -euo pipefail
out=${1:?usage: kernel.sh OUT_DIR}
mkdir -p "$out"
[ -s "$out/vmlinuz" ] && [ -s "$out/kernel-version" ] && exit 0

resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg=$(resolve)
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
	apt-get update -qq && pkg=$(resolve)
fi
if [ -z "$pkg" ]; then
	echo "kernel.sh: apt does not know linux-image-amd64 (run apt-get update?)" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "guest kernel: downloading $pkg"
(cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
deb=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "kernel.sh: apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$deb" "$tmp/root"
ver=$(ls "$tmp/root/lib/modules")
cp "$tmp/root/boot/vmlinuz-$ver" "$out/vmlinuz"
mkdir -p "$out/modules"
for m in fs/fuse/fuse.ko fs/fuse/cuse.ko; do
	src=$(ls "$tmp/root/lib/modules/$ver/kernel/$m"* 2>/dev/null | head -1) || true
	[ -n "$src" ] || continue
	case "$src" in
	*.xz) xz -dc "$src" > "$out/modules/$(basename "$m")" ;;
	*) cp "$src" "$out/modules/" ;;
	esac
done
echo "$ver" > "$out/kernel-version"
echo "guest kernel: $ver in $out/vmlinuz"

#!/usr/bin/env bash
# build.sh OUT_DIR [KERNEL_VERSION]: builds giantvm_dsm_selftest.ko against
# Debian's headers for KERNEL_VERSION (default: the guest kernel's,
# build/guest/kernel-version, else the running one). kbuild wants every
# source under M=, so the module's folder is assembled in OUT_DIR from
# kmod/ and core/.
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR [KERNEL_VERSION]}
here=$(cd "$(dirname "$0")" && pwd)
ver=${2:-$(cat build/guest/kernel-version 2>/dev/null || uname -r)}
kdir=/usr/src/linux-headers-$ver
if [ ! -d "$kdir" ]; then
	echo "build.sh: no $kdir (apt-get install linux-headers-$ver)" >&2
	exit 1
fi
mkdir -p "$out"
cp "$here/Kbuild" "$here/selftest.c" "$here"/../core/*.[ch] "$out/"
sed -i 's|-I$(src)/../core|-I$(src)|' "$out/Kbuild"
make -s -C "$kdir" M="$(cd "$out" && pwd)" modules
echo "built $out/giantvm_dsm_selftest.ko for $ver"

#!/bin/bash
# build-patched.sh BUILD_DIR: Debian's QEMU 7.2 with qemu-hook/patches applied.
#
# BUILD_DIR is the gvmmem build directory (`make` fills BUILD_DIR/lib with
# libgvmmem). Everything QEMU lives in BUILD_DIR/qemu-src: the Debian source
# package, its unpacked tree (Debian's own patches applied by dpkg-source,
# ours by patch -p1) and the build tree. The result,
# BUILD_DIR/qemu-src/build/qemu-system-x86_64 (TCG and KVM, x86_64 only),
# runs from there: it finds libgvmmem through an rpath into BUILD_DIR/lib.
#
# Needs root (or sudo) for apt: a deb-src entry if there is none, and the
# few -dev packages a minimal build needs. JOBS=n sets ninja's -j.
set -euo pipefail

die() { echo "build-patched.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build-patched.sh BUILD_DIR"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PATCHES=$HERE/patches
mkdir -p "$1"
BUILD=$(cd "$1" && pwd)
QDIR=$BUILD/qemu-src
QBUILD=$QDIR/build
JOBS=${JOBS:-$(nproc)}

SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "apt needs root; run as root or install sudo"
	SUDO=sudo
fi

if [ ! -f "$BUILD/lib/pkgconfig/gvmmem.pc" ] || [ ! -e "$BUILD/lib/libgvmmem.so" ]; then
	die "$BUILD/lib has no libgvmmem; run make first"
fi
mapfile -t SERIES < <(grep -v -e '^#' -e '^[[:space:]]*$' "$PATCHES/series")

# ---- packages: only what a --target-list=x86_64-softmmu build needs ----
# (apt-get build-dep qemu would pull in GTK, SDL, spice, ceph, ... ~1 GB)
NEED="dpkg-dev gcc libc6-dev make pkg-config python3 meson ninja-build
      libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev"
missing=()
for p in $NEED; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] ||
		missing+=("$p")
done

# ---- a deb-src entry, so that apt-get source works ----
SRCLIST=/etc/apt/sources.list.d/gvmmem-deb-src.sources
need_update=
# (grep -q on a pipe would kill apt-cache with SIGPIPE: pipefail)
if ! grep -qx 'Package: qemu' <<<"$(apt-cache showsrc qemu 2>/dev/null || true)"; then
	# shellcheck source=/dev/null
	. /etc/os-release
	codename=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
	echo "build-patched.sh: adding $SRCLIST (deb-src for $codename)"
	$SUDO tee "$SRCLIST" >/dev/null <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	need_update=1
fi
if [ -n "$need_update" ] || [ ${#missing[@]} -gt 0 ]; then
	$SUDO apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
fi

# ---- the source package (once) ----
mkdir -p "$QDIR"
shopt -s nullglob
dscs=("$QDIR"/qemu_*.dsc)
if [ ${#dscs[@]} -eq 0 ]; then
	(cd "$QDIR" && apt-get source --download-only qemu)
	dscs=("$QDIR"/qemu_*.dsc)
fi
[ ${#dscs[@]} -eq 1 ] || die "expected one qemu_*.dsc in $QDIR, found ${#dscs[@]}"
dsc=${dscs[0]}
version=$(sed -n 's/^Version: //p' "$dsc")
case $version in
1:7.2*) ;;
*) die "Debian's qemu is $version here; the patches are for 7.2 (bookworm)" ;;
esac
upstream=${version#*:}
SRC=$QDIR/qemu-${upstream%-*}

# ---- Debian's patches (dpkg-source), then ours (idempotent: a stamp) ----
STAMP=$SRC/.gvmmem-patches
want=$(cd "$PATCHES" && cat series "${SERIES[@]}" | sha256sum | cut -d' ' -f1)
if [ -d "$SRC" ] && [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
	echo "build-patched.sh: the patch series changed; unpacking $SRC again"
	rm -rf "$SRC"
fi
if [ ! -d "$SRC" ]; then
	(cd "$QDIR" && dpkg-source -x "$(basename "$dsc")" "$(basename "$SRC")")
	for p in "${SERIES[@]}"; do
		echo "build-patched.sh: applying $p"
		patch -d "$SRC" -p1 --batch --forward --quiet <"$PATCHES/$p" ||
			die "$p does not apply to $version"
	done
	echo "$want" >"$STAMP"
fi

# ---- libgvmmem, uninstalled ----
# BUILD_DIR/lib/pkgconfig/gvmmem.pc describes the installed library
# (prefix=$(PREFIX), /usr/local by default). Rather than add -I/-L by hand
# next to its flags (a stale copy in /usr/local could still win at link
# time), write a .pc for the build tree: the header from client-lib/include,
# the library from BUILD_DIR/lib, with an rpath so QEMU runs from here.
PCDIR=$QDIR/pkgconfig
mkdir -p "$PCDIR"
gvm_version=$(PKG_CONFIG_PATH=$BUILD/lib/pkgconfig pkg-config --modversion gvmmem)
gvm_private=$(sed -n 's/^Libs.private: //p' "$BUILD/lib/pkgconfig/gvmmem.pc")
cat >"$PCDIR/gvmmem.pc.tmp" <<EOF
libdir=$BUILD/lib
includedir=$ROOT/client-lib/include

Name: gvmmem
Description: libgvmmem from the gvmmem build tree $BUILD
Version: $gvm_version
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lgvmmem
Libs.private: $gvm_private
EOF
if cmp -s "$PCDIR/gvmmem.pc.tmp" "$PCDIR/gvmmem.pc"; then
	rm -f "$PCDIR/gvmmem.pc.tmp"
else
	mv "$PCDIR/gvmmem.pc.tmp" "$PCDIR/gvmmem.pc"
fi
export PKG_CONFIG_PATH=$PCDIR

# ---- configure (again only when the options change) ----
# x86_64 system emulator only, TCG and KVM, no optional libraries (no
# GUI, no slirp: run it with -nographic -nic none) but libgvmmem, no
# docs, tools or guest agent.
CONFIG=(--target-list=x86_64-softmmu --without-default-features
	--enable-tcg --enable-kvm --enable-gvmmem
	--disable-docs --disable-tools --disable-guest-agent --disable-werror)
mkdir -p "$QBUILD"
if [ ! -f "$QBUILD/build.ninja" ] ||
	[ "$(cat "$QBUILD/.gvmmem-configure" 2>/dev/null)" != "${CONFIG[*]} $PCDIR" ]; then
	(cd "$QBUILD" && "$SRC/configure" "${CONFIG[@]}")
	echo "${CONFIG[*]} $PCDIR" >"$QBUILD/.gvmmem-configure"
fi

# ---- build ----
ninja -C "$QBUILD" -j "$JOBS" qemu-system-x86_64

BIN=$QBUILD/qemu-system-x86_64
grep -qF "$BUILD/lib/libgvmmem.so" <<<"$(ldd "$BIN")" ||
	die "$BIN does not link $BUILD/lib/libgvmmem.so"
cat <<EOF

build-patched.sh: built $BIN
  (Debian qemu $version + ${#SERIES[@]} gvmmem patches, libgvmmem $gvm_version)
Firmware is not in Debian's source (DFSG): install seabios and
qemu-system-data and pass their directories with -L. For example:
  $BIN -L /usr/share/qemu -L /usr/share/seabios \\
    -accel tcg -m 512M -nographic -nic none \\
    -object memory-backend-memfd,id=ram,size=512M,share=on \\
    -machine memory-backend=ram -kernel vmlinuz -append console=ttyS0
EOF

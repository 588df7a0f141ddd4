#!/usr/bin/env bash
# deps.sh: installs the Debian 12 packages gvmmem needs to build, test, fuzz
# and demo (`make deps`; `make check`, `make demo` and `make bench` call it).
# Quiet and quick when everything is already there.
set -euo pipefail

pkgs=(
	build-essential pkg-config       # compiler, make
	libuv1-dev                       # event loops of both daemons
	libprotobuf-c-dev protobuf-c-compiler # gvm.proto and its codec
	libsodium-dev                    # HMAC-SHA256 of the cluster-key handshake
	libfuse3-dev                     # /dev/gvmmem (CUSE)
	libseccomp-dev                   # the broker's syscall allowlist
	libcurl4-openssl-dev libjson-c-dev # etcd membership (proto/etcd.c): HTTP, JSON
	libcmocka-dev                    # unit and integration tests
	liburing-dev                     # test_pinned: io_uring fixed buffers pin guest pages
	etcd-server etcd-client          # test_etcd's etcd, etcdctl for hand-written keys
	clang libclang-rt-14-dev         # libFuzzer harness of the frame decoder
	iproute2 procps                  # test hosts in namespaces, process checks
	qemu-system-x86                  # the demo's and end-to-end tests' guests (TCG)
	busybox-static cpio              # the guests' initramfs
	linux-headers-amd64              # giantvm-kvm's module for the guests' kernel
	gnuplot-nox python3              # make bench: the plot, the seeds' memory_server.py
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || {
		echo "deps: need root to install: apt-get install ${missing[*]}" >&2
		exit 1
	}
	sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

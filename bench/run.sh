#!/usr/bin/env bash
# run.sh BUILD_DIR: `make bench`. Starts one gvm-memserver on loopback and
# measures it with gvm-memserver-bench: 4 KiB and 128 KiB pipelined READs
# and WRITEs at depth 1 and 16, plus a full verify pass. Prints figures;
# never fails on a number (targets are for people to read, not asserts).
set -euo pipefail
build=${1:-build}
bin=$build/bin
work=$(mktemp -d)
trap 'kill $ms 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

head -c 32 /dev/urandom > "$work/key" && chmod 600 "$work/key"
port=$(( 20000 + RANDOM % 20000 ))
"$bin/gvm-memserver" --listen 127.0.0.1:$port --key-file "$work/key" \
	--capacity 1G --log-level warn 2> "$work/memserver.log" &
ms=$!
for _ in $(seq 100); do
	"$bin/gvmctl" --key-file "$work/key" donor-ping 127.0.0.1:$port >/dev/null 2>&1 && break
	sleep 0.1
done

echo "== gvm-memserver on loopback, $(nproc) cores"
for depth in 1 16; do
	"$bin/gvm-memserver-bench" --server 127.0.0.1:$port --key-file "$work/key" \
		--region 256M --depth $depth --seconds 3 --writes --verify | tee "$work/d$depth"
done
r128=$(sed -n 's/^key read_128k_mbps //p' "$work/d16")
echo
echo "target: 128 KiB READs >= 1500 MB/s from one memserver; measured ${r128} MB/s (depth 16)"

#!/usr/bin/env bash
# demo.sh BUILD_DIR: `make demo`, the main job as far as it exists: two
# gvm-memserver donors on loopback (one in memory, one on a backing file)
# store and serve the pages of two VMs' namespaces; every page is read back
# and compared; the file-backed donor is restarted and still has its pages.
# Then gvm-broker serves a process's RAM from those donors: its first
# touches are page faults answered over the pooled connections, next to a
# local userfaultfd handler for scale, while the broker keeps it under a
# budget half its size by evicting. (Booting a real guest arrives with
# the QEMU integration.) Cleans up everything it started.
set -euo pipefail
build=${1:-build}
bin=$build/bin
work=$(mktemp -d /tmp/gvm-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }

start_donor() { # name port extra-args...
	local name=$1 port=$2
	shift 2
	"$bin/gvm-memserver" --listen 127.0.0.1:$port --key-file "$work/cluster.key" \
		--capacity 256M "$@" 2>> "$work/$name.log" &
	pids+=($!)
	for _ in $(seq 100); do
		"$bin/gvmctl" --key-file "$work/cluster.key" donor-ping 127.0.0.1:$port \
			>/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "donor $name did not start; its log:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

base=$(( 21000 + RANDOM % 20000 ))
d1=127.0.0.1:$base
d2=127.0.0.1:$((base + 1))

say "cluster key: 32 random bytes, mode 0600 (donors refuse anyone without it)"
head -c 32 /dev/urandom > "$work/cluster.key"
chmod 600 "$work/cluster.key"

say "two donors: $d1 (memory) and $d2 (backing file, survives restarts)"
start_donor donor1 $base
start_donor donor2 $((base + 1)) --backing "$work/donor2.img"
echo "both accept authenticated connections"

for ns in vm-alpha vm-beta; do
	for d in $d1 $d2; do
		say "$ns on donor $d: store 64 MiB, then pipelined reads, then verify every page"
		"$bin/gvm-memserver-bench" --server $d --key-file "$work/cluster.key" \
			--ns $ns --region 64M --io 128K --io 4K --depth 16 --seconds 1 \
			--verify --keep | grep -v '^key '
	done
done

say "a stranger with another key is refused"
head -c 32 /dev/urandom > "$work/wrong.key"
chmod 600 "$work/wrong.key"
"$bin/gvmctl" --key-file "$work/wrong.key" donor-ping $d1 || true

for d in $d1 $d2; do
	say "donor $d counters (gvmctl donor-stats)"
	"$bin/gvmctl" --key-file "$work/cluster.key" donor-stats $d vm-alpha |
		grep -E '^(capacity_pages|used_pages|namespaces|pages_read|pages_written|zero_pages_read|bytes_out|auth_failures|ns_used_pages) '
done

say "restart donor2: its pages come back from $work/donor2.img"
kill "${pids[1]}"
wait "${pids[1]}" || true
start_donor donor2 $((base + 1)) --backing "$work/donor2.img"
"$bin/gvmctl" --key-file "$work/cluster.key" donor-stats $d2 vm-beta |
	grep -E '^(used_pages|namespaces|ns_used_pages) '

say "gvm-broker: one host daemon, pooled connections to both donors, a 64 MiB budget"
"$bin/gvm-broker" --socket "$work/broker.sock" --donor $d1 --donor $d2 \
	--key-file "$work/cluster.key" --no-cuse --budget 64M 2>> "$work/broker.log" &
pids+=($!)
for _ in $(seq 100); do
	"$bin/gvmctl" --socket "$work/broker.sock" stats 2>/dev/null | grep -q '^donor_connections: 4' && break
	sleep 0.1
done
"$bin/gvmctl" --socket "$work/broker.sock" stats | grep -E '^(donors|donor_connections):'

say "a process attaches 128 MiB of RAM through libgvmmem (twice the budget); its pages live on the donors"
"$bin/gvm-fault-bench" --socket "$work/broker.sock" --donor $d1 --donor $d2 --key-file "$work/cluster.key" \
	--size 128M --samples 500 --rounds 1 | grep -v '^key '
echo "(gvm-fault-bench checked that the pages it read are the ones it stored on the donors)"

say "broker counters (gvmctl stats)"
"$bin/gvmctl" --socket "$work/broker.sock" stats

say "logs"
cat "$work/donor1.log" "$work/donor2.log" "$work/broker.log"
say "done: donors stored and served pages; the broker served a process's page faults from them"

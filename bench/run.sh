#!/usr/bin/env bash
# run.sh BUILD_DIR: `make bench`. Starts one gvm-memserver on loopback and
# measures it with gvm-memserver-bench (4 KiB and 128 KiB pipelined READs and
# WRITEs at depth 1 and 16, plus a verify pass); then starts gvm-broker on it
# and measures first-touch faults with gvm-fault-bench against a local
# userfaultfd ceiling, then a read-modify-write workload four times a VM's
# budget against the same without eviction; the seed design's server and
# fault loop (gvm-seed-bench) on the same machine; the giantvm-kvm core's
# metadata and fan-out figures. Prints figures; never fails on a
# number (targets are for people to read, not asserts). Needs root for the
# userfaultfd parts.
set -euo pipefail
build=${1:-build}
bin=$build/bin
work=$(mktemp -d)
bk=
trap 'kill $bk $ms 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

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

echo
echo "== gvm-broker on that donor: first-touch faults vs a local userfaultfd ceiling"
"$bin/gvm-broker" --socket "$work/broker.sock" --donor 127.0.0.1:$port --key-file "$work/key" \
	--no-cuse --log-level warn 2> "$work/broker.log" &
bk=$!
for _ in $(seq 100); do
	"$bin/gvmctl" --socket "$work/broker.sock" stats 2>/dev/null | grep -q '^donor_connections: [1-9]' && break
	sleep 0.1
done
"$bin/gvm-fault-bench" --socket "$work/broker.sock" --donor 127.0.0.1:$port \
	--key-file "$work/key" --size 256M --samples 1000 --rounds 5 | grep -v '^key '
echo
echo "broker counters:"
"$bin/gvmctl" --socket "$work/broker.sock" stats | grep -E '^(faults|remote_reads|prefetch_hits|zero_fills|donor_connections|fault_latency)'

echo
echo "== eviction: working set 4x the VM's budget, read-modify-write, vs no eviction and the ceiling"
"$bin/gvm-fault-bench" --socket "$work/broker.sock" --donor 127.0.0.1:$port \
	--key-file "$work/key" --size 256M --samples 500 --rounds 3 --evict 4 | grep -v '^key '
echo
echo "broker counters:"
"$bin/gvmctl" --socket "$work/broker.sock" stats | grep -E '^(evictions|writebacks|clean_drops|writeback_errors|evict_waits|wp_faults)'

echo
echo "== the seed design: the seeds' memory_server.py and their fault loop reproduced in C (gvm-seed-bench)"
seed_txt=$(ls ../shared/seeds/*.txt 2>/dev/null | xargs grep -l 'memory_server.py' 2>/dev/null | head -1 || true)
if [ -n "$seed_txt" ] && command -v python3 >/dev/null; then
	sport=$((port + 1))
	spid=$(bash bench/seed_server.sh "$seed_txt" "$work/seed" $sport 256)
	for _ in $(seq 50); do grep -q listening "$work/seed/server.log" 2>/dev/null && break; sleep 0.1; done
	"$bin/gvm-seed-bench" --server 127.0.0.1:$sport --size 256 --samples 1000 | grep -v '^key ' || true
	kill "$spid" 2>/dev/null || true
else
	echo "(no seeds/ with memory_server.py beside the project, or no python3: skipped)"
fi

echo
echo "== giantvm-kvm coherence core: per-page metadata per node, ours vs the seeds' 10240-bit bitmap"
"$bin/gvm-dsm-sim" metadata
echo
echo "== giantvm-kvm: one write to a page K nodes share, invalidations serial (GiantVM) vs parallel (ours)"
echo "(messages counted in a 10240-node simulation; time from a model: 20 us one way, 1 us per message)"
"$bin/gvm-dsm-sim" fanout

#!/usr/bin/env bash
# demo.sh BUILD_DIR: `make demo`, the main job on one machine. Two
# gvm-memserver donors on loopback hold a VM's memory; gvm-broker (the only
# root process) serves it with a host budget well below the guest's RAM;
# a stock qemu-system-x86_64 (TCG) started through gvm-qemu as an ordinary
# user in group gvm boots Debian's kernel with a busybox initramfs whose
# init fills 3/4 of the guest's RAM, checksums it, copies it and checksums
# again. The demo then prints the broker's counters and cleans up every
# process it started.
#
# Environment: DEMO_MEM (guest RAM, default 256M), DEMO_BUDGET (host
# budget, default 96M), DEMO_ROUNDS (copy-and-verify rounds, default 2).
set -euo pipefail
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
guest=$(cd build/guest && pwd)
mem=${DEMO_MEM:-256M}
budget=${DEMO_BUDGET:-96M}
rounds=${DEMO_ROUNDS:-2}
pids=()

say() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
die() {
	echo "demo: $*" >&2
	exit 1
}

# Who runs what: root only for the broker. Run as root, the donors and QEMU
# run as the system user gvmdemo (group gvm), made here if missing; run as
# anyone else, they run as that user and the broker through sudo.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
	getent group gvm >/dev/null || groupadd --system gvm
	id gvmdemo >/dev/null 2>&1 ||
		useradd --system --no-create-home --shell /usr/sbin/nologin --gid nogroup \
			--groups gvm gvmdemo
	id -nG gvmdemo | grep -qw gvm || usermod -aG gvm gvmdemo
	user=gvmdemo
	as_user=(runuser -u gvmdemo --)
	as_root=()
else
	user=$(id -un)
	id -nG | grep -qw gvm ||
		die "$user is not in group gvm: sudo groupadd -f --system gvm; sudo usermod -aG gvm $user; then log in again"
	command -v sudo >/dev/null || die "the broker needs root: run as root or install sudo"
	as_root=(sudo)
fi

work=$(mktemp -d /tmp/gvm-demo.XXXXXX)
chmod 0755 "$work"
[ "$(id -u)" -eq 0 ] && chown "$user" "$work"
cleanup() {
	local p
	for p in "${pids[@]}"; do
		"${as_root[@]}" kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

base=$((21000 + RANDOM % 20000))
d1=127.0.0.1:$base
d2=127.0.0.1:$((base + 1))

start_donor() { # name address
	"${as_user[@]}" "$bin/gvm-memserver" --listen "$2" --key-file "$work/cluster.key" \
		--capacity 512M 2>>"$work/$1.log" &
	pids+=($!)
	for _ in $(seq 100); do
		"$bin/gvmctl" --key-file "$work/cluster.key" donor-ping "$2" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	cat "$work/$1.log" >&2
	die "donor $1 did not start"
}

say "cluster key: 32 random bytes, mode 0600; donors refuse anyone without it"
(umask 077 && head -c 32 /dev/urandom >"$work/cluster.key")
[ "$(id -u)" -eq 0 ] && chown "$user" "$work/cluster.key"

say "two donors as $user on loopback: $d1 and $d2, 512 MiB each"
start_donor donor1 "$d1"
start_donor donor2 "$d2"

say "gvm-broker as root: pooled connections to both donors (opened when first used), host budget $budget"
"${as_root[@]}" "$bin/gvm-broker" --socket "$work/broker.sock" --donor "$d1" --donor "$d2" \
	--key-file "$work/cluster.key" --state-dir "$work/state" --budget "$budget" --no-cuse \
	2>>"$work/broker.log" &
pids+=($!)
for _ in $(seq 100); do
	"$bin/gvmctl" --socket "$work/broker.sock" stats 2>/dev/null |
		grep -q '^donors: 2' && break
	sleep 0.1
done
"$bin/gvmctl" --socket "$work/broker.sock" stats | grep -E '^(donors|donor_connections|budget_bytes):' ||
	{ cat "$work/broker.log" >&2; die "the broker did not start"; }

say "QEMU as $user (TCG, -m $mem) through gvm-qemu: guest RAM on the donors, at most $budget of it here"
echo "guest kernel $(cat "$guest/kernel-version"); its init fills 3/4 of RAM, checksums, copies, checksums ($rounds rounds)"
start=$(date +%s)
# How much of the guest's RAM is on this host, sampled while it runs.
(
	peak=0
	while sleep 0.2; do
		r=$("$bin/gvmctl" --socket "$work/broker.sock" stats 2>/dev/null |
			sed -n 's/^resident_bytes: //p')
		[ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$work/peak"
	done
) &
pids+=($!)
set +e
"${as_user[@]}" timeout 600 "$bin/gvm-qemu" --broker "$work/broker.sock" --vm-name demo-vm -- \
	-accel tcg -m "$mem" -nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 quiet gvm.memtest=75,$rounds" 2>&1 |
	tee "$work/guest.log" | grep --line-buffered -aoE '(GVM-|gvm-qemu-hook).*'
qemu_rc=${PIPESTATUS[0]}
set -e
secs=$(($(date +%s) - start))

say "broker counters (gvmctl stats)"
"$bin/gvmctl" --socket "$work/broker.sock" stats | tee "$work/stats.txt"
stat() { sed -n "s/^$1: //p" "$work/stats.txt"; }

say "logs"
cat "$work/donor1.log" "$work/donor2.log" "$work/broker.log"

if [ "$qemu_rc" -eq 0 ] && grep -q 'GVM-MEMTEST OK' "$work/guest.log" &&
	! grep -q 'GVM-MEMTEST FAIL' "$work/guest.log"; then
	say "done in ${secs}s: a $mem guest ran on a $budget host budget; every checksum matched"
	echo "  guest RAM on this host: at most $(($(cat "$work/peak" 2>/dev/null || echo 0) >> 20)) MiB (sampled; budget $budget)"
	echo "  page faults served:     $(stat faults), of which $(stat wp_faults) first writes to pages installed read-only"
	echo "  reads from donors:      $(stat remote_reads) requests, $(stat remote_pages) pages"
	echo "  evictions:              $(stat evictions) pages: $(stat clean_drops) clean ones dropped," \
		"$(($(stat evictions) - $(stat clean_drops))) dirty ones written back in $(stat writebacks) writes"
	echo "  fault latency:          p50 $(stat fault_latency_p50_us) us, p99 $(stat fault_latency_p99_us) us"
	echo "  pages on the donors:    sealed with" \
		"$(sed -n 's/.*page crypto: \([a-z0-9-]*\).*/\1/p' "$work/broker.log" | head -1)," \
		"$(stat integrity_failures) integrity failures"
else
	grep -a -E 'GVM-|gvm-qemu-hook|Kernel panic' "$work/guest.log" | tail -20 >&2
	die "the guest did not finish its workload (QEMU exit $qemu_rc)"
fi

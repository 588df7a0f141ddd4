#!/usr/bin/env bash
# donor_scale.sh faults|memory BUILD_DIR: what a long donor list costs
# gvm-broker, for bench/run.sh. Everything runs in a private network
# namespace, where a few gvm-memservers listen on 0.0.0.0:PORT and a broker
# is given N distinct donor addresses 127.0.(i/250).(i%250+1):PORT(i%k), so
# that k memservers stand for N donors:
#   faults  one broker over 2 donors (2 memservers) against one over 2048
#           (4 memservers), every other flag the same: first touch through
#           gvm-fault-bench --versus, rounds alternating, medians, and each
#           broker's CPU seconds over it; then the same against a second
#           broker over 2 donors of its own (the control: how far two
#           identical brokers differ in this run);
#   memory  a broker with no VM given 2 against 10240 donor addresses
#           (nothing listens: connections open only when used, and none
#           is), VmRSS, RssAnon and Private_Dirty (smaps_rollup) read after
#           start; then a VM of 1 GiB and one of 4 GiB, each on a fresh
#           2-donor broker, every page written (gvm-rss-bench).
# The namespace's loopback route loses its preferred source, so that a
# connection's source is the address it goes to: each donor address sees
# the broker from one address of its own, as separate donor hosts would
# (with 127.0.0.1 as every source, one memserver serving 512 addresses
# would see ~1000 connections from one source at once, and it closes all
# but 16 unauthenticated ones from a source). Prints "key name value" lines.
# Needs root (unshare, nsenter, userfaultfd).
# From the environment: BENCH_SCALE_SIZE region per VM (256M),
# BENCH_SCALE_ROUNDS rounds, odd, at most 16 (7).
set -euo pipefail
mode=${1:?faults or memory}
build=${2:-build}
bin=$build/bin
size=${BENCH_SCALE_SIZE:-256M}
rounds=${BENCH_SCALE_ROUNDS:-7}
work=$(mktemp -d)
holder="" pids=""
trap 'kill $pids 2>/dev/null || true; kill $holder 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

head -c 32 /dev/urandom >"$work/key" && chmod 600 "$work/key"

# The namespace: a process holds it; the others enter it by its pid.
unshare --net -- sleep 1d &
holder=$!
for _ in $(seq 100); do
	[ "$(readlink /proc/$holder/ns/net 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] && break
	sleep 0.05
done
# (A daemon is started with nsenter itself, not in_ns: nsenter execs it, so
# $! is its pid; a function run in the background would be a subshell.)
in_ns() { nsenter -t "$holder" -n -- "$@"; }
in_ns ip link set lo up
in_ns ip route replace local 127.0.0.0/8 dev lo table local scope host

# donors_file NAME N PORT...: $work/NAME, N addresses, the i-th on the
# (i mod k)-th of the k ports.
donors_file() {
	local name=$1 n=$2
	shift 2
	awk -v n="$n" -v ports="$*" 'BEGIN { k = split(ports, p, " ")
		for (i = 0; i < n; i++) printf "127.0.%d.%d:%s\n", int(i / 250), i % 250 + 1, p[i % k + 1] }' \
		>"$work/$name"
}

# memserver PORT: a donor on 0.0.0.0:PORT in the namespace, waited for.
memserver() {
	nsenter -t "$holder" -n -- "$bin/gvm-memserver" --listen 0.0.0.0:$1 --key-file "$work/key" --capacity 2G \
		--log-level warn 2>"$work/memserver$1.log" &
	pids="$pids $!"
	for _ in $(seq 100); do
		in_ns "$bin/gvmctl" --key-file "$work/key" donor-ping 127.0.0.1:$1 >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "donor_scale.sh: gvm-memserver on port $1 did not start:" >&2
	tail -3 "$work/memserver$1.log" >&2
	return 1
}

# broker NAME DONORS N: a broker on $work/NAME.sock over the donors file
# $work/DONORS, in the namespace, its pid in $bpid once it answers with N
# donors.
broker() {
	nsenter -t "$holder" -n -- "$bin/gvm-broker" --socket "$work/$1.sock" --donors-file "$work/$2" \
		--key-file "$work/key" --state-dir "$work/state-$1" --no-cuse --log-level warn \
		2>"$work/broker-$1.log" &
	bpid=$!
	pids="$pids $bpid"
	for _ in $(seq 100); do
		"$bin/gvmctl" --socket "$work/$1.sock" stats 2>/dev/null | grep -qx "donors: $3" && return
		sleep 0.1
	done
	echo "donor_scale.sh: broker $1 did not start:" >&2
	tail -3 "$work/broker-$1.log" >&2
	return 1
}

stop() {
	kill "$1"
	wait "$1" 2>/dev/null || true
}

# Seconds of CPU (user + system) the process has used.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

key() { sed -n "s/^key $1 //p" "$2" | tail -1; }
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }

case $mode in
faults)
	donors_file donors2 2 7700 7701
	donors_file donors2048 2048 7710 7711 7712 7713
	donors_file donors2c 2 7702 7703 # the control's
	for p in 7700 7701 7702 7703 7710 7711 7712 7713; do memserver $p; done
	broker d2 donors2 2
	b2=$bpid
	broker d2048 donors2048 2048
	b2048=$bpid
	broker d2c donors2c 2
	c2=$(cpu_s "$b2") c2048=$(cpu_s "$b2048")
	echo "broker A: 2 donors (2 memservers); broker B: 2048 donor addresses (4 memservers)"
	"$bin/gvm-fault-bench" --socket "$work/d2.sock" --versus "$work/d2048.sock" --size "$size" \
		--samples 1000 --rounds "$rounds" | tee "$work/fault" | grep -v '^key '
	echo "key scale_2_broker_cpu_s $(calc "$(cpu_s "$b2") - $c2" 2)"
	echo "key scale_2048_broker_cpu_s $(calc "$(cpu_s "$b2048") - $c2048" 2)"
	echo "key scale_2048_donor_connections $("$bin/gvmctl" --socket "$work/d2048.sock" stats |
		sed -n 's/^donor_connections: //p')"
	echo
	echo "the control: broker A against a second broker over 2 donors of its own, the same way"
	"$bin/gvm-fault-bench" --socket "$work/d2.sock" --versus "$work/d2c.sock" --size "$size" \
		--samples 1000 --rounds "$rounds" | tee "$work/control" | grep -v '^key '
	for r in a:2 b:2048; do
		for k in seq_mbps rand_p50_us rand_p99_us; do
			echo "key scale_${r#*:}_$k $(key ${r%:*}_$k "$work/fault")"
		done
	done
	for k in seq_mbps rand_p50_us rand_p99_us; do
		echo "key scale_control_a_$k $(key a_$k "$work/control")"
		echo "key scale_control_b_$k $(key b_$k "$work/control")"
	done
	echo "key scale_steal_pct $(key versus_steal_pct "$work/fault")"
	echo "key scale_control_steal_pct $(key versus_steal_pct "$work/control")"
	;;
memory)
	# The same four ports as the 2048-donor brokers; nothing listens there.
	donors_file donors2 2 7710 7711 7712 7713
	donors_file donors10240 10240 7710 7711 7712 7713
	for n in 2 10240; do
		broker m$n donors$n $n
		"$bin/gvm-rss-bench" --broker-pid "$bpid" --prefix "mem_d${n}_" | tee "$work/d$n"
		stop "$bpid"
	done
	for k in rss anon private_dirty; do
		a=$(key mem_d2_${k}_kib "$work/d2") b=$(key mem_d10240_${k}_kib "$work/d10240")
		echo "key mem_per_donor_${k}_bytes $(calc "($b - $a) * 1024 / 10238")"
	done
	for g in 1 4; do
		broker v$g donors2 2
		"$bin/gvm-rss-bench" --socket "$work/v$g.sock" --broker-pid "$bpid" --size ${g}G \
			--prefix "mem_vm${g}g_" | tee "$work/vm$g"
		stop "$bpid"
	done
	# Per GiB of guest: the 4 GiB VM's growth less the 1 GiB VM's, over
	# 3 GiB, so that what a VM costs whatever its size falls out.
	# growth G WHEN KIND: KiB the broker grew by from no VM to WHEN
	# (attached, written) with the G GiB VM.
	growth() {
		calc "$(key mem_vm${1}g_${2}_${3}_kib "$work/vm$1") - $(key mem_vm${1}g_before_${3}_kib "$work/vm$1")"
	}
	for k in rss anon private_dirty; do
		for w in attached written; do
			d1=$(growth 1 $w $k) d4=$(growth 4 $w $k)
			echo "key mem_vm1g_${w}_${k}_growth_kib $d1"
			echo "key mem_vm4g_${w}_${k}_growth_kib $d4"
			echo "key mem_per_gib_${w}_${k}_kib $(calc "($d4 - $d1) / 3" 1)"
		done
	done
	;;
*)
	echo "usage: donor_scale.sh faults|memory BUILD_DIR" >&2
	exit 2
	;;
esac

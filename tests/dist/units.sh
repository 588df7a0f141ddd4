#!/usr/bin/env bash
# units.sh BIN_DIR: `systemd-analyze verify` on the systemd units of dist/,
# made for binaries in BIN_DIR (verify wants ExecStart to exist), and a
# syntax check of the udev rule. Skipped, saying so, without systemd.
set -euo pipefail
bin=$(cd "${1:?usage: units.sh BIN_DIR}" && pwd)
if ! command -v systemd-analyze >/dev/null; then
	echo "units: systemd-analyze not installed; unit files not verified"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in gvm-broker.service gvm-memserver@.service; do
	out=$u
	[ "$u" = gvm-memserver@.service ] && out=gvm-memserver@main.service
	sed -e "s|@BINDIR@|$bin|g" -e "s|@DOCDIR@|$PWD|g" "dist/systemd/$u.in" >"$tmp/$out"
done
# verify resolves the template through its instance next to it.
cp "$tmp/gvm-memserver@main.service" "$tmp/gvm-memserver@.service"
if ! SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$tmp/gvm-broker.service" \
	"$tmp/gvm-memserver@main.service" 2>"$tmp/verify.log"; then
	cat "$tmp/verify.log"
	echo "units: systemd-analyze verify failed"
	exit 1
fi
# Anything verify says about our own files is a failure too.
if grep -E "gvm-(broker|memserver)" "$tmp/verify.log"; then
	echo "units: systemd-analyze verify complained"
	exit 1
fi
grep -q 'SUBSYSTEM=="cuse", KERNEL=="gvmmem", GROUP="gvm", MODE="0660"' dist/udev/70-gvmmem.rules
if command -v udevadm >/dev/null && udevadm verify --help >/dev/null 2>&1; then
	udevadm verify dist/udev/70-gvmmem.rules
fi
echo "units: gvm-broker.service and gvm-memserver@.service verified"

#!/usr/bin/env bash
# seed_server.sh SEED_TXT OUT_DIR PORT SIZE_MIB: runs the seeds' own
# memory_server.py, taken verbatim from the design note, with only what
# the benchmark needs changed: HOST 127.0.0.1 (not 0.0.0.0), PORT, and
# MEM_FILE/MEM_SIZE a SIZE_MIB file in OUT_DIR instead of 32 GiB, filled
# with non-zero data first so every page travels as a data page. Prints
# the server's PID.
set -euo pipefail
seed=${1:?usage: seed_server.sh SEED_TXT OUT_DIR PORT SIZE_MIB}
out=$2 port=$3 mib=$4
mkdir -p "$out"
awk '/```python/ { f = 1; next } /```/ { if (f) exit } f' "$seed" | sed 's/^        //' >"$out/memory_server.py"
grep -q "^HOST = '0.0.0.0'" "$out/memory_server.py" || { echo "seed_server.sh: no memory_server.py in $seed" >&2; exit 1; }
sed -i -e "s|^HOST = '0.0.0.0'|HOST = '127.0.0.1'|" \
	-e "s|^PORT = 9999|PORT = $port|" \
	-e "s|^MEM_FILE = \"physical_ram.img\"|MEM_FILE = \"$out/physical_ram.img\"|" \
	-e "s|^MEM_SIZE = 32 \* 1024 \* 1024 \* 1024|MEM_SIZE = $mib * 1024 * 1024|" "$out/memory_server.py"
head -c $((mib << 20)) /dev/urandom >"$out/physical_ram.img"
python3 -u "$out/memory_server.py" >"$out/server.log" 2>&1 &
echo $!

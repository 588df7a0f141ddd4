#!/usr/bin/env bash
# run.sh FUZZ_BINARY SECONDS: runs a libFuzzer harness (tests/fuzz/fuzz_*.c)
# for SECONDS on a corpus kept next to the binary ($(dirname FUZZ_BINARY)/
# corpus), to which it writes a few valid donor frames (seed-*) each time,
# so a corpus grown under an older protocol version gets the current ones.
# Crash inputs land next to the binary too. Exits non-zero if the fuzzer
# fails.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 FUZZ_BINARY SECONDS" >&2
	exit 2
fi
bin=$1
secs=$2
dir=$(dirname "$bin")
corpus=$dir/corpus

if [ ! -x "$bin" ]; then
	echo "run.sh: $bin is not an executable fuzz harness (make $bin)" >&2
	exit 2
fi
mkdir -p "$corpus"

# A seed is 2 chunking bytes (see fuzz_frame.c) then frames: a 4-byte
# big-endian header length, the protobuf gvm.Frame header, the payload.
# Keys: 08 version (03: GVM_PROTO_VERSION), 10 id, 18 op, 20 response,
# 28 status, 32 error, 38 ns, 40 first_page, 48 page_count, 52 zero_bitmap,
# 58 payload_len, 62 ns_name, 70 tag_bytes.
seed() {
	printf "$2" >"$corpus/seed-$1"
}
# PING, then PING with a 4-byte payload, in one read.
seed ping '\x00\x00\x00\x00\x00\x06\x08\x03\x10\x01\x18\x08\x00\x00\x00\x08\x08\x03\x10\x02\x18\x08\x58\x04ping'
# OPEN_NS "vm" request, byte by byte.
seed open-ns '\x01\x00\x00\x00\x00\x0a\x08\x03\x10\x03\x18\x02\x62\x02vm'
# READ request for 4 pages at page 10 of ns 1, random small reads.
seed read '\x02\x07\x00\x00\x00\x0c\x08\x03\x10\x04\x18\x03\x38\x01\x40\x0a\x48\x04'
# WRITE of one all-zero page: the bitmap says so, no payload.
seed write-zero '\x03\x09\x00\x00\x00\x0b\x08\x03\x10\x05\x18\x04\x48\x01\x52\x01\x01'
# READ error response: status EIO, error "io".
seed read-eio '\x00\x00\x00\x00\x00\x10\x08\x03\x10\x06\x18\x03\x20\x01\x28\x05\x32\x02io\x48\x01'
# LIST request for 200 pages at page 10 of ns 1, then a LIST reply for
# 13 pages (2 bytes of bits), random small reads.
seed list '\x02\x10\x00\x00\x00\x0d\x08\x03\x10\x08\x18\x09\x38\x01\x40\x0a\x48\xc8\x01\x00\x00\x00\x0c\x08\x03\x10\x09\x18\x09\x20\x01\x48\x0d\x58\x02\xff\x1f'
# READ response of 2 pages, page 0 zero, page 1 as 4096 bytes, via direct.
{
	printf '\x04\x03\x00\x00\x00\x10\x08\x03\x10\x07\x18\x03\x20\x01\x48\x02\x52\x01\x01\x58\x80\x20'
	head -c 4096 /dev/zero | tr '\0' 'x'
} >"$corpus/seed-read-pages"
# READ request for 4 pages with tags (tag_bytes 16).
seed read-tagged '\x02\x07\x00\x00\x00\x0e\x08\x03\x10\x0c\x18\x03\x38\x01\x40\x0a\x48\x04\x70\x10'
# READ response of 2 pages with tags, page 0 zero, page 1 as 4096 bytes and
# its 16-byte tag (payload_len 4112), via direct.
{
	printf '\x04\x05\x00\x00\x00\x12\x08\x03\x10\x0b\x18\x03\x20\x01\x48\x02\x52\x01\x01\x58\x90\x20\x70\x10'
	head -c 4096 /dev/zero | tr '\0' 'x'
	head -c 16 /dev/zero | tr '\0' 't'
} >"$corpus/seed-read-pages-tagged"
# WRITE of one page with its tag, random small reads.
{
	printf '\x02\x0b\x00\x00\x00\x0f\x08\x03\x10\x0d\x18\x04\x38\x01\x48\x01\x58\x90\x20\x70\x10'
	head -c 4096 /dev/zero | tr '\0' 'w'
	head -c 16 /dev/zero | tr '\0' 't'
} >"$corpus/seed-write-tagged"

"$bin" -max_total_time="$secs" -print_final_stats=1 -max_len=16384 \
	-artifact_prefix="$dir/" "$corpus"

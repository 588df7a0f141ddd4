# gvmmem: one Makefile for everything. `make` builds into build/, `make check`
# runs every test under ASan+UBSan (in build/san/), `make demo` shows the main
# job, `make bench` measures. Debian packages come from `make deps`.

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
SAN ?= 0
WERROR ?= 1
CC ?= cc
FUZZ_SECONDS ?= 15

PKGS := libuv libprotobuf-c libsodium libcurl json-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Wshadow -Wno-missing-field-initializers \
	  -fno-strict-aliasing -fPIC -MMD -MP
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifeq ($(SAN),1)
CPPFLAGS += -DGVM_SANITIZED
CFLAGS += -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif
CPPFLAGS += -D_GNU_SOURCE -I$(BUILD)/gen -Iproto $(PKG_CFLAGS)
LDLIBS += $(PKG_LIBS) -lpthread -lm

BIN := $(BUILD)/bin
LIB := $(BUILD)/lib
OBJ := $(BUILD)/obj
GEN := $(BUILD)/gen

# ---- proto/: codec, auth, config, logging, etcd membership -> libgvmproto.a ----
PROTO_SRC := proto/frame.c proto/auth.c proto/config.c proto/log.c proto/dclient.c \
	proto/ctlmsg.c proto/placement.c proto/names.c proto/etcd.c
PROTO_OBJ := $(OBJ)/gen/gvm.pb-c.o $(PROTO_SRC:%.c=$(OBJ)/%.o)

$(GEN)/gvm.pb-c.c $(GEN)/gvm.pb-c.h: proto/gvm.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) proto/gvm.proto

$(OBJ)/gen/gvm.pb-c.o: $(GEN)/gvm.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(OBJ)/%.o: %.c | $(GEN)/gvm.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB)/libgvmproto.a: $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- client-lib/ -> libgvmmem.so, libgvmmem.a, gvmmem.pc ----
CLIENT_OBJ := $(OBJ)/client-lib/gvmmem.o
CLIENT_PROTO_OBJ := $(OBJ)/gen/gvm.pb-c.o $(OBJ)/proto/ctlmsg.o $(OBJ)/proto/log.o \
	$(OBJ)/proto/config.o $(OBJ)/proto/names.o
$(OBJ)/client-lib/%.o: CPPFLAGS += -Iclient-lib/include -Icuse-dev/include

$(LIB)/libgvmmem.so.0: $(CLIENT_OBJ) $(CLIENT_PROTO_OBJ) client-lib/libgvmmem.map
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libgvmmem.so.0 \
		-Wl,--version-script=client-lib/libgvmmem.map \
		$(CLIENT_OBJ) $(CLIENT_PROTO_OBJ) -lprotobuf-c -lpthread -o $@

$(LIB)/libgvmmem.so: $(LIB)/libgvmmem.so.0
	ln -sf libgvmmem.so.0 $@

$(LIB)/libgvmmem.a: $(CLIENT_OBJ) $(CLIENT_PROTO_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB)/pkgconfig/gvmmem.pc: client-lib/gvmmem.pc.in FORCE
	@mkdir -p $(dir $@)
	@sed 's|@PREFIX@|$(PREFIX)|' $< > $@.tmp && \
		(cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@)

.PHONY: FORCE
FORCE:

CLIENT_LIBS := $(LIB)/libgvmmem.so.0 $(LIB)/libgvmmem.so $(LIB)/libgvmmem.a $(LIB)/pkgconfig/gvmmem.pc

# ---- qemu-hook/ -> libgvm-qemu-hook.so, gvm-qemu ----
# The hook is preloaded into QEMU, which is never sanitized, so it is built
# without sanitizers even in build/san, from its own copies of the objects.
NOSAN_CFLAGS = $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS))
HOOK_SRC := qemu-hook/hook.c client-lib/gvmmem.c $(GEN)/gvm.pb-c.c proto/ctlmsg.c \
	proto/log.c proto/config.c proto/names.c
HOOK_OBJ := $(patsubst %.c,$(OBJ)/hook/%.o,$(HOOK_SRC))

$(OBJ)/hook/%.o: %.c | $(GEN)/gvm.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iclient-lib/include -Icuse-dev/include $(NOSAN_CFLAGS) -c $< -o $@

$(LIB)/libgvm-qemu-hook.so: $(HOOK_OBJ) qemu-hook/hook.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,--version-script=qemu-hook/hook.map -Wl,-z,defs $(HOOK_OBJ) \
		-lprotobuf-c -lpthread -ldl -o $@

$(BIN)/gvm-qemu: qemu-hook/gvm-qemu
	@mkdir -p $(dir $@)
	install -m 0755 $< $@

# ---- memserver/ -> gvm-memserver ----
MEMSERVER_SRC := memserver/main.c memserver/server.c memserver/store.c
$(BIN)/gvm-memserver: $(MEMSERVER_SRC:%.c=$(OBJ)/%.o) $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# ---- broker/ -> gvm-broker, gvmctl ----
# ---- cuse-dev/ (/dev/gvmmem) is part of gvm-broker ----
# The device knows the broker only through struct bk_cuse_host (cuse_dev.h):
# cuse-dev/ is compiled without -Ibroker, so a broker header there fails.
BROKER_SRC := broker/main.c broker/control.c broker/attach.c broker/identity.c broker/fault.c \
	broker/region.c broker/uffd.c broker/followup.c broker/journal.c broker/seal.c \
	broker/evict.c broker/pool.c broker/prefetch.c broker/replica.c broker/stats.c broker/token.c \
	broker/sandbox.c broker/notify.c broker/donors.c broker/device.c cuse-dev/cuse_dev.c
$(OBJ)/broker/%.o: CPPFLAGS += -Ibroker -Icuse-dev -Icuse-dev/include
$(OBJ)/cuse-dev/%.o: CPPFLAGS += -Icuse-dev/include $(shell pkg-config --cflags fuse3 2>/dev/null)
$(BIN)/gvm-broker: $(BROKER_SRC:%.c=$(OBJ)/%.o) $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lfuse3 -lseccomp -o $@

$(BIN)/gvmctl: $(OBJ)/broker/gvmctl.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# ---- giantvm-kvm/: the coherence core, its simulator (user space) ----
DSM_SRC := giantvm-kvm/core/dsm_copyset.c giantvm-kvm/core/dsm_ivy.c giantvm-kvm/core/dsm_sim.c
DSM_OBJ := $(DSM_SRC:%.c=$(OBJ)/%.o)
$(OBJ)/giantvm-kvm/%.o: CPPFLAGS += -Igiantvm-kvm/core -Igiantvm-kvm/sim
$(BIN)/gvm-dsm-sim: $(OBJ)/giantvm-kvm/sim/main.o $(DSM_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@

# ---- bench/ ----
$(BIN)/gvm-memserver-bench: $(OBJ)/bench/memserver_bench.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BIN)/gvm-seed-bench: $(OBJ)/bench/seed_bench.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -lpthread -o $@

$(OBJ)/bench/fault_bench.o: CPPFLAGS += -Iclient-lib/include
$(BIN)/gvm-fault-bench: $(OBJ)/bench/fault_bench.o $(LIB)/libgvmmem.a $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(OBJ)/bench/failover_bench.o: CPPFLAGS += -Iclient-lib/include
$(BIN)/gvm-failover-bench: $(OBJ)/bench/failover_bench.o $(LIB)/libgvmmem.a $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The seal benchmark runs the broker's own sealing code.
$(OBJ)/bench/seal_bench.o: CPPFLAGS += -Ibroker
$(BIN)/gvm-seal-bench: $(OBJ)/bench/seal_bench.o $(OBJ)/broker/seal.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BIN)/gvm-placement-bench: $(OBJ)/bench/placement_bench.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(OBJ)/bench/rss_bench.o: CPPFLAGS += -Iclient-lib/include
$(BIN)/gvm-rss-bench: $(OBJ)/bench/rss_bench.o $(LIB)/libgvmmem.a $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BIN)/gvm-thp-probe: $(OBJ)/bench/thp_probe.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@

PROGS := $(BIN)/gvm-memserver $(BIN)/gvm-broker $(BIN)/gvmctl $(BIN)/gvm-memserver-bench \
	$(BIN)/gvm-fault-bench $(BIN)/gvm-failover-bench $(BIN)/gvm-qemu $(BIN)/gvm-dsm-sim \
	$(BIN)/gvm-seed-bench $(BIN)/gvm-placement-bench $(BIN)/gvm-rss-bench $(BIN)/gvm-seal-bench \
	$(BIN)/gvm-thp-probe

# ---- the demo's and end-to-end tests' guest (dist/guest/) ----
# Always in build/guest, whatever BUILD is: the guest is never sanitized and
# the kernel download happens once.
GUEST := build/guest
GUEST_FILES := $(GUEST)/vmlinuz $(GUEST)/initramfs.cpio.gz

$(GUEST)/vmlinuz: dist/guest/kernel.sh
	bash dist/guest/kernel.sh $(GUEST)
	@touch $@

$(GUEST)/gvm-guest-memtest: dist/guest/memtest.c
	@mkdir -p $(dir $@)
	$(CC) -static -O2 -Wall -Wextra -Werror -o $@ $<

$(GUEST)/initramfs.cpio.gz: dist/guest/init dist/guest/initramfs.sh $(GUEST)/gvm-guest-memtest
	bash dist/guest/initramfs.sh $@ $(GUEST)/gvm-guest-memtest

# test_cuse_vm's guest: the release build's daemons and a client in an
# initramfs with fuse.ko, cuse.ko and the coherence core's module (tests/vm/). Made by `make guest` in
# the release tree, which `make check` runs first.
$(GUEST)/cuse_client: tests/vm/cuse_client.c build/lib/libgvmmem.a build/lib/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) -D_GNU_SOURCE -Ibuild/gen -Iproto -Iclient-lib/include -Icuse-dev/include -Ibench \
		-O2 -g -Wall -Wextra -Werror $^ -lprotobuf-c -lpthread -o $@

# The coherence core as a kernel module for the guest's kernel (its self-test
# runs at insmod in test_cuse_vm's guest).
KMOD := build/kmod/giantvm_dsm_selftest.ko
$(KMOD): giantvm-kvm/kmod/Kbuild giantvm-kvm/kmod/selftest.c giantvm-kvm/kmod/build.sh \
		$(wildcard giantvm-kvm/core/*.[ch]) $(GUEST)/vmlinuz
	bash giantvm-kvm/kmod/build.sh build/kmod

$(GUEST)/cuse-initramfs.cpio.gz: tests/vm/init tests/vm/initramfs.sh $(GUEST)/vmlinuz \
		$(GUEST)/cuse_client build/bin/gvm-broker build/bin/gvm-memserver build/bin/gvmctl $(KMOD)
	bash tests/vm/initramfs.sh $@ build/bin $(GUEST)/modules $(GUEST)/cuse_client $(KMOD)

# ---- tests/ (cmocka) ----
TEST_LIBS := -lcmocka
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
INTEG_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(wildcard tests/integration/test_*.c))
# The seccomp test checks the release build's filter: the sanitizers'
# runtime needs calls (ptrace, clone) the release filter refuses.
ifeq ($(SAN),1)
INTEG_TESTS := $(filter-out %/test_sandbox,$(INTEG_TESTS))
endif
# What every integration test links: the daemons (procs.c), the VM
# (vmchild.c), a broker with its donors (cluster.c).
TEST_SUPPORT := $(OBJ)/tests/integration/procs.o $(OBJ)/tests/integration/vmchild.o \
	$(OBJ)/tests/integration/cluster.o

# Integration tests write the benchmarks' page patterns and link libgvmmem.
$(OBJ)/tests/integration/%.o: CPPFLAGS += -Ibench -Iclient-lib/include

# The donor's test checks its limits (memserver.h).
$(OBJ)/tests/integration/test_memserver.o: CPPFLAGS += -Imemserver

# The store's test links the store itself.
$(OBJ)/tests/unit/test_store.o: CPPFLAGS += -Imemserver
$(BUILD)/tests/test_store: $(OBJ)/tests/unit/test_store.o $(OBJ)/memserver/store.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) $(LDLIBS) -o $@

# The token test drives the broker's token table (CUSE attach tokens).
$(OBJ)/tests/unit/test_token.o: CPPFLAGS += -Ibroker -Icuse-dev/include
$(BUILD)/tests/test_token: $(OBJ)/tests/unit/test_token.o $(OBJ)/broker/token.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) $(LDLIBS) -o $@

# The ioctl ABI's test checks gvmmem_ioctl.h at compile time.
$(OBJ)/tests/unit/test_ioctl_abi.o: CPPFLAGS += -Icuse-dev/include

# The coherence core's test drives its simulator.
$(OBJ)/tests/unit/test_dsm.o: CPPFLAGS += -Igiantvm-kvm/core
$(BUILD)/tests/test_dsm: $(OBJ)/tests/unit/test_dsm.o $(DSM_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) -o $@

# The pinned VMs' test pins guest pages as io_uring fixed buffers.
$(BUILD)/tests/test_pinned: LDLIBS += -luring

# The sandbox's test loads the broker's own filter.
$(OBJ)/tests/integration/test_sandbox.o: CPPFLAGS += -Ibroker
$(BUILD)/tests/test_sandbox: $(OBJ)/tests/integration/test_sandbox.o $(OBJ)/broker/sandbox.o \
		$(TEST_SUPPORT) $(LIB)/libgvmmem.a $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) $(LDLIBS) -lseccomp -o $@

# test_qemu's stand-in for QEMU, run with libgvm-qemu-hook.so preloaded:
# never sanitized, like the hook and QEMU (ASan must be the first library
# loaded, and LD_PRELOAD would come before it).
TEST_HELPERS := $(BUILD)/tests/hook-probe
$(BUILD)/tests/hook-probe: tests/integration/hook_probe.c
	@mkdir -p $(dir $@)
	$(CC) -D_GNU_SOURCE -O2 -g -std=gnu11 -Wall -Wextra -Werror $< -o $@

$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(OBJ)/tests/integration/%.o $(TEST_SUPPORT) $(LIB)/libgvmmem.a $(LIB)/libgvmproto.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) $(LDLIBS) -o $@

# ---- fuzz (clang libFuzzer) ----
FUZZ_CC ?= clang
$(BUILD)/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c proto/frame.c proto/names.c $(GEN)/gvm.pb-c.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined \
		$(CPPFLAGS) $^ $(PKG_LIBS) -o $@

# ---- top-level targets ----
.PHONY: all deps guest check tests fuzz fuzz-short bench demo install install-dist clean format
.DEFAULT_GOAL := all

all: $(LIB)/libgvmproto.a $(CLIENT_LIBS) $(LIB)/libgvm-qemu-hook.so $(PROGS)

deps:
	@bash dist/deps.sh

guest: $(GUEST_FILES)
ifeq ($(BUILD),build)
guest: $(GUEST)/cuse-initramfs.cpio.gz
endif

tests: all $(UNIT_TESTS) $(INTEG_TESTS) $(TEST_HELPERS) $(GUEST_FILES)

# The release build (warnings as errors), then every test under ASan+UBSan,
# then a short fuzz run of the frame decoder.
check: deps
	$(MAKE) all guest build/tests/test_sandbox
	$(MAKE) SAN=1 BUILD=build/san tests
	bash tests/run.sh build/san build/tests/test_sandbox
	bash tests/dist/units.sh build/bin
	$(MAKE) fuzz-short

fuzz-short: $(BUILD)/fuzz/fuzz_frame
	bash tests/fuzz/run.sh $< $(FUZZ_SECONDS)

fuzz: deps $(BUILD)/fuzz/fuzz_frame
	bash tests/fuzz/run.sh $(BUILD)/fuzz/fuzz_frame 600

bench: deps
	$(MAKE) all
	bash bench/run.sh $(BUILD)

demo: deps
	$(MAKE) all guest
	bash dist/demo.sh $(BUILD)

# Debian's QEMU 7.2 with qemu-hook/patches, linked to $(LIB)/libgvmmem.so,
# in $(BUILD)/qemu-src (needs apt; not part of `make check`).
.PHONY: qemu-patched
qemu-patched: all
	bash qemu-hook/build-patched.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/gvmmem \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(LIB)/libgvmmem.so.0 $(LIB)/libgvm-qemu-hook.so $(DESTDIR)$(PREFIX)/lib/
	ln -sf libgvmmem.so.0 $(DESTDIR)$(PREFIX)/lib/libgvmmem.so
	install -m 0644 $(LIB)/libgvmmem.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 $(LIB)/pkgconfig/gvmmem.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 0644 client-lib/include/gvmmem.h cuse-dev/include/gvmmem_ioctl.h \
		$(DESTDIR)$(PREFIX)/include/
	install -m 0644 proto/gvm.proto $(DESTDIR)$(PREFIX)/share/gvmmem/
	$(MAKE) install-dist

# systemd units with this install's paths.
UNITS := $(BUILD)/dist/gvm-broker.service $(BUILD)/dist/gvm-memserver@.service
$(BUILD)/dist/%.service: dist/systemd/%.service.in FORCE
	@mkdir -p $(dir $@)
	@sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@DOCDIR@|$(PREFIX)/share/doc/gvmmem|g' $< > $@.tmp && \
		(cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@)

install-dist: $(UNITS)
	install -d $(DESTDIR)/lib/systemd/system $(DESTDIR)/lib/udev/rules.d \
		$(DESTDIR)/usr/lib/modules-load.d $(DESTDIR)/etc/gvm \
		$(DESTDIR)$(PREFIX)/share/doc/gvmmem
	install -m 0644 $(UNITS) $(DESTDIR)/lib/systemd/system/
	install -m 0644 dist/udev/70-gvmmem.rules $(DESTDIR)/lib/udev/rules.d/
	install -m 0644 dist/modules-load.d/cuse.conf $(DESTDIR)/usr/lib/modules-load.d/
	install -m 0644 README.md docs/protocol.md $(DESTDIR)$(PREFIX)/share/doc/gvmmem/
	for f in gvm.conf donors memserver-main.conf; do \
		[ -e $(DESTDIR)/etc/gvm/$$f ] || install -m 0644 dist/etc/$$f $(DESTDIR)/etc/gvm/; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

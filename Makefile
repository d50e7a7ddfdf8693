# virtio-iommu-rs: build QEMU 10.2.2 with the project's Rust crates, test, demo.
#   make demo    fetch, build, start QEMU with -device virtio-iommu-rs
#   make check   every test: cargo test, then the qtests (both devices)
#   make bench   the benchmark: DMA API and device against QEMU's C ones
# Everything lands in build/ (git-ignored); downloads are cached in
# ~/.cache/virtio-iommu-rs.

BUILD      ?= $(CURDIR)/build
QEMU_SRC   := $(BUILD)/qemu-src
QEMU_BUILD := $(BUILD)/qemu-build
QEMU       := $(QEMU_BUILD)/qemu-system-x86_64
QEMU_ARM   := $(QEMU_BUILD)/qemu-system-aarch64
QTESTS     := virtio-iommu-rs-test virtio-iommu-rs-requests-test virtio-iommu-rs-translate-test \
              virtio-iommu-rs-dma-test virtio-iommu-rs-migration-test
# The same, on aarch64's virt machine (the first is about q35's wiring),
# and virt's virtio-mmio endpoints
QTESTS_ARM := $(filter-out virtio-iommu-rs-test,$(QTESTS)) virtio-iommu-rs-mmio-test
# Built with the qtests (it uses libqos) but run only by `make bench`.
BENCH      := virtio-iommu-rs-bench
# A wrapper with the same name as the emulator (libqtest reads the target
# from it) that adds Debian's firmware directories.
QEMU_RUN   := $(BUILD)/bin/qemu-system-x86_64
QEMU_ARM_RUN := $(BUILD)/bin/qemu-system-aarch64
GUEST      := $(BUILD)/guest
JOBS       ?= $(shell nproc)

FIRMWARE_DIRS := /usr/share/seabios /usr/lib/ipxe/qemu /usr/share/qemu

# Let ccache hit across checkouts in different directories (each CI run is a
# fresh clone): paths under the checkout are hashed relative to it, and the
# working directory (recorded in debug info) is left out of the hash.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

CONFIGURE_FLAGS := \
	--target-list=x86_64-softmmu,aarch64-softmmu \
	--without-default-features \
	--enable-rust --enable-kvm --enable-tcg --enable-slirp \
	--enable-fdt=system --enable-pixman \
	--disable-docs --disable-download --disable-install-blobs \
	--firmwarepath=$(subst $() ,:,$(FIRMWARE_DIRS)) \
	--cc="ccache cc" --host-cc="ccache cc" --cxx="ccache c++"

.PHONY: all deps qemu build check cargo-test qtest lint fuzz demo clean distclean
all: build

deps: $(BUILD)/.deps-installed
$(BUILD)/.deps-installed: scripts/install-deps.sh
	bash scripts/install-deps.sh
	@mkdir -p $(BUILD) && touch $@

# The QEMU tree is recreated whenever the pinned version, an overlay or a
# patch changes; the project itself is linked in, so editing it does not.
$(QEMU_SRC)/.prepared: $(BUILD)/.deps-installed scripts/versions.sh scripts/fetch-qemu.sh \
		scripts/prepare-qemu.sh $(wildcard patches/qemu/*.patch) \
		$(wildcard scripts/subprojects/*/meson.build)
	bash scripts/prepare-qemu.sh $(QEMU_SRC)
	rm -rf $(QEMU_BUILD)
	touch $@

$(QEMU_BUILD)/build.ninja: $(QEMU_SRC)/.prepared
	mkdir -p $(QEMU_BUILD)
	cd $(QEMU_BUILD) && $(QEMU_SRC)/configure $(CONFIGURE_FLAGS)

qemu: $(QEMU_BUILD)/build.ninja

build: $(QEMU_BUILD)/build.ninja $(QEMU_RUN) $(QEMU_ARM_RUN)
	ninja -C $(QEMU_BUILD) -j$(JOBS) qemu-system-x86_64 qemu-system-aarch64 \
		$(addprefix tests/qtest/,$(sort $(QTESTS) $(QTESTS_ARM)) $(BENCH))

$(QEMU_RUN): Makefile
	mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec %s %s "$$@"\n' "$(QEMU)" "$(foreach d,$(FIRMWARE_DIRS),-L $(d))" > $@
	chmod +x $@

$(QEMU_ARM_RUN): Makefile
	mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec %s "$$@"\n' "$(QEMU_ARM)" > $@
	chmod +x $@

cargo-test:
	cargo test --quiet

qtest: build
	bash scripts/run-qtest.sh $(QEMU_RUN) $(addprefix $(QEMU_BUILD)/tests/qtest/,$(QTESTS)) \
		--qemu $(QEMU_ARM_RUN) $(addprefix $(QEMU_BUILD)/tests/qtest/,$(QTESTS_ARM))

lint: build
	bash scripts/lint.sh $(QEMU_BUILD)

check: cargo-test lint qtest fuzz-qemu-quick functional

# Fuzz the core's request handling (not part of check: cargo-fuzz needs
# libFuzzer's unstable compiler flags, allowed here with RUSTC_BOOTSTRAP).
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd hw-virtio-iommu/core/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run requests -- \
		-max_total_time=$(FUZZ_SECONDS)

# Fuzz both devices inside QEMU as a hostile guest driver (qtest, x-dma-test
# DMA between the requests; docs/fuzzing.md). The quick run uses fixed seeds,
# so it is reproducible; FUZZ_QEMU_ARGS adds options (--seeds, --steps, ...).
# --compare is the request paths' equivalence test: the same steps on
# virtio-iommu-rs copying requests and mapping them (virtqueue_pop) must
# look the same to the driver, ring state included.
.PHONY: fuzz-qemu fuzz-qemu-quick
fuzz-qemu: build
	rm -rf $(BUILD)/fuzz-qemu
	python3 scripts/fuzz-qemu.py --qemu $(QEMU_RUN) --seeds 1-40 --steps 5000 \
		--time-budget 600 --out $(BUILD)/fuzz-qemu $(FUZZ_QEMU_ARGS)
	python3 scripts/fuzz-qemu.py --qemu $(QEMU_RUN) --compare --seeds 1-10 --steps 5000 \
		--time-budget 600 --out $(BUILD)/fuzz-qemu/compare $(FUZZ_QEMU_ARGS)

fuzz-qemu-quick: build
	rm -rf $(BUILD)/fuzz-qemu-quick
	python3 scripts/fuzz-qemu.py --qemu $(QEMU_RUN) --seeds 1-3 --steps 2000 \
		--out $(BUILD)/fuzz-qemu-quick $(FUZZ_QEMU_ARGS)
	python3 scripts/fuzz-qemu.py --qemu $(QEMU_RUN) --compare --seeds 1-2 --steps 2000 \
		--out $(BUILD)/fuzz-qemu-quick/compare $(FUZZ_QEMU_ARGS)

# The main job: QEMU's view of the device, then a Linux guest booted behind
# virtio-iommu-rs (strict mode), and what the guest saw: one cell of the
# functional tests, its file run directly as QEMU's docs describe.
DEMO_DIR := $(QEMU_BUILD)/tests/functional/x86_64/test_virtio_iommu_rs.VirtioIommuRsQ35.test_rs_strict_bypass_on
demo: build guest-image
	python3 scripts/demo.py $(QEMU_RUN)
	@echo; echo "== a Linux guest behind virtio-iommu-rs (TCG, iommu.strict=1) =="
	$(FUNCTIONAL_ENV) QEMU_TEST_QEMU_BINARY=$(QEMU) ./pyvenv/bin/python3 \
		$(CURDIR)/tests-functional/x86_64/test_virtio_iommu_rs.py \
		-k '*.VirtioIommuRsQ35.test_rs_strict_bypass_on'
	@echo; echo "== what the guest printed =="
	@grep -hE 'virtio_iommu|iommu group|RESULT (iommu-driver|groups|disk|net|read)' \
		$(DEMO_DIR)/console.log | sed 's/^[-0-9]* [0-9:,]*: //'

# The same on aarch64's virt machine: the guest booted from the device tree
# (no firmware) behind virtio-iommu-rs, strict; the PCIe node's iommu-map
# QEMU gave it, and what the guest saw.
DEMO_ARM_DIR := $(QEMU_BUILD)/tests/functional/aarch64/test_virtio_iommu_rs.VirtioIommuRsVirt.test_rs_strict_bypass_on
.PHONY: demo-arm
demo-arm: build guest-image-arm64
	@echo "== a Linux guest on arm virt behind virtio-iommu-rs (TCG, device tree, iommu.strict=1) =="
	$(FUNCTIONAL_ENV) QEMU_TEST_QEMU_BINARY=$(QEMU_ARM) ./pyvenv/bin/python3 \
		$(CURDIR)/tests-functional/aarch64/test_virtio_iommu_rs.py \
		-k '*.VirtioIommuRsVirt.test_rs_strict_bypass_on'
	@echo; echo "== the device tree QEMU built: the PCIe node's iommu-map (requester ids -> IOMMU) =="
	@cat $(DEMO_ARM_DIR)/iommu-map.txt
	@echo; echo "== what the guest printed =="
	@grep -ahE 'virtio_iommu|iommu group|iommu-map|RESULT (iommu-driver|groups|disk|net|read)' \
		$(DEMO_ARM_DIR)/console.log | sed 's/^[-0-9]* [0-9:,]*: //'

clean:
	rm -rf $(QEMU_BUILD) $(BUILD)/bin

distclean:
	rm -rf $(BUILD) target

# Guest image, functional tests and the guest disk-read benchmark. check runs
# the functional matrix: QEMU functional tests (tests-functional/, linked
# into QEMU's tests/functional/ and registered by patches/qemu/0010) run by
# meson: a TCG guest booted 13 times on q35 and migrated 8 times between
# two QEMUs, then booted 16 times on arm virt (13 device-tree boots, 3
# through UEFI), one test method per cell (~9 min when every cell passes
# on the 2-core machine, more when cells hang until the guest watchdog).
#   make guest-image   Debian trixie kernel + own initramfs in build/guest
#   make guest-image-arm64  the same for aarch64 in build/guest-arm64
#   make functional    the matrix, both devices; FUNCTIONAL_TESTS names the
#                      meson tests to run, FUNCTIONAL_ARGS is given to each
#                      test file (unittest's options: -k PATTERN runs the
#                      cells whose test id contains it, e.g.
#                      FUNCTIONAL_ARGS="-k test_rs_" or "-k Uefi"),
#                      FUNCTIONAL_JOBS how many files run at once
#   make guest-bench   O_DIRECT read throughput: none, C and Rust, strict/lazy
FUNCTIONAL_TESTS ?= func-x86_64-virtio_iommu_rs func-x86_64-virtio_iommu_rs_migration \
                    func-aarch64-virtio_iommu_rs
FUNCTIONAL_ARGS ?=
FUNCTIONAL_JOBS ?= 1
BENCH_ARGS ?=
# What meson gives a functional test, plus where our guest images are; for
# a test file run directly (QEMU_TEST_QEMU_BINARY added by the caller).
FUNCTIONAL_GUESTS := VIOMMU_RS_GUEST=$(GUEST) VIOMMU_RS_GUEST_ARM64=$(BUILD)/guest-arm64
FUNCTIONAL_ENV = cd $(QEMU_BUILD) && $(FUNCTIONAL_GUESTS) QEMU_BUILD_ROOT=$(QEMU_BUILD) \
	PYTHONPATH=$(QEMU_SRC)/python:$(QEMU_SRC)/tests/functional
.PHONY: guest-image functional guest-bench
guest-image:
	bash scripts/guest/build-image.sh $(GUEST)

# The same guest for arm64 (arm virt machine): build/guest-arm64/Image
.PHONY: guest-image-arm64
guest-image-arm64:
	bash scripts/guest/build-image.sh $(BUILD)/guest-arm64 arm64

# meson's own log of the run is build/qemu-build/meson-logs/functional-thorough.txt;
# each cell's logs are in build/qemu-build/tests/functional/<target>/<test id>/.
functional: build guest-image guest-image-arm64
	cd $(QEMU_BUILD) || exit 1; rc=0; rm -f meson-logs/functional-thorough.json; \
	$(FUNCTIONAL_GUESTS) ./pyvenv/bin/meson test --no-rebuild --setup thorough \
		--print-errorlogs --num-processes $(FUNCTIONAL_JOBS) --logbase functional \
		$(if $(strip $(FUNCTIONAL_ARGS)),--test-args '$(FUNCTIONAL_ARGS)') \
		$(FUNCTIONAL_TESTS) || rc=1; \
	python3 $(CURDIR)/tests-functional/summary.py meson-logs/functional-thorough.json || rc=1; \
	exit $$rc

guest-bench: build guest-image
	python3 scripts/guest/disk-read-bench.py --qemu $(QEMU_RUN) --guest $(GUEST) $(BENCH_ARGS)

# The benchmark of issue 5 (not part of check): x-dma-test's DMA through the
# Rust API and through pci_dma_rw, without an IOMMU and behind each device;
# MAP+UNMAP rate and memory per mapping of both devices; guest disk reads.
# One table of medians, then one line per target. MAKE_BENCH_ARGS is passed
# on (scripts/bench.py --help), e.g. MAKE_BENCH_ARGS=--no-guest.
MAKE_BENCH_ARGS ?=
.PHONY: bench
bench: build guest-image
	python3 scripts/bench.py --qemu $(QEMU_RUN) --guest $(GUEST) \
		--bench-bin $(QEMU_BUILD)/tests/qtest/$(BENCH) $(MAKE_BENCH_ARGS)

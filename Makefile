# Strata: `make demo` runs the demo, `make test` runs the whole test suite.
# Both install the Debian packages they need when missing (as root, via apt).

SWIFT ?= swift
DEB_PACKAGES := fuse3 libfuse3-dev libattr1-dev attr pkg-config util-linux strace

.PHONY: all deps build release install demo test fuzz-kernel crash-points soak tsan asan bench-find bench-write bench-memory compare bench bench-check clean

all: build

# Installs what is missing; a no-op when everything is there.
deps:
	@if ! pkg-config --exists fuse3 2>/dev/null || [ ! -e /usr/include/attr/libattr.h ] \
	    || ! command -v fusermount3 >/dev/null || ! command -v setfattr >/dev/null || ! command -v strace >/dev/null; then \
	    echo "installing $(DEB_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --static-swift-stdlib

# Installs strata and the strata-mount alias (containers-storage's mount_program) into $(PREFIX)/bin.
PREFIX ?= /usr/local
install: release
	install -D -m 755 .build/release/strata $(DESTDIR)$(PREFIX)/bin/strata
	ln -sf strata $(DESTDIR)$(PREFIX)/bin/strata-mount

demo: release
	STRATA_BIN=$(CURDIR)/.build/release/strata scripts/demo.sh

# The mount tests run the debug binary, so it is built first.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The write path against kernel overlayfs: SEEDS random
# operation sequences, comparing every result, the merged views and the uppers.
SEEDS ?= 20
fuzz-kernel: deps
	$(SWIFT) build --build-tests
	STRATA_FUZZ_SEEDS=$(SEEDS) $(SWIFT) test --skip-build --filter DifferentialWriteTests

# SIGKILL of the daemon at KILLS random points of seeded random workloads (large
# copy-ups, renames of big lower directories, the differential tester's operation
# mix), and at every syscall boundary of 14 single-step scenarios (strace fault
# injection; installs strace); after each, a new mount: the view before or after
# the step in flight, no work debris, kernel overlayfs over the upper agrees.
# `make test` runs 20 random kills and one boundary per scenario; SEED=N other
# plans (CrashPointTests).
KILLS ?= 300
crash-points: deps
	@command -v strace >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; }
	$(SWIFT) build --build-tests
	STRATA_CRASH_KILLS=$(KILLS) STRATA_CRASH_ALL_BOUNDARIES=1 $(if $(SEED),STRATA_CRASH_SEED=$(SEED)) \
	    $(SWIFT) test --skip-build --filter CrashPointTests

# DURATION seconds (default 600) of stress-ng (verifying stressors), fio (crc32c)
# and find/tar readers through a writable mount (scripts/soak.sh; installs
# stress-ng and fio). Fails on any verification error, on daemon descriptors not
# back to their start level, or RSS growth over the bounds documented in the
# script. `make test` runs 30 s (SoakTests).
DURATION ?= 600
soak: deps
	$(SWIFT) build --product strata
	DURATION=$(DURATION) STRATA_BIN=$(CURDIR)/.build/debug/strata scripts/soak.sh

# The multithreaded mount tests against a ThreadSanitizer build of the daemon
# (.build-tsan); fails if TSan reports a data race. libfuse itself is not
# instrumented: its "thread finished with ignores enabled" notes are not races.
tsan: deps
	$(SWIFT) build --build-tests
	$(SWIFT) build --scratch-path .build-tsan -Xswiftc -sanitize=thread --product strata
	rm -rf .build-tsan/reports && mkdir -p .build-tsan/reports
	TSAN_OPTIONS="log_path=$(CURDIR)/.build-tsan/reports/report halt_on_error=0 exitcode=0" STRATA_BIN=$(CURDIR)/.build-tsan/debug/strata \
	    STRATA_FUZZ_SEEDS=4 $(SWIFT) test --skip-build --filter 'Concurrency|Differential|WriteSemantics|Crash|Fault|ReadPath'
	@if grep -l "WARNING: ThreadSanitizer" .build-tsan/reports/* 2>/dev/null; then \
	    echo "ThreadSanitizer reported races (files above)"; exit 1; else echo "ThreadSanitizer: no races reported"; fi

# The in-process unit tests under AddressSanitizer (.build-asan).
asan: deps
	$(SWIFT) test --scratch-path .build-asan -Xswiftc -sanitize=address --filter 'OverlayCoreTests|LayerDiffTests'

# Cold and warm `find -ls` over a generated 30k-file, 4-layer stack:
# kernel overlayfs vs Strata vs fuse-overlayfs (installs fuse-overlayfs).
bench-find: release
	scripts/bench-find.sh

# Write-path workloads (copy-up, create/chmod/rm 10k files, untar, rm -rf of a lower tree):
# kernel overlayfs vs Strata vs fuse-overlayfs, every result checked (installs fuse-overlayfs).
# RUNS=3 SIZE_MB=512 by default; QUICK=1 for a short version.
bench-write: release
	Benchmarks/write-bench.sh

# Kernel overlayfs vs Strata vs fuse-overlayfs on one seeded layer stack: cold/warm find -ls,
# cold stats of existing and missing paths, warm readdir and reads, a big sequential read,
# copy-up, create/chmod/rm, untar, rm -rf of a lower tree; every result checked; a markdown
# table of medians (installs fuse-overlayfs). ARGS passes options, e.g.
# make compare ARGS="--quick --layers 1,16 --output /tmp/compare.md" (Benchmarks/compare --help).
# Peak daemon RSS after walking a 200k-file tree: fuse-overlayfs vs Strata (defaults, and
# bounded by -o max_nodes / dir_cache_entries). FILES=20000 for a quick run.
bench-memory: release
	STRATA_BIN=$(CURDIR)/.build/release/strata Benchmarks/memory-bench.sh

compare: release
	STRATA_BIN=$(CURDIR)/.build/release/strata Benchmarks/compare $(ARGS)

# In-process micro-benchmarks (Benchmarks/, its own package on ordo-one/benchmark):
# lookups through 1/8/64 layers, a cold 10k-entry merged readdir, copy-up of 4 KiB
# and 64 MiB. Prints wall clock, mallocs and LayerSystem syscalls per iteration.
# BENCH_ARGS passes options on, e.g. BENCH_ARGS="--target OverlayLookup --filter hit".
BENCH := cd Benchmarks && $(SWIFT) package --disable-sandbox --allow-writing-to-package-directory benchmark
bench: deps
	$(BENCH) --no-progress $(BENCH_ARGS)

# Malloc and syscall counts against Benchmarks/Thresholds (no wall-clock times are
# checked). Fewer than recorded fails too: record on purpose with Benchmarks/update-thresholds.sh.
bench-check: deps
	$(BENCH) thresholds check --no-progress $(BENCH_ARGS)

clean:
	rm -rf .build

# hapscope — see README.md. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
KERNEL ?= 6.12
PKG ?= ./...
RUN ?= ^TestLab
BENCH ?= ^BenchmarkLab
FUZZTIME ?= 10s
LAB := $(GO) run ./internal/cmd/lab
export HAPSCOPE_REQUIRE_LAB := 1

APT_PACKAGES := qemu-system-x86 busybox-static cpio xz-utils zstd gcc clang llvm libbpf-dev elfutils

.PHONY: all build deps fetch test test-host lab-test lab-bench bench fuzz lint generate demo clean

all: build

build:
	$(GO) build ./...

# Debian packages the lab and the tests need; installs only what is missing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "deps: all Debian packages present"; fi

# Download the lab kernels (6.12, 6.1) and the 6.12 vmlinux with DWARF into the cache.
fetch: deps
	$(LAB) fetch -kernel all -dbg

# Everything: vet, host unit tests, short fuzz runs, lab tests on both kernels.
test: deps lint fetch test-host fuzz
	$(LAB) test -kernel 6.12,6.1 -run '$(RUN)' ./...
	@echo "make test: host tests, fuzz runs and lab tests on 6.12 and 6.1 passed"

test-host:
	$(GO) test -count=1 ./...

# Lab tests of some packages on one kernel, e.g.
#   make lab-test KERNEL=6.1 PKG=./coverage/... RUN=TestLabIsolation
lab-test: deps
	$(LAB) test -kernel $(KERNEL) -run '$(RUN)' $(PKG)

lab-bench: deps
	$(LAB) test -kernel $(KERNEL) -bench '$(BENCH)' $(PKG)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKG)

# Runs every Fuzz* target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKG)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Regenerates the BPF objects and Go bindings (needs clang; the results are committed).
generate: deps
	$(GO) generate ./bpf/...

# The main job. Until the demo measures a workload (issue 5), it boots the lab
# kernels and runs the smoke test: fentry on vfs_read counts a cgroup's reads.
demo: deps
	@echo "demo: the HAP demo is not built yet; running the lab smoke test instead (fentry on vfs_read in Debian 6.12 and 6.1 under QEMU)"
	$(LAB) test -kernel 6.12,6.1 -run '^TestLabSmoke$$' ./internal/lab

clean:
	rm -f hapscope

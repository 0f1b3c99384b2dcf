# hapscope — see README.md. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
KERNEL ?= 6.12
PKG ?= ./...
RUN ?= ^TestLab
BENCH ?= ^BenchmarkLab
FUZZTIME ?= 10s
LAB := $(GO) run ./internal/cmd/lab
# Extra flags for lab-test and lab-bench, e.g. LAB_FLAGS='-cpus 2 -single-thread' (the SMP shape).
LAB_FLAGS ?=
export HAPSCOPE_REQUIRE_LAB := 1

APT_PACKAGES := qemu-system-x86 busybox-static cpio xz-utils zstd gcc clang llvm libbpf-dev elfutils chromium redis-server redis-tools runc wrk python3-tornado bubblewrap nftables docker.io iptables e2fsprogs

.PHONY: all build deps fetch lab-prep matrix reachable overhead test test-lab test-host lab-test lab-bench soak bench fuzz lint generate demo report-check clean

all: build

build:
	$(GO) build ./...

# Builds and vets (tests included) with the oldest Go that go.mod's go line
# declares, so that line stays true for importers. The go command fetches that
# toolchain through the module proxy (golang.org/toolchain) once and caches it.
.PHONY: build-min
GO_MIN = $(shell $(GO) list -m -f '{{.GoVersion}}')
build-min:
	GOTOOLCHAIN=go$(GO_MIN) $(GO) build ./...
	GOTOOLCHAIN=go$(GO_MIN) $(GO) vet ./...

# Debian packages the lab and the tests need; installs only what is missing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "deps: all Debian packages present"; fi

# Download the lab kernels (6.12, 6.1), their vmlinux with DWARF and the debug files of the
# container modules (-dbg) into the cache.
fetch: deps
	$(LAB) fetch -kernel all -dbg

# Everything: vet, host unit tests, short fuzz runs, lab tests on both kernels.
# The two kernels boot at once where the machine has a CPU for each guest.
LAB_PARALLEL := $(if $(filter 1,$(shell nproc)),,-parallel)
# A bound for one guest's boot (a wedged guest fails the run, it does not
# hang it): ./coverage's lab tests alone took 25 min with both guests
# sharing 2 cores.
LAB_TIMEOUT ?= 60m
# With a CPU for each guest, make test's lab part runs in two lanes at once:
# lane 1 boots 6.12 for the packages of LAB_LANE1; lane 2 boots 6.1 for every
# package, then 6.12 for the others. In CI (a60f42e) lane 1 with the first six
# packages took 15.7 min and 6.1's run 23.7 min, 6.12's others about 17 more:
# hap, internal/matrix and examples/hapscope (~15 min of 6.12's) go to lane 1.
LAB_LANE1 := ./coverage/ ./symbolize/ ./bpf/ ./internal/ftrace/ ./internal/lab/ ./internal/labtest/ \
	./hap/ ./internal/matrix/ ./examples/hapscope/
LAB_LANE2 = $(filter-out $(shell $(GO) list $(LAB_LANE1)),$(shell $(GO) list ./...))
test: deps lint build-min fetch lab-prep test-host fuzz
	@$(MAKE) --no-print-directory test-lab
	@echo "make test: host tests, fuzz runs and lab tests on 6.12 and 6.1 passed"

# make test's lab part alone (the kernels and the lab's userland ready).
test-lab:
ifeq ($(LAB_PARALLEL)$(RUN),-parallel^TestLab)
	@mkdir -p out; \
	( set -o pipefail; $(LAB) test -kernel 6.12 -timeout $(LAB_TIMEOUT) -run '$(RUN)' $(LAB_LANE1) 2>&1 | \
		tee out/lab-lane1.log | sed -u 's/^/[lane 1] /' ) & lane1=$$!; \
	( set -o pipefail; { $(LAB) test -kernel 6.1 -timeout $(LAB_TIMEOUT) -run '$(RUN)' ./...; rc=$$?; \
		$(LAB) test -kernel 6.12 -timeout $(LAB_TIMEOUT) -run '$(RUN)' $(LAB_LANE2) || rc=1; exit $$rc; } 2>&1 | \
		tee out/lab-lane2.log | sed -u 's/^/[lane 2] /' ); lane2=$$?; \
	wait $$lane1; lane1=$$?; \
	echo "=== make test: the lab lanes (1: 6.12, $(LAB_LANE1); 2: 6.1, then 6.12 of the other packages):"; \
	grep -h -E '^(=== lab|    (FAIL|SKIP) |lab: )' out/lab-lane1.log out/lab-lane2.log; \
	[ $$lane1 = 0 ] && [ $$lane2 = 0 ]
else
	$(LAB) test -kernel 6.12,6.1 -timeout $(LAB_TIMEOUT) $(LAB_PARALLEL) -run '$(RUN)' ./...
endif

test-host:
	$(GO) test -count=1 ./...

# Lab tests of some packages on one kernel, e.g.
#   make lab-test KERNEL=6.1 PKG=./coverage/... RUN=TestLabIsolation
lab-test: deps
	$(LAB) test -kernel $(KERNEL) $(LAB_FLAGS) -run '$(RUN)' $(PKG)

lab-bench: deps
	$(LAB) test -kernel $(KERNEL) $(LAB_FLAGS) -bench '$(BENCH)' $(PKG)

# Crash safety of pruning (issue 7), not part of make test: redis load for
# 10 minutes under the pruning tracer, the scope reset every minute so probes
# are replaced and closed under load; fails on a guest oops. About 15 min.
#   make soak KERNEL=6.1
soak: deps
	$(LAB) test -kernel $(KERNEL) -run '^TestSoakPrune$$' -timeout 40m ./coverage/...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKG)

# Runs every Fuzz* target for FUZZTIME each. Go 1.26's fuzz coordinator can
# fail a target with a bare "context deadline exceeded" when -fuzztime ends
# while a starved worker is mid-call (go.dev/issue/75804, fixed in Go 1.27):
# such a run, with no failing input written, is rerun once with a count
# budget, which has no deadline to race. Any other failure fails.
FUZZCOUNT ?= 20000x
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $$($(GO) list $(PKG)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg >$$log 2>&1; then \
				cat $$log; \
				if grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
					echo "fuzz: $$f: the Go fuzz coordinator's deadline race (go.dev/issue/75804), no failing input; rerunning for $(FUZZCOUNT)"; \
					$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZCOUNT) -fuzzminimizetime 2s $$pkg; \
				else exit 1; fi; \
			else cat $$log; fi; \
		done; \
	done

# The HTML report rendered by headless Chromium (Debian's package): no console
# errors, the expected bars. Also part of test-host.
report-check: deps
	$(GO) test -count=1 -run '^TestReportInChromium$$' -v ./hap

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Regenerates the BPF objects and Go bindings (needs clang; the results are committed).
generate: deps
	$(GO) generate ./bpf/...

# The main job: score redis SET and GET, native and under Docker. Runs on this
# kernel when it can be traced (hapscope doctor), else in the lab's Debian 6.12
# under QEMU. Profiles and the HTML report land in out/demo/.
demo: deps
	CGO_ENABLED=0 $(GO) build -o out/hapscope ./examples/hapscope
	@mkdir -p out/demo
	@if out/hapscope doctor -q; then \
		echo "demo: this kernel can be traced; measuring natively"; \
		out/hapscope demo --out out/demo; \
	else \
		echo "demo: this kernel cannot be traced (see: out/hapscope doctor); measuring in the lab (Debian 6.12 under QEMU)"; \
		$(LAB) run -kernel 6.12 -out out/demo -- out/hapscope demo --root /host --out /out; \
	fi
	@echo "demo: report: $(CURDIR)/out/demo/report.html"

# Userland the lab's workloads need that the guest cannot download: gVisor's
# runsc (built once, CGO_ENABLED=0, 3-4 min, cached) and express (npm, once).
LAB_CACHE = $(or $(HAPSCOPE_LAB_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hapscope-lab)
RUNSC_VERSION := v0.0.0-20260905035102-160fafc42237
lab-prep: deps
	@if [ ! -x $(LAB_CACHE)/runsc/runsc ]; then \
		echo "lab-prep: building gVisor runsc $(RUNSC_VERSION) (CGO_ENABLED=0, 3-4 min, cached in $(LAB_CACHE)/runsc)"; \
		CGO_ENABLED=0 GOBIN=$(LAB_CACHE)/runsc $(GO) install gvisor.dev/gvisor/runsc@$(RUNSC_VERSION); \
	fi
	@if [ ! -f $(LAB_CACHE)/express/node_modules/express/package.json ]; then \
		echo "lab-prep: npm install express into $(LAB_CACHE)/express"; \
		mkdir -p $(LAB_CACHE)/express && cd $(LAB_CACHE)/express && npm install --no-audit --no-fund express@5; \
	fi

# Reproduces the 2018 HAP study: redis SET/GET, python-tornado and
# node-express under native, Docker (docker.io, bridge + published port,
# overlay2 on the lab's ext4 disk), gVisor under Docker (netstack; systrap,
# ptrace), bubblewrap, and the labelled variants that explain them (Docker
# without seccomp, gVisor on the host's network, runc started directly;
# MATRIX_RUNTIMES adds runc-direct-noseccomp, gvisor-systrap, gvisor-ptrace;
# MATRIX_WORKLOADS adds idle, the runtimes' baseline), RUNS times per cell,
# in the lab's Debian 6.12, each over a MATRIX_WINDOW window after
# MATRIX_WARMUP (180 s: the window at which the tenant's part of a Docker
# and a gVisor cell varied by at most 3 % across runs; at 60 s, 1–12 %).
# About three hours. The study runs on an SMP guest (real hosts are SMP; one
# and two vCPUs drive different function sets): MATRIX_CPUS vCPUs on
# single-threaded TCG (multi-threaded TCG with two vCPUs oopses under text
# patching), so a guest takes one host CPU: MATRIX_LANES guests (one per
# host CPU, at most 2) measure side by side, the workloads dealt out among
# them, each into out/matrix/laneN (its log: out/matrix/laneN.log); then
# `hapscope matrix --merge` writes the one table, profiles, matrix.json and
# report.html into out/matrix. MATRIX_MINUTES bounds each lane: then
# SIGINT, and the table of the runs that finished.
RUNS ?= 3
MATRIX_FLAGS ?=
MATRIX_CPUS ?= 2
MATRIX_MINUTES ?= 290
MATRIX_WINDOW ?= 180s
MATRIX_WARMUP ?= 3s
MATRIX_WORKLOADS ?= redis-set,redis-get,python-tornado,node-express
MATRIX_RUNTIMES ?= native,docker,docker-gvisor-systrap,docker-gvisor-ptrace,bubblewrap,docker-noseccomp,docker-gvisor-systrap-hostnet,runc-direct,gvisor-kvm,kata-qemu,kata-firecracker,nabla
MATRIX_LANES ?= $(shell n=$$(nproc); [ $$n -ge 2 ] && echo 2 || echo 1)
matrix: lab-prep
	CGO_ENABLED=0 $(GO) build -o out/hapscope-matrix ./examples/hapscope
	$(GO) build -o out/lab ./internal/cmd/lab
	@rm -rf out/matrix && mkdir -p out/matrix
	@ws="$$(echo '$(MATRIX_WORKLOADS)' | tr , ' ')"; pids=; dirs=; \
	for i in $$(seq 1 $(MATRIX_LANES)); do \
		lane=; j=0; for w in $$ws; do [ $$(( j % $(MATRIX_LANES) + 1 )) = $$i ] && lane="$$lane,$$w"; j=$$((j + 1)); done; \
		[ -n "$$lane" ] || continue; \
		mkdir -p out/matrix/lane$$i; dirs="$$dirs,out/matrix/lane$$i"; \
		echo "matrix: lane $$i: $${lane#,}"; \
		( set -o pipefail; out/lab run -kernel 6.12 -cpus $(MATRIX_CPUS) $(if $(filter 1,$(MATRIX_CPUS)),,-single-thread) \
			-timeout $$(( $(MATRIX_MINUTES) + 10 ))m -out out/matrix/lane$$i -- \
			/bin/busybox timeout -s INT $$(( $(MATRIX_MINUTES) * 60 )) out/hapscope-matrix matrix --root /host --out /out \
			--runs $(RUNS) --warmup $(MATRIX_WARMUP) --window $(MATRIX_WINDOW) --workloads $${lane#,} --runtimes $(MATRIX_RUNTIMES) \
			--runsc $(LAB_CACHE)/runsc/runsc --express $(LAB_CACHE)/express/node_modules/express $(MATRIX_FLAGS) 2>&1 | \
			tee out/matrix/lane$$i.log | sed -u "s/^/[lane $$i] /" ) & pids="$$pids $$!"; \
	done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; \
	out/hapscope-matrix matrix --merge "$${dirs#,}" --out out/matrix || rc=1; \
	echo "matrix: report: $(CURDIR)/out/matrix/report.html"; exit $$rc

# Reachable HAP (issue 16): the sysfuzz executor as the workload of each
# runtime, PROGRAMS programs unguided and guided per row, in one 6.12 boot;
# the table, reachable.json and each run's profile land in out/reachable/.
PROGRAMS ?= 300
REACH_FLAGS ?=
REACH_MINUTES ?= 150
reachable: lab-prep
	CGO_ENABLED=0 $(GO) build -o out/hapscope-matrix ./examples/hapscope
	CGO_ENABLED=0 $(GO) build -o out/sysfuzz ./internal/cmd/sysfuzz
	@mkdir -p out/reachable
	$(LAB) run -kernel 6.12 -cpus $(MATRIX_CPUS) $(if $(filter 1,$(MATRIX_CPUS)),,-single-thread) -timeout $$(( $(REACH_MINUTES) + 10 ))m -out out/reachable -- \
		/bin/busybox timeout -s INT $$(( $(REACH_MINUTES) * 60 )) out/hapscope-matrix reachable --root /host --out /out \
		--guest --fuzzer $(CURDIR)/out/sysfuzz --runsc $(LAB_CACHE)/runsc/runsc --programs $(PROGRAMS) $(REACH_FLAGS)

# What measuring costs (issue 6): redis SET and express in three rounds of
# untraced, hapscope counts, hapscope pruned, then once under ftrace
# function_graph the 2018 way, all in one 6.12 boot (about 12 min; more
# rounds: MATRIX_FLAGS=--runs=5); overhead.json lands in out/overhead/.
overhead: lab-prep
	CGO_ENABLED=0 $(GO) build -o out/hapscope-overhead ./examples/hapscope
	@mkdir -p out/overhead
	$(LAB) run -kernel 6.12 -timeout 40m -out out/overhead -- out/hapscope-overhead matrix --overhead --root /host --out /out \
		--express $(LAB_CACHE)/express/node_modules/express $(MATRIX_FLAGS)

clean:
	rm -rf hapscope out

# pktspan — the README's two commands are `make demo` and `make test`.
# Every target installs what it needs (Debian packages, Go modules) by itself.

SHELL := /bin/bash
GO    ?= go
BIN   := bin
CACHE ?= $(HOME)/.cache/pktspan
JAEGER_BIN ?= $(CACHE)/jaeger
export PKTSPANTEST_JAEGER_BIN := $(JAEGER_BIN)
OTELCOL_BIN ?= $(CACHE)/otelcol
export PKTSPANTEST_OTELCOL_BIN := $(OTELCOL_BIN)

# Debian packages: clang/llvm/libbpf-dev to regenerate the probes; libpcap0.8-dev and
# libdbus-1-dev, whose static libraries pktspan links to compile filter expressions
# (collector/pcapfilter); iproute2, nftables, iputils-ping for the end-to-end tests and
# the demo, and tcpdump, the reference of the filter expressions' differential test.
APT_PACKAGES := clang llvm libbpf-dev libpcap0.8-dev libdbus-1-dev iproute2 nftables iputils-ping tcpdump

# pktspan links libpcap (cgo): statically, C library included, so that the binary runs
# anywhere, a FROM scratch image too. --no-warnings: glibc warns that libpcap's name
# lookups (host names, /etc/services) need its shared NSS modules at run time; without
# them only numbers work in an expression, as the README says.
STATIC_LDFLAGS := -extldflags '-static -Wl,--no-warnings'

.PHONY: all build deps generate check-generate jaeger otelcol test unit e2e vmtest demo demo-smoke lint clean

include mk/vm.mk
include mk/bench.mk
include mk/compose.mk

all: build

build: deps
	$(GO) build -ldflags "$(STATIC_LDFLAGS)" -o $(BIN)/pktspan ./cmd/pktspan

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# bpf2go is pinned in tools/bpf2go to the cilium/ebpf version in go.mod.
$(BIN)/bpf2go: tools/bpf2go/go.mod tools/bpf2go/go.sum
	cd tools/bpf2go && $(GO) build -o ../../$(BIN)/bpf2go github.com/cilium/ebpf/cmd/bpf2go

# Where bpf2go writes: pktspan's probes, and the bench's reference programs.
GENERATED := bpf/ internal/bpfstats/

generate: deps $(BIN)/bpf2go
	PATH="$(CURDIR)/$(BIN):$$PATH" $(GO) generate $(addprefix ./,$(GENERATED))

# The committed objects must be exactly what the committed C produces.
check-generate: generate
	@git diff --exit-code -- $(GENERATED) && [ -z "$$(git status --porcelain -- $(GENERATED))" ] || { echo "$(GENERATED): generated files differ from the committed ones: run 'make generate' and commit"; exit 1; }

jaeger:
	@tools/jaeger/build.sh

# The OpenTelemetry Collector of the container tests and the gateway test (tools/otelcol).
otelcol:
	@tools/otelcol/build.sh

# staticcheck is pinned in tools/staticcheck, so every machine reports the same findings.
$(BIN)/staticcheck: tools/staticcheck/go.mod tools/staticcheck/go.sum
	cd tools/staticcheck && $(GO) build -o ../../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck

# Every build tag's files are checked: the e2e, vmtest and compose tiers' tests are code too.
LINT_TAGS := "" e2e vmtest compose

lint: deps $(BIN)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt would change: $$out"; exit 1; }
	@for tags in $(LINT_TAGS); do \
		echo ">> go vet and staticcheck, tags '$$tags'"; \
		$(GO) vet -tags "$$tags" ./... && $(BIN)/staticcheck -tags "$$tags" ./... || exit 1; \
	done
	@echo ">> go vet and staticcheck, examples/demoapp"
	cd examples/demoapp && $(GO) vet ./... && ../../$(BIN)/staticcheck ./...
	@for tags in "" e2e; do \
		echo ">> go vet and staticcheck, examples/k8s, tags '$$tags'"; \
		(cd examples/k8s && $(GO) vet -tags "$$tags" ./... && ../../$(BIN)/staticcheck -tags "$$tags" ./...) || exit 1; \
	done
	@echo ">> go vet and staticcheck, tools/otelcol"
	cd tools/otelcol && $(GO) vet ./... && ../../$(BIN)/staticcheck ./...

# Tier 1 of docs/DESIGN.md: no root, no Jaeger, no kernel features; what needs them is tagged
# e2e, vmtest or compose. examples/demoapp and examples/k8s are modules of their own, which
# ./... does not reach.
unit: deps
	$(GO) test -race -count=1 ./...
	cd examples/demoapp && $(GO) test -race -count=1 ./...
	cd examples/k8s && $(GO) test -race -count=1 ./...

# Tiers 2 and 4 of docs/DESIGN.md: real kernel, namespaces, nftables, Jaeger; and the
# Docker Engine's containers wherever one answers (internal/dockertest: under CI=true a
# missing engine fails), in a test image built around busybox-static (vmtest-deps).
# examples/k8s's e2e tests run the gateway's collector configuration in `make otelcol`'s
# collector (no root needed there). Needs root.
E2E_PACKAGES := ./cmd/pktspan/ ./collector/ ./collector/netns/ ./internal/bpfstats/ ./internal/jaeger/ ./internal/netns/
e2e: deps vmtest-deps jaeger otelcol
	$(GO) test -count=1 -tags e2e -timeout 20m -v $(E2E_PACKAGES)
	cd examples/k8s && $(GO) test -count=1 -tags e2e -timeout 5m -v ./...

# Tier 3 of docs/DESIGN.md: Debian's 6.1 and 6.12 kernels under qemu, where fentry and
# kprobes exist; one VM at a time (-p 1): each wants both cores.
vmtest: vmkernels
	$(GO) test -count=1 -p 1 -tags vmtest -timeout 30m -v ./internal/vm/ ./internal/kernelmatrix/

# The README's demo, for a few seconds, so `make demo` stays true.
demo-smoke: build jaeger
	$(GO) run ./internal/cmd/readme-demo --pktspan $(BIN)/pktspan --jaeger "$(JAEGER_BIN)" --duration 8s >/dev/null

test: deps lint check-generate unit e2e vmtest demo-smoke containers

demo: deps build jaeger
	$(GO) run ./internal/cmd/readme-demo --pktspan $(BIN)/pktspan --jaeger "$(JAEGER_BIN)"

clean:
	rm -rf $(BIN)

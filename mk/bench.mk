# `make bench`: the figures of BENCHMARKS.md, each as a ratio to a baseline measured in
# the same run. BENCH_SHORT=1 runs every case briefly, so CI keeps it working; the
# numbers are not asserted on. The kernel cases need root and are skipped without it.

BENCH_SHORT ?=
export BENCH_SHORT
BENCHTIME := $(if $(filter 1,$(BENCH_SHORT)),200ms,1s)

.PHONY: bench bench-deps

bench-deps:
	@if [ "$$(id -u)" = 0 ] && ! command -v iperf3 >/dev/null; then \
		echo ">> installing Debian package iperf3"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; \
	fi

bench: build bench-deps
	$(GO) test -count=1 -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/cmd/bench/ ./collector/ ./spanner/ ./spanner/sink/
	$(GO) build -o $(BIN)/pktspan-bench ./internal/cmd/bench
	$(BIN)/pktspan-bench -pktspan $(BIN)/pktspan -cpuprofile $(BIN)/bench-export.pprof

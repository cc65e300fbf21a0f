# pktspan's image, built from this repository: `docker compose up --build` builds it for
# the demo stack (docker-compose.yaml), `docker build -t pktspan .` on its own. pktspan
# needs the host: run it privileged, in the host's PID namespace, with /sys/kernel/btf,
# /sys/fs/bpf, /sys/kernel/tracing and /sys/fs/cgroup mounted (docker-compose.yaml and
# examples/k8s/daemonset.yaml show how).
#
# The base images are build arguments only so that pktspan's container tests, on a
# machine with no image registry, can name local stand-ins for them (internal/compose).
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
# libpcap compiles filter expressions; pktspan links it and libdbus statically (cgo).
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev libpcap0.8-dev libdbus-1-dev \
	&& apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Modules first, so that a change to the source does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static, C library included: the binary needs nothing from the runtime image (the
# Makefile's STATIC_LDFLAGS).
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w -extldflags '-static -Wl,--no-warnings'" -o /out/pktspan ./cmd/pktspan

FROM ${RUNTIME_IMAGE}
# CA certificates for OTLP over TLS (the default without --otlp-insecure); the shell and
# coreutils stay for health checks (`test -e` on --ready-file) and for looking around.
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
	&& apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pktspan /usr/local/bin/pktspan
ENTRYPOINT ["pktspan"]

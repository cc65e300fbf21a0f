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
WORKDIR /src
# Modules first, so that a change to the source does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static: the binary needs nothing from the runtime image's libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/pktspan ./cmd/pktspan

FROM ${RUNTIME_IMAGE}
# CA certificates for OTLP over TLS (the default without --otlp-insecure); the shell and
# coreutils stay for health checks (`test -e` on --ready-file) and for looking around.
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
	&& apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pktspan /usr/local/bin/pktspan
ENTRYPOINT ["pktspan"]

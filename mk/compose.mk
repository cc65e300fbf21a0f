# Tier 4 of docs/DESIGN.md: the compose stack of docker-compose.yaml on the Docker Engine,
# with examples/compose/docker-compose.test.yaml on top (internal/compose). Included from
# the Makefile; uses its GO.
#
# No image registry is needed: debootstrap makes a Debian root file system for the
# stand-ins of the base images, and Jaeger and the collector are the binaries `make jaeger`
# and `make otelcol` build. Inside the build containers the Dockerfiles download Go
# modules and Debian packages as they do on a user's machine.

# The stack is run with both Compose implementations users have: docker-compose 1.29 (the
# Debian package) and Compose v2 (tools/compose, built from the Go module proxy).
COMPOSE_V2_BIN ?= $(CACHE)/docker-compose-v2
export PKTSPANTEST_COMPOSE_V2_BIN := $(COMPOSE_V2_BIN)
COMPOSE_APT_PACKAGES := debootstrap docker-compose

.PHONY: compose-deps compose-v2 compose-images compose-test containers

compose-deps:
	@missing=$$(for p in $(COMPOSE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

compose-v2:
	@tools/compose/build.sh

# The stand-ins for the images the stack pulls; prints the variables the override reads,
# for running docker-compose by hand.
compose-images: compose-deps jaeger otelcol
	$(GO) run ./internal/cmd/compose-images --jaeger "$(JAEGER_BIN)" --otelcol "$(OTELCOL_BIN)"

compose-test: compose-deps jaeger otelcol compose-v2
	PKTSPANTEST_COMPOSE="$$(command -v docker-compose) $(COMPOSE_V2_BIN)" \
		$(GO) test -count=1 -tags compose -timeout 50m -v ./internal/compose/

# What `make test` runs: the container tier wherever a Docker Engine answers. Under CI a
# machine without one fails, since the tier would silently stop being tested; elsewhere
# the skip is said loudly.
containers:
	@if docker version >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory compose-test; \
	elif [ "$$CI" = true ]; then \
		echo "containers: no Docker Engine answers (docker version failed), and CI=true: the container tier must run in CI" >&2; \
		exit 1; \
	else \
		echo "!!"; \
		echo "!! SKIPPED: the container tier (make compose-test): no Docker Engine answers here (docker version failed)"; \
		echo "!!"; \
	fi

# Tier 4 of docs/DESIGN.md: the compose stack of docker-compose.yaml on the Docker Engine,
# with examples/compose/docker-compose.test.yaml on top (internal/compose). Included from
# the Makefile; uses its GO.
#
# No image registry is needed: debootstrap makes a Debian root file system for the
# stand-ins of the base images, and Jaeger and the collector are the binaries `make jaeger`
# and `make otelcol` build. Inside the build containers the Dockerfiles download Go
# modules and Debian packages as they do on a user's machine.

.PHONY: compose-deps compose-images compose-test containers

compose-deps:
	@dpkg -s debootstrap >/dev/null 2>&1 || { \
		echo ">> installing Debian package debootstrap"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }

# The stand-ins for the images the stack pulls; prints the variables the override reads,
# for running docker-compose by hand.
compose-images: compose-deps jaeger otelcol
	$(GO) run ./internal/cmd/compose-images --jaeger "$(JAEGER_BIN)" --otelcol "$(OTELCOL_BIN)"

compose-test: compose-deps jaeger otelcol
	$(GO) test -count=1 -tags compose -timeout 40m -v ./internal/compose/

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

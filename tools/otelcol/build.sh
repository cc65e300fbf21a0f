#!/bin/sh
# Builds the pinned OpenTelemetry Collector (main.go: the components the compose stack
# and the Kubernetes gateway use) that pktspan's container tests run, unless it is
# already there and built from this folder's go.mod, go.sum and main.go.
#
# Location: $PKTSPAN_OTELCOL_BIN, else ${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/otelcol.
# A stamp next to it (<binary>.stamp) holds the sha256 of the files it was built from.
# Needs Go and network access to the module proxy (or a warm module cache).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=${PKTSPAN_OTELCOL_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/otelcol}
stamp="$bin.stamp"
want=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -d' ' -f1)

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	echo "otelcol: $bin is up to date"
	exit 0
fi

module=$(cd "$here" && go list -m -f '{{.Path}} {{.Version}}' go.opentelemetry.io/collector/otelcol)
echo "otelcol: building the OpenTelemetry Collector ($module) from the Go module proxy into $bin"
echo "otelcol: this takes ~6 minutes the first time on 2 cores, seconds with a warm build cache"
mkdir -p "$(dirname "$bin")"
# Built beside the target and renamed, so an interrupted build never leaves a broken binary.
(cd "$here" && go build -o "$bin.tmp" .)
mv -f "$bin.tmp" "$bin"
echo "$want" >"$stamp"
echo "otelcol: built $bin"

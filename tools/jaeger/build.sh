#!/bin/sh
# Builds the pinned Jaeger v2 all-in-one binary that the end-to-end tests run
# (internal/jaeger), unless it is already there and built from this go.mod/go.sum.
#
# Location, the same rule as internal/jaeger.DefaultBinary:
#   $PKTSPAN_JAEGER_BIN, else ${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/jaeger
# A stamp next to it (<binary>.stamp) holds the sha256 of go.mod + go.sum it was built from.
# Needs Go and network access to the module proxy (or a warm module cache).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=${PKTSPAN_JAEGER_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/jaeger}
stamp="$bin.stamp"
want=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -d' ' -f1)

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	echo "jaeger: $bin is up to date"
	exit 0
fi

module=$(cd "$here" && go list -m -f '{{.Path}} {{.Version}}' github.com/jaegertracing/jaeger)
echo "jaeger: building Jaeger 2.13 ($module) from the Go module proxy into $bin"
echo "jaeger: this takes ~7 minutes the first time on 2 cores, seconds with a warm build cache"
mkdir -p "$(dirname "$bin")"
# Built beside the target and renamed, so an interrupted build never leaves a broken binary.
(cd "$here" && go build -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
mv -f "$bin.tmp" "$bin"
echo "$want" >"$stamp"
echo "jaeger: built $bin"

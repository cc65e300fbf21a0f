#!/bin/sh
# Builds the pinned Docker Compose v2 that pktspan's container tests run the demo stack
# with (besides the machine's docker-compose 1.29), unless it is already there and built
# from this go.mod/go.sum. It runs standalone, as `docker-compose` 1.29 does.
#
# Location: $PKTSPAN_COMPOSE_V2_BIN, else ${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/docker-compose-v2.
# A stamp next to it (<binary>.stamp) holds the sha256 of go.mod + go.sum it was built from.
# Needs Go and network access to the module proxy (or a warm module cache).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=${PKTSPAN_COMPOSE_V2_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/docker-compose-v2}
stamp="$bin.stamp"
want=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -d' ' -f1)

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	echo "compose-v2: $bin is up to date"
	exit 0
fi

version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/docker/compose/v2)
echo "compose-v2: building Docker Compose $version from the Go module proxy into $bin"
echo "compose-v2: this takes ~3 minutes the first time on 2 cores, seconds with a warm build cache"
mkdir -p "$(dirname "$bin")"
# Built beside the target and renamed, so an interrupted build never leaves a broken binary.
(cd "$here" && go build -ldflags "-X github.com/docker/compose/v2/internal.Version=$version" \
	-o "$bin.tmp" github.com/docker/compose/v2/cmd)
mv -f "$bin.tmp" "$bin"
echo "$want" >"$stamp"
echo "compose-v2: built $bin"

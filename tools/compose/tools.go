//go:build tools

// Package compose pins Docker Compose v2, which pktspan's container tests run the demo
// stack with besides the machine's docker-compose 1.29, so that docker-compose.yaml is
// checked with both. Build it with `make compose-v2`.
package compose

import _ "github.com/docker/compose/v2/cmd"

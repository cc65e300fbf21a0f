//go:build tools

// Package staticcheck pins the staticcheck version `make lint` runs, so every machine
// reports the same findings.
package staticcheck

import _ "honnef.co/go/tools/cmd/staticcheck"

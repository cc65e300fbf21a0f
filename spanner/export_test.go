package spanner

import "time"

// DefaultsForTest exposes the built-in settings to the external test that compares them
// with config.Default().
func DefaultsForTest() (flows, packets, stages int, idle, maxDuration time.Duration, maxPackets int, grace, packetTimeout time.Duration) {
	d := defaultSettings()
	return d.flows, d.packets, d.stages, time.Duration(d.idle), time.Duration(d.maxDuration), d.maxPackets,
		time.Duration(d.grace), time.Duration(d.packetTimeout)
}

// ExportDefaultsForTest exposes the built-in export policy and NAT alias bound.
func ExportDefaultsForTest() (p ExportPolicy, aliases int) {
	d := defaultSettings()
	return d.export, d.aliases
}

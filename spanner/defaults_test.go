package spanner_test

import (
	"testing"

	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
)

// The spanner does not import config, so this keeps the two sets of defaults from drifting.
func TestDefaultsMatchConfigDefault(t *testing.T) {
	c := config.Default()
	flows, packets, stages, idle, maxDuration, maxPackets, grace, packetTimeout := spanner.DefaultsForTest()
	export, aliases := spanner.ExportDefaultsForTest()
	mode := map[spanner.ExportMode]string{spanner.ExportAll: "all", spanner.ExportDrops: "drops"}[export.Mode]
	type pair struct {
		name      string
		got, want any
	}
	for _, p := range []pair{
		{"flows", flows, c.Limits.Flows},
		{"packets", packets, c.Limits.Packets},
		{"stages", stages, c.Limits.Stages},
		{"idle", idle, c.Trace.IdleTimeout},
		{"max duration", maxDuration, c.Trace.MaxDuration},
		{"max packets", maxPackets, c.Trace.MaxPackets},
		{"grace", grace, c.Trace.CloseGrace},
		{"packet timeout", packetTimeout, c.Trace.PacketTimeout},
		{"export mode", mode, c.Export.Mode},
		{"drop context", export.DropContext, c.Export.DropContext},
		{"sample ratio", export.SampleRatio, c.Export.SampleRatio},
		{"max spans per second", export.MaxSpansPerSecond, c.Export.MaxSpansPerSecond},
		{"held packets", export.Held, c.Limits.Held},
		{"nat aliases", aliases, c.Limits.Aliases},
	} {
		if p.got != p.want {
			t.Errorf("%s: spanner default %v, config default %v", p.name, p.got, p.want)
		}
	}
}

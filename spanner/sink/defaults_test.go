package sink

import (
	"testing"

	"github.com/pktspan/pktspan/config"
)

// The sink is also a library and does not import config, so this keeps the two sets of
// defaults from drifting.
func TestOTLPDefaultsMatchConfigDefault(t *testing.T) {
	c := config.Default()
	for _, p := range []struct {
		name      string
		got, want any
	}{
		{"queue size", defaultQueueSize, c.OTLP.QueueSize},
		{"batch size", defaultBatchSize, c.OTLP.BatchSize},
		{"batch delay", defaultBatchDelay, c.OTLP.BatchDelay},
		{"service name", defaultServiceName, c.ServiceName},
	} {
		if p.got != p.want {
			t.Errorf("%s: sink default %v, config default %v", p.name, p.got, p.want)
		}
	}
}

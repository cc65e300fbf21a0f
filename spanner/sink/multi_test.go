package sink

import (
	"context"
	"errors"
	"testing"

	"github.com/pktspan/pktspan/spanner"
)

type fakeSink struct {
	groups int
	stats  spanner.SinkStats
	err    error
	shut   bool
}

func (f *fakeSink) Export([]spanner.Span)          { f.groups++ }
func (f *fakeSink) Shutdown(context.Context) error { f.shut = true; return f.err }
func (f *fakeSink) Stats() spanner.SinkStats       { return f.stats }

func TestMultiFansOutSumsStatsAndJoinsShutdownErrors(t *testing.T) {
	errA, errB := errors.New("a failed"), errors.New("b failed")
	a := &fakeSink{stats: spanner.SinkStats{Exported: 3, Dropped: 1}, err: errA}
	b := &fakeSink{stats: spanner.SinkStats{Exported: 4, Dropped: 2}, err: errB}
	c := &fakeSink{}
	m := Multi(a, nil, b, c)
	m.Export(tcpGroup())
	if a.groups != 1 || b.groups != 1 || c.groups != 1 {
		t.Errorf("groups %d %d %d", a.groups, b.groups, c.groups)
	}
	if st := m.Stats(); st != (spanner.SinkStats{Exported: 7, Dropped: 3}) {
		t.Errorf("Stats = %+v", st)
	}
	err := m.Shutdown(context.Background())
	if !errors.Is(err, errA) || !errors.Is(err, errB) || !c.shut {
		t.Errorf("Shutdown = %v, all shut: %v", err, c.shut)
	}
	if Multi(a) != spanner.Sink(a) {
		t.Error("Multi of one sink should be that sink")
	}
	empty := Multi()
	empty.Export(tcpGroup())
	if err := empty.Shutdown(context.Background()); err != nil || empty.Stats() != (spanner.SinkStats{}) {
		t.Errorf("empty Multi: %v %+v", err, empty.Stats())
	}
}

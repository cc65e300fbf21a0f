package main

import (
	"sync"
	"testing"
)

// benchFixtures are generated once for every benchmark of the package.
var benchFixtures = sync.OnceValue(func() *Fixtures { return GenerateFixtures(200000, 1) })

// BenchmarkFixturesDecode is case 2's decode figure: one op is one kernel record.
func BenchmarkFixturesDecode(b *testing.B) { benchDecode(benchFixtures())(b) }

// BenchmarkFixturesSpanner is case 2's decode + spanner figure: one op is one record.
func BenchmarkFixturesSpanner(b *testing.B) { benchSpanner(benchFixtures())(b) }

func TestFixturesDecode(t *testing.T) {
	if err := checkDecodes(GenerateFixtures(5000, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestCountSpansWalksRequests(t *testing.T) {
	if n, err := countSpans([]byte{0x0a, 0x02, 0x12}); err == nil {
		t.Errorf("a truncated request counted %d spans without error", n)
	}
}

package dockertest

import (
	"strings"
	"testing"
)

func TestAMissingEngineFailsUnderCIAndIsSkippedLoudlyElsewhere(t *testing.T) {
	tests := []struct {
		ci       string
		skip     bool
		mentions string
	}{
		{"true", false, "must run"},
		{"", true, "SKIPPING"},
		{"false", true, "SKIPPING"},
		{"1", true, "SKIPPING"},
	}
	for _, tt := range tests {
		skip, reason := decide("no engine", tt.ci)
		if skip != tt.skip || !strings.Contains(reason, tt.mentions) || !strings.Contains(reason, "no engine") {
			t.Errorf("CI=%q: skip=%v %q, want skip=%v mentioning %q and the cause", tt.ci, skip, reason, tt.skip, tt.mentions)
		}
	}
}

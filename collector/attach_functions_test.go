//go:build amd64

package collector

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// cilium/ebpf wraps a load's EPERM with a hint at the locked-memory limit; pktspan lifted
// that limit and holds the privileges, so its words replace the hint.
func TestWhyUnavailableNamesAnEPERMRefusalWithoutTheMemlockHint(t *testing.T) {
	eperm := fmt.Errorf("loading: %w", fmt.Errorf("load program: %w (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", unix.EPERM))
	tests := []struct {
		name    string
		backend Backend
		err     error
		want    string
	}{
		{"fentry refused", BackendFentry, eperm,
			"the kernel refuses fentry programs: it answers EPERM although the tracepoint programs load with the same privileges and memory limit, so a policy of this kernel forbids them"},
		{"kprobe load refused", BackendKprobe, fmt.Errorf("%w: %w", errKprobeLoad, eperm),
			"the kernel refuses kprobe programs: it answers EPERM although the tracepoint programs load with the same privileges and memory limit, so a policy of this kernel forbids them"},
		{"other error keeps the kernel's words", BackendFentry, fmt.Errorf("attaching: %w", errors.New("not supported")),
			"this kernel cannot attach fentry programs (not supported)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := whyUnavailable(tc.backend, tc.err, "")
			if got != tc.want || strings.Contains(got, "MEMLOCK") {
				t.Errorf("whyUnavailable = %q, want %q", got, tc.want)
			}
		})
	}
	// Only a tracefs refusing its function list adds to the cause; a missing one does not.
	if got := whyUnavailable(BackendFentry, eperm, t.TempDir()); strings.Contains(got, "ftrace") {
		t.Errorf("without a function list: %q", got)
	}
}

package kernelmatrix

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Startup extracts the start-up summary from pktspan's log: the block of lines, from
// "kernel …" to "filter: …", that pktspan writes under --log-format text.
func Startup(log string) string {
	lines := strings.Split(log, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "kernel ") || !strings.Contains(line, ", BTF from ") {
			continue
		}
		for j := i; j < len(lines); j++ {
			if strings.HasPrefix(lines[j], "filter: ") {
				return strings.Join(lines[i:j+1], "\n")
			}
		}
		return strings.Join(lines[i:], "\n")
	}
	return log
}

// AttachedVia tells whether the summary lists fn as attached with via.
func AttachedVia(log, fn, via string) bool {
	for _, line := range strings.Split(Startup(log), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == fn && f[1] == via {
			return true
		}
	}
	return false
}

// Timing is what pktspan's log says of its probes' attach and detach.
type Timing struct {
	Probes  int           // probes attached
	Skipped int           // probes the summary lists as skipped
	Attach  time.Duration // from the first load to the last attach
	Detach  time.Duration // from the final stats line
}

var (
	attachedRE = regexp.MustCompile(`attached (\d+) probes in (\S+):`)
	detachRE   = regexp.MustCompile(`msg="final stats" .*\bdetach=(\S+)`)
)

// ReadTiming reads the start-up summary and the final stats line of pktspan's log.
func ReadTiming(log string) (Timing, error) {
	var t Timing
	m := attachedRE.FindStringSubmatch(log)
	if m == nil {
		return t, fmt.Errorf("no start-up summary with the attach time in the log")
	}
	var err error
	if t.Probes, err = strconv.Atoi(m[1]); err != nil {
		return t, fmt.Errorf("probe count: %w", err)
	}
	if t.Attach, err = time.ParseDuration(m[2]); err != nil {
		return t, fmt.Errorf("attach time: %w", err)
	}
	t.Skipped = strings.Count(Startup(log), " skipped: ")
	d := detachRE.FindStringSubmatch(log)
	if d == nil {
		return t, fmt.Errorf("no final stats with the detach time in the log")
	}
	if t.Detach, err = time.ParseDuration(d[1]); err != nil {
		return t, fmt.Errorf("detach time: %w", err)
	}
	return t, nil
}

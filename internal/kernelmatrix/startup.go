package kernelmatrix

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Startup extracts the "probes attached" summary from pktspan's log, one line per line.
func Startup(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if i := strings.Index(line, `msg="probes attached\n`); i >= 0 {
			return strings.ReplaceAll(line[i:], `\n`, "\n")
		}
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

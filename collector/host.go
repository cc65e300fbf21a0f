package collector

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	defaultKallsyms  = "/proc/kallsyms"
	defaultModules   = "/proc/modules"
	tracefsPath      = "/sys/kernel/tracing"
	debugTracefsPath = "/sys/kernel/debug/tracing"
)

// checkPrivileges fails with the fix when the process cannot load eBPF programs. Root
// is not enough by itself: a container's root may lack the capabilities, so the
// effective set is what is checked, and what it lacks is named.
func checkPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		if os.Geteuid() == 0 {
			return nil
		}
		return errors.New(needRoot)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	missing := missingCaps(has)
	switch {
	case missing == "":
		return nil
	case os.Geteuid() != 0:
		return errors.New(needRoot)
	default:
		return fmt.Errorf("pktspan runs as root without %s, which loading eBPF probes needs (a container's root has only the capabilities it was given: add them, e.g. docker run --cap-add BPF --cap-add PERFMON, or run privileged)", missing)
	}
}

const needRoot = "pktspan needs root, or CAP_BPF and CAP_PERFMON, to load eBPF probes: run it with sudo"

// missingCaps names the capabilities eBPF tracing needs that has reports absent, or
// "": CAP_SYS_ADMIN alone is enough, else both CAP_BPF and CAP_PERFMON.
func missingCaps(has func(uint) bool) string {
	if has(unix.CAP_SYS_ADMIN) {
		return ""
	}
	var out []string
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_PERFMON, "CAP_PERFMON"}} {
		if !has(c.bit) {
			out = append(out, c.name)
		}
	}
	return strings.Join(out, " and ")
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	return unix.ByteSliceToString(uts.Release[:])
}

// findTracefs returns where tracefs is mounted, or "".
func findTracefs() string {
	for _, p := range []string{tracefsPath, debugTracefsPath} {
		if _, err := os.Stat(p + "/events"); err == nil {
			return p
		}
	}
	return ""
}

package collector

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

const (
	defaultKallsyms  = "/proc/kallsyms"
	defaultModules   = "/proc/modules"
	tracefsPath      = "/sys/kernel/tracing"
	debugTracefsPath = "/sys/kernel/debug/tracing"
)

// checkPrivileges fails with the fix when the process cannot load eBPF programs.
func checkPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
		if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON)) {
			return nil
		}
	}
	return errors.New("pktspan needs root, or CAP_BPF and CAP_PERFMON, to load eBPF probes: run it with sudo")
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

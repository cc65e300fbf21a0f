package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// buildPktspan builds the command into dir, as a user's `make build` does.
func buildPktspan(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "pktspan")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building pktspan: %v\n%s", err, out)
	}
	return bin
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("running pktspan: %v", err)
	}
	return ee.ExitCode()
}

func TestCommandLineErrorsExitWithTheirCodeAndOneClearLine(t *testing.T) {
	bin := buildPktspan(t, t.TempDir())
	cases := []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"bad flag value", []string{"--otlp-compression", "zip"}, nil, exitConfig, `config: otlp.compression: "zip" is not allowed (use none or gzip)`},
		{"port out of range", []string{"--filter-port", "70000"}, nil, exitConfig, "config: filter.port: 70000 is not a port"},
		{"unknown flag", []string{"--no-such-flag"}, nil, exitConfig, "unknown flag: --no-such-flag"},
		{"missing config file", []string{"--config", "/no/such/pktspan.yaml"}, nil, exitConfig, "/no/such/pktspan.yaml"},
		{"bad environment value", nil, []string{"PKTSPAN_OUTPUT=xml"}, exitConfig, `config: output: "xml"`},
		{"missing BTF file", []string{"--btf", "/no/such/vmlinux"}, nil, exitConfig, "config: btf:"},
		{"help", []string{"--help"}, nil, exitOK, "--otlp-endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			if got := exitCode(t, err); got != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", got, tc.code, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

// Without root (or CAP_BPF and CAP_PERFMON) pktspan says so and how to fix it. As root
// the test drops to nobody, so the check runs for real either way.
func TestWithoutPrivilegesPktspanSaysToRunAsRoot(t *testing.T) {
	// t.TempDir's parent is private to root: nobody needs a directory it may enter.
	dir, err := os.MkdirTemp("", "pktspan-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildPktspan(t, dir), "--output", "none")
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if got := exitCode(t, err); got != exitError {
		t.Errorf("exit code %d, want %d; output:\n%s", got, exitError, out)
	}
	want := "pktspan needs root, or CAP_BPF and CAP_PERFMON, to load eBPF probes: run it with sudo"
	if !strings.Contains(string(out), want) {
		t.Errorf("output does not say %q:\n%s", want, out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 0 {
		t.Errorf("want one line, got %d:\n%s", n+1, out)
	}
}

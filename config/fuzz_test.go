package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// FuzzLoad feeds Load flags, a YAML file and environment variables together: whatever
// they hold, Load must not panic, every problem must be a *Error (one line naming its
// key), and a Config it accepts must pass Validate.
func FuzzLoad(f *testing.F) {
	seeds := []struct{ args, yaml, env string }{
		{"--output\x00json", "filter:\n  port: 80\n", "PKTSPAN_OTLP__ENDPOINT=localhost:4317"},
		{"--otlp-queue-size\x009223372036854775807", "", ""},
		{"--filter-addr\x00", "otlp:\n  headers:\n    grpc-x: y\n", "OTEL_EXPORTER_OTLP_ENDPOINT=::::garbage"},
		{"--stats-interval\x001ns", "trace: {idle_timeout: 1ns}\n", "PKTSPAN_FILTER__PORT=80,,81"},
		{"", "otlp: localhost:4317\n", "PKTSPAN_OTLP=x\nOTEL_RESOURCE_ATTRIBUTES=a"},
		{"--ring-size\x004294967296", "probes:\n  functions: [1, {a: b}]\n", "PKTSPAN_LIMITS__FLOWS=-1"},
		{"--otlp-header\x00a=b", "filter: {netns: [/etc/passwd]}\n", "OTEL_EXPORTER_OTLP_TIMEOUT=x\nOTEL_EXPORTER_OTLP_ENDPOINT=http://h:1"},
	}
	for _, s := range seeds {
		f.Add(s.args, []byte(s.yaml), s.env)
	}
	f.Fuzz(func(t *testing.T, rawArgs string, yamlDoc []byte, rawEnv string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "pktspan.yaml")
		if err := os.WriteFile(path, yamlDoc, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"--config", path}
		if rawArgs != "" {
			args = append(args, strings.Split(rawArgs, "\x00")...)
		}
		var env []string
		if rawEnv != "" {
			env = strings.Split(rawEnv, "\n")
		}
		fs := NewFlagSet()
		fs.SetOutput(io.Discard)
		cfg, err := Load(fs, args, env)
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Load accepted a Config Validate refuses: %v", verr)
			}
			return
		}
		for _, e := range leafErrors(err) {
			var ce *Error
			if !errors.As(e, &ce) {
				t.Fatalf("Load error %T %q is not a *config.Error", e, e)
			}
			if strings.Contains(ce.Error(), "\n") {
				t.Fatalf("Load error spans lines: %q", ce.Error())
			}
		}
	})
}

// leafErrors flattens errors.Join trees.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// Command vm-run boots one cached Debian kernel under qemu with files copied in and runs a
// shell script there, for trying pktspan on a kernel with fentry and kprobes by hand.
//
//	go run ./internal/cmd/vm-run -series 6.12 -file /bin/pktspan=bin/pktspan -out /tmp/vm 'pktspan --help'
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/pktspan/pktspan/internal/vm"
)

// files collects -file GUEST=HOST flags.
type files map[string]string

func (f files) String() string { return fmt.Sprint(map[string]string(f)) }

func (f files) Set(s string) error {
	guest, host, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(guest, "/") {
		return fmt.Errorf("want GUEST=HOST with an absolute guest path, got %q", s)
	}
	f[guest] = host
	return nil
}

func main() {
	fs := files{}
	series := flag.String("series", "6.12", "Debian kernel series to boot: 6.1 or 6.12")
	out := flag.String("out", "", "host directory that receives the guest's $OUT")
	modules := flag.String("modules", "", "comma-separated modules to load in addition to the default ones")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound on the whole run, boot included")
	flag.Var(fs, "file", "`GUEST=HOST` file or directory to copy in (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: run [flags] SCRIPT\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	k, err := vm.Ensure(ctx, *series)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
	mods := vm.DefaultModules
	if *modules != "" {
		mods = append(append([]string{}, mods...), strings.Split(*modules, ",")...)
	}
	res, err := vm.Run(ctx, k, vm.RunOptions{Script: flag.Arg(0), Files: fs, Modules: mods, OutDir: *out, Timeout: *timeout})
	if res != nil {
		fmt.Print(res.Output)
		fmt.Fprintf(os.Stderr, "run: %s booted in %s, done in %s, exit %d\n", k.Release,
			res.BootTime.Round(time.Millisecond), res.Duration.Round(time.Millisecond), res.ExitCode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
	os.Exit(res.ExitCode)
}

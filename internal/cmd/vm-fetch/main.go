// Command vm-fetch downloads and caches the Debian kernels the VM tests boot (`make
// vmkernels`) and prints what each one offers pktspan.
//
//	go run ./internal/cmd/vm-fetch [series ...]   # default: 6.1 6.12
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/pktspan/pktspan/internal/vm"
)

// features are the build options pktspan's backends depend on. The BPF ring buffer has
// no option of its own: every kernel with BPF_SYSCALL since 5.8 has it.
var features = []string{
	"CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_DEBUG_INFO_BTF", "CONFIG_DEBUG_INFO_BTF_MODULES",
	"CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS", "CONFIG_FPROBE", "CONFIG_FUNCTION_TRACER",
	"CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "CONFIG_BPF_EVENTS", "CONFIG_NF_TABLES", "CONFIG_VETH",
}

func main() {
	flag.Parse()
	series := flag.Args()
	if len(series) == 0 {
		series = []string{"6.1", "6.12"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for _, s := range series {
		k, err := vm.Ensure(ctx, s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmkernels:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %s %s (%s) in %s\n", s, k.Package, k.Version, k.Release, k.Dir)
		for _, f := range features {
			v := k.Config[f]
			if v == "" {
				v = "not set"
			}
			fmt.Printf("  %-40s %s\n", f, v)
		}
	}
}

// Command compose-images makes the local stand-ins for the images the demo stack pulls
// (internal/compose): what `make compose-images` runs, so that `docker-compose -f
// docker-compose.yaml -f examples/compose/docker-compose.test.yaml` can be tried by hand
// on a machine with no image registry. It prints the variables the override file reads,
// the images' names and networks' subnets no Docker network uses now.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pktspan/pktspan/internal/compose"
)

func main() {
	jaeger := flag.String("jaeger", os.Getenv("PKTSPANTEST_JAEGER_BIN"), "the Jaeger binary (make jaeger)")
	otelcol := flag.String("otelcol", os.Getenv("PKTSPANTEST_OTELCOL_BIN"), "the collector binary (make otelcol)")
	flag.Parse()
	if *jaeger == "" || *otelcol == "" {
		fmt.Fprintln(os.Stderr, "compose-images: --jaeger and --otelcol are required (or PKTSPANTEST_JAEGER_BIN and PKTSPANTEST_OTELCOL_BIN)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	im := compose.Images{Jaeger: *jaeger, Otelcol: *otelcol, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if err := im.Ensure(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "compose-images:", err)
		os.Exit(1)
	}
	subnets, err := compose.SubnetEnv(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose-images:", err)
		os.Exit(1)
	}
	for _, kv := range append(im.Env(), subnets...) {
		fmt.Println("export " + kv)
	}
}

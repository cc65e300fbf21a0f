package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Receiver is an OTLP/gRPC trace service that decodes every request and counts the
// spans in it. Unmarshalling into the OTLP messages costs a receiver several times the
// CPU pktspan spends sending, which on a small machine would make it the bottleneck,
// so by default it walks each request's protobuf encoding instead, down to every field
// of every span, checking it is well formed; tests that keep the requests unmarshal.
type Receiver struct {
	collectortracepb.UnimplementedTraceServiceServer

	spans atomic.Uint64

	// keep, when set, retains every request for tests that compare what arrived.
	keep bool
	mu   sync.Mutex
	reqs []*collectortracepb.ExportTraceServiceRequest
}

// Export counts the spans of one request.
func (r *Receiver) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	var n uint64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += uint64(len(ss.Spans))
		}
	}
	r.spans.Add(n)
	if r.keep {
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.mu.Unlock()
	}
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

// Serve listens on addr (host:port; port 0 for a free one) and serves until the
// returned stop is called.
func (r *Receiver) Serve(addr string) (bound string, stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("receiver: %w", err)
	}
	var srv *grpc.Server
	if r.keep {
		srv = grpc.NewServer(grpc.MaxRecvMsgSize(256 << 20))
		collectortracepb.RegisterTraceServiceServer(srv, r)
	} else {
		srv = grpc.NewServer(grpc.MaxRecvMsgSize(256<<20), grpc.ForceServerCodecV2(walkCodec{}))
		srv.RegisterService(&walkService, r)
	}
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), srv.Stop, nil
}

// runReceiver is the receiver process: it listens on addr, prints the address, then
// answers each "stats" line on stdin with its span count and its own CPU time, until
// stdin closes.
func runReceiver(addr string) error {
	var r Receiver
	addr, stop, err := r.Serve(addr)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("listening %s\n", addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "stats" {
			fmt.Printf("spans %d cpu_ns %d\n", r.spans.Load(), cpuTime().Nanoseconds())
		}
	}
	return in.Err()
}

// ReceiverProc is the receiver running as a child process, so its CPU is its own and
// never counted as pktspan's.
type ReceiverProc struct {
	Addr string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
}

// ReceiverStats is what the receiver has counted since it started.
type ReceiverStats struct {
	Spans uint64
	CPU   time.Duration
}

// StartReceiver runs this binary again in receiver mode, on a free loopback port.
func StartReceiver() (*ReceiverProc, error) { return StartReceiverOn(loopbackAny) }

// loopbackAny asks for a free loopback port.
const loopbackAny = "127.0.0.1:0"

// StartReceiverOn runs the receiver on addr: on the address of one stopped before, it
// is that receiver come back.
func StartReceiverOn(addr string) (*ReceiverProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting the receiver: %w", err)
	}
	cmd := exec.Command(self, "-receiver", "-receiver-addr", addr)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the receiver: %w", err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the receiver: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the receiver: %w", err)
	}
	p := &ReceiverProc{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := p.out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		_ = p.Stop()
		return nil, fmt.Errorf("receiver did not start: %q: %w", line, errors.Join(err, errors.New("no address")))
	}
	p.Addr = addr
	return p, nil
}

// Stats asks the receiver for its counters.
func (p *ReceiverProc) Stats() (ReceiverStats, error) {
	if _, err := io.WriteString(p.in, "stats\n"); err != nil {
		return ReceiverStats{}, fmt.Errorf("asking the receiver: %w", err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return ReceiverStats{}, fmt.Errorf("reading the receiver: %w", err)
	}
	var s ReceiverStats
	var ns int64
	if _, err := fmt.Sscanf(line, "spans %d cpu_ns %d", &s.Spans, &ns); err != nil {
		return ReceiverStats{}, fmt.Errorf("receiver said %q: %w", line, err)
	}
	s.CPU = time.Duration(ns)
	return s, nil
}

// Stop closes the receiver's stdin, which ends it.
func (p *ReceiverProc) Stop() error {
	_ = p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	return nil
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// walkedRequest is an Export request as the walking codec saw it.
type walkedRequest struct{ spans int }

// walkService is the OTLP trace service with its request decoded by walkCodec.
var walkService = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req walkedRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			srv.(*Receiver).spans.Add(uint64(req.spans))
			return &collectortracepb.ExportTraceServiceResponse{}, nil
		},
	}},
}

// walkCodec decodes requests into walkedRequest and leaves the rest to gRPC's proto codec.
type walkCodec struct{}

func (walkCodec) Name() string { return "proto" }

func (walkCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (walkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*walkedRequest)
	if !ok {
		return encoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	n, err := countSpans(buf.ReadOnlyData())
	req.spans = n
	return err
}

// Field numbers on the way from an ExportTraceServiceRequest down to its spans.
const (
	requestResourceSpans = 1
	resourceScopeSpans   = 2
	scopeSpans           = 2
)

// countSpans walks an ExportTraceServiceRequest: every field of every message on the
// way to the spans, and every field of every span, must parse.
func countSpans(b []byte) (int, error) {
	n := 0
	err := walk(b, requestResourceSpans, func(rs []byte) error {
		return walk(rs, resourceScopeSpans, func(ss []byte) error {
			return walk(ss, scopeSpans, func(span []byte) error {
				n++
				return walk(span, 0, nil)
			})
		})
	})
	return n, err
}

// walk parses every field of a message and calls fn with the value of each
// length-delimited field numbered field.
func walk(b []byte, field protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == field && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := fn(v); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

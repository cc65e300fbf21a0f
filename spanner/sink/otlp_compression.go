package sink

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"google.golang.org/grpc/encoding"
	// gRPC's own gzip registers first, so that ours, registered after it, is the one used.
	_ "google.golang.org/grpc/encoding/gzip"
)

// The encodings otlp.compression names, done with klauspost/compress. When every
// packet is exported, compression is the largest part of pktspan's CPU (make bench,
// case 3c).
//
// gzip (the default, which every OTLP receiver takes) at its fastest level: gRPC's own
// compressor, at gzip's default level, took two thirds of pktspan's CPU. On OTLP
// requests this one is about twice as fast as the standard library's fastest level for
// the same size, and five times as fast as its default level for requests about a
// seventh larger. Collectors see the same gzip.
//
// snappy, the snappy framing format, as the OpenTelemetry Collector's gRPC receivers
// (and Jaeger's and Tempo's, built on them) take it, written by s2 in its
// snappy-compatible mode: on a request of pktspan's spans about 3.7 times as fast as
// gzip at its fastest level, for requests about a quarter larger.
func init() {
	encoding.RegisterCompressor(&pooledCompressor{
		name: "gzip",
		newWriter: func(w io.Writer) (resetWriter, error) {
			zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
			if err != nil {
				return nil, fmt.Errorf("gzip writer: %w", err)
			}
			return zw, nil
		},
		newReader: func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
	})
	encoding.RegisterCompressor(&pooledCompressor{
		name: "snappy",
		// One goroutine: a request is compressed on its sender's, and the others are busy.
		newWriter: func(w io.Writer) (resetWriter, error) {
			return s2.NewWriter(w, s2.WriterSnappyCompat(), s2.WriterConcurrency(1)), nil
		},
		newReader: func(r io.Reader) (io.Reader, error) { return s2.NewReader(r), nil },
	})
}

// resetWriter is a compressing writer that can start over on another destination.
type resetWriter interface {
	io.WriteCloser
	Reset(w io.Writer)
}

// pooledCompressor is a gRPC encoding whose writers are kept between requests: each
// holds tables and buffers of hundreds of kilobytes. The pool holds as many as requests
// are compressed at once, which the sink's exporters bound.
type pooledCompressor struct {
	name      string
	newWriter func(io.Writer) (resetWriter, error)
	newReader func(io.Reader) (io.Reader, error)
	writers   sync.Pool
}

// pooledWriter goes back to its pool when closed.
type pooledWriter struct {
	resetWriter
	pool *sync.Pool
}

func (c *pooledCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	if z, ok := c.writers.Get().(*pooledWriter); ok {
		z.Reset(w)
		return z, nil
	}
	zw, err := c.newWriter(w)
	if err != nil {
		return nil, err
	}
	return &pooledWriter{resetWriter: zw, pool: &c.writers}, nil
}

func (z *pooledWriter) Close() error {
	defer z.pool.Put(z)
	return z.resetWriter.Close()
}

// Decompress reads a collector's compressed response: one small message per request.
func (c *pooledCompressor) Decompress(r io.Reader) (io.Reader, error) { return c.newReader(r) }

func (c *pooledCompressor) Name() string { return c.name }

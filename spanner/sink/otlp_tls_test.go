package sink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/pktspan/pktspan/config"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate,
// each written as PEM files in a temporary directory.
type testPKI struct {
	pool               *x509.CertPool
	server             tls.Certificate
	caFile             string
	clientCert, client string // the client's certificate and key files
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pktspan test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "pktspan test"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	p := &testPKI{pool: x509.NewCertPool(), caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.pool.AddCert(ca)
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	cliKeyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert = write("client.pem", "CERTIFICATE", cliDER)
	p.client = write("client-key.pem", "EC PRIVATE KEY", cliKeyDER)
	return p
}

// startTLSCollector serves c over TLS with the PKI's server certificate, asking for a
// client certificate signed by its CA when mutual is set.
func startTLSCollector(t *testing.T, c *collector, p *testPKI, mutual bool, opts ...func(*tls.Config)) string {
	t.Helper()
	c.calls = make(chan struct{}, 1)
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	for _, o := range opts {
		o(cfg)
	}
	if mutual {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	collectortracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// tlsCase is a receiver asking for a client certificate or not, and pktspan's TLS keys.
type tlsCase struct {
	name   string
	mutual bool
	keys   config.OTLP
}

func TestOTLPExportsOverTLSWithACAFileAndWithClientCertificates(t *testing.T) {
	clearOTELEnv(t)
	pki := newTestPKI(t)
	for _, tc := range []tlsCase{
		{"CA file", false, config.OTLP{CAFile: pki.caFile}},
		{"client certificate", true, config.OTLP{CAFile: pki.caFile, ClientCert: pki.clientCert, ClientKey: pki.client}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &collector{}
			addr := startTLSCollector(t, c, pki, tc.mutual)
			tlsCfg, err := tc.keys.TLS()
			if err != nil {
				t.Fatal(err)
			}
			o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithTLS(tlsCfg), WithBatchDelay(20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			o.Export(tcpGroup())
			shutdown(t, o, 5*time.Second)
			if got := len(c.spans()); got != len(tcpGroup()) {
				t.Errorf("collector got %d spans over TLS, want %d", got, len(tcpGroup()))
			}
		})
	}
}

// A certificate the client cannot check is answered with how to trust it, never with
// the advice to turn TLS off; a collector asking for a client certificate is named too.
func TestOTLPCertificateErrorsAreNeverAnsweredWithTurningTLSOff(t *testing.T) {
	clearOTELEnv(t)
	pki := newTestPKI(t)
	for _, tc := range []tlsCase{
		{"unknown CA", false, config.OTLP{}},
		{"client certificate missing", true, config.OTLP{CAFile: pki.caFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Under TLS 1.3 the client's handshake ends before the server checks its
			// certificate, so the refusal may reach it as a broken pipe, which names no
			// certificate; TLS 1.2 refuses within the handshake, every time.
			addr := startTLSCollector(t, &collector{}, pki, tc.mutual, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
			tlsCfg, err := tc.keys.TLS()
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithTLS(tlsCfg), WithBatchDelay(20*time.Millisecond),
				WithTimeout(time.Second), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			o.Export(tcpGroup())
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), "otlp export to") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_ = o.Shutdown(ctx)
			out := logs.String()
			if !strings.Contains(out, "otlp export to") {
				t.Fatalf("no failure logged:\n%s", out)
			}
			if strings.Contains(out, "insecure") {
				t.Errorf("a certificate error suggests turning TLS off:\n%s", out)
			}
			if !strings.Contains(out, "otlp.ca_file") {
				t.Errorf("the hint does not say how to trust the collector:\n%s", out)
			}
		})
	}
}

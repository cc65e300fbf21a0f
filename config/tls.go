package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// TLS reads otlp.ca_file, otlp.client_cert and otlp.client_key into a client TLS
// configuration, or returns nil when none is set (gRPC's default TLS, or the standard
// OTEL_EXPORTER_OTLP_CERTIFICATE variables, apply then). Problems come back as *Error.
func (o OTLP) TLS() (*tls.Config, error) {
	if o.CAFile == "" && o.ClientCert == "" && o.ClientKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pool, err := readCAFile(o.CAFile)
		if err != nil {
			return nil, &Error{Key: "otlp.ca_file", Value: o.CAFile, Reason: err.Error()}
		}
		cfg.RootCAs = pool
	}
	cert, err := readKeyPair("otlp.client_cert", o.ClientCert, "otlp.client_key", o.ClientKey)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// readCAFile reads a PEM bundle holding at least one certificate.
func readCAFile(path string) (*x509.CertPool, error) {
	pem, err := readCapped(path, MaxPEMBytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

// readKeyPair reads a client certificate and its key, named by the keys (or variables)
// certKey and keyKey; both empty is no client certificate.
func readKeyPair(certKey, certPath, keyKey, keyPath string) (*tls.Certificate, error) {
	switch {
	case certPath == "" && keyPath == "":
		return nil, nil
	case keyPath == "":
		return nil, &Error{Key: certKey, Value: certPath, Reason: "needs its key in " + keyKey}
	case certPath == "":
		return nil, &Error{Key: keyKey, Value: keyPath, Reason: "needs its certificate in " + certKey}
	}
	certPEM, err := readCapped(certPath, MaxPEMBytes)
	if err != nil {
		return nil, &Error{Key: certKey, Value: certPath, Reason: err.Error()}
	}
	keyPEM, err := readCapped(keyPath, MaxPEMBytes)
	if err != nil {
		return nil, &Error{Key: keyKey, Value: keyPath, Reason: err.Error()}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &Error{Key: certKey, Value: certPath, Reason: "and " + keyKey + " are not a PEM certificate and its key: " + err.Error()}
	}
	return &cert, nil
}

// tls checks the TLS files and that they are not given beside otlp.insecure.
func (v *validator) tls(o OTLP) {
	if _, err := o.TLS(); err != nil {
		v.errs = append(v.errs, err)
		return
	}
	if o.Insecure && (o.CAFile != "" || o.ClientCert != "") {
		v.add("otlp.insecure", true, "turns TLS off, but otlp.ca_file or otlp.client_cert is set (leave otlp.insecure out to use them)")
	}
}

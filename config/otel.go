package config

import (
	"net/url"
	"strconv"
	"strings"
)

// The standard OpenTelemetry variables the OTLP exporter reads, generic first: pktspan
// checks them itself, since the SDK skips a bad value with a line in its own format and
// goes on with its default (an endpoint it cannot parse becomes localhost:4317).
const (
	otelPrefix = "OTEL_EXPORTER_OTLP_"
	otelTraces = "OTEL_EXPORTER_OTLP_TRACES_"
)

// validateOTEL checks the OTEL_* variables set in environ that reach the export.
func validateOTEL(environ []string) []error {
	var v validator
	for _, prefix := range []string{otelPrefix, otelTraces} {
		get := func(name string) (string, bool) { return lookupEnvOK(environ, prefix+name) }
		if s, ok := get("ENDPOINT"); ok {
			if reason := otelEndpointProblem(s); reason != "" {
				v.add(prefix+"ENDPOINT", s, reason)
			}
		}
		if s, ok := get("INSECURE"); ok {
			if _, err := strconv.ParseBool(s); err != nil {
				v.add(prefix+"INSECURE", s, "is not true or false")
			}
		}
		if s, ok := get("PROTOCOL"); ok && s != "grpc" {
			v.add(prefix+"PROTOCOL", s, "is not allowed (pktspan exports over OTLP/gRPC only: use grpc)")
		}
		if s, ok := get("COMPRESSION"); ok && s != "gzip" && s != "none" {
			v.add(prefix+"COMPRESSION", s, "is not allowed (use none or gzip)")
		}
		if s, ok := get("TIMEOUT"); ok {
			ms, err := strconv.ParseInt(s, 10, 64)
			lo, hi := MinOTLPTimeout.Milliseconds(), MaxOTLPTimeout.Milliseconds()
			if err != nil || ms < lo || ms > hi {
				v.add(prefix+"TIMEOUT", s, "must be milliseconds from "+strconv.FormatInt(lo, 10)+" to "+strconv.FormatInt(hi, 10))
			}
		}
		if s, ok := get("HEADERS"); ok {
			if name, value, reason := otelHeadersProblem(s); reason != "" {
				v.add(prefix+"HEADERS", name+"="+value, reason)
			}
		}
		if s, ok := get("CERTIFICATE"); ok {
			if _, err := readCAFile(s); err != nil {
				v.add(prefix+"CERTIFICATE", s, err.Error())
			}
		}
		cert, _ := get("CLIENT_CERTIFICATE")
		key, _ := get("CLIENT_KEY")
		if _, err := readKeyPair(prefix+"CLIENT_CERTIFICATE", cert, prefix+"CLIENT_KEY", key); err != nil {
			v.errs = append(v.errs, err)
		}
	}
	if s, ok := lookupEnvOK(environ, "OTEL_SERVICE_NAME"); ok && strings.TrimSpace(s) == "" {
		v.add("OTEL_SERVICE_NAME", s, "must not be empty (unset it to use service_name)")
	}
	if s, ok := lookupEnvOK(environ, "OTEL_RESOURCE_ATTRIBUTES"); ok {
		if item, reason := otelResourceProblem(s); reason != "" {
			v.add("OTEL_RESOURCE_ATTRIBUTES", item, reason)
		}
	}
	return v.errs
}

// otelEndpointProblem checks an endpoint URL as the specification has it: http:// for
// plain text or https://, a host and an optional port.
func otelEndpointProblem(s string) string {
	const want = "is not an endpoint URL (e.g. http://localhost:4317 for plain text, https://collector:4317)"
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
		return want
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return want
		}
	}
	return ""
}

// otelHeadersProblem checks a W3C Baggage-style list of percent-encoded name=value
// pairs, each a header gRPC would send; it returns the first bad pair and why.
func otelHeadersProblem(s string) (name, value, reason string) {
	for item := range strings.SplitSeq(s, ",") {
		n, val, ok := strings.Cut(item, "=")
		n = strings.TrimSpace(n)
		if !ok || n == "" {
			return item, "", "is not NAME=VALUE"
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return n, val, "has a value that is not percent-encoded correctly"
		}
		if r := headerProblem(n, dec); r != "" {
			return n, val, r
		}
	}
	return "", "", ""
}

// otelResourceProblem checks a list of percent-encoded key=value resource attributes.
func otelResourceProblem(s string) (item, reason string) {
	for it := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(it) == "" {
			continue
		}
		k, val, ok := strings.Cut(it, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return it, "is not KEY=VALUE (resource attributes are a comma list of key=value)"
		}
		if _, err := url.PathUnescape(strings.TrimSpace(val)); err != nil {
			return it, "has a value that is not percent-encoded correctly"
		}
	}
	return "", ""
}

// lookupEnvOK returns the last value of name in environ and whether it is set.
func lookupEnvOK(environ []string, name string) (string, bool) {
	var (
		val string
		set bool
	)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			val, set = v, true
		}
	}
	return val, set
}

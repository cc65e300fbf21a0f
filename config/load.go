package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

const (
	envPrefix = "PKTSPAN_"
	// envConfig names the config file like --config does; it is not a key.
	envConfig = envPrefix + "CONFIG"
)

// Load parses args (without the program name) into fs, a set from NewFlagSet, and builds
// the Config from the layers defaults < YAML file (--config or PKTSPAN_CONFIG) <
// PKTSPAN_* variables in environ < flags given in args, then validates it. Each layer
// overrides only the keys it sets. Flags the caller added to fs itself are parsed but
// ignored here.
//
// Problems come back as *Error values joined with errors.Join. After printing the help
// for -h or --help, Load returns pflag.ErrHelp unchanged.
func Load(fs *pflag.FlagSet, args []string, environ []string) (Config, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, &Error{Reason: err.Error() + " (see --help)"}
	}
	if fs.NArg() > 0 {
		return Config{}, &Error{Value: fs.Arg(0), Reason: "is not a flag (pktspan takes flags only; see --help)"}
	}

	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaultValues(), "."), nil); err != nil {
		return Config{}, fmt.Errorf("config: load defaults: %w", err)
	}

	path := lookupEnv(environ, envConfig)
	if f := fs.Lookup(configFlag); f != nil && f.Changed {
		path = f.Value.String()
	}
	if path != "" {
		fk, err := loadFile(path)
		if err != nil {
			return Config{}, err
		}
		if err := k.Merge(fk); err != nil {
			return Config{}, &Error{Key: path, Reason: err.Error()}
		}
	}

	var envErrs []error
	ep := env.Provider(".", env.Opt{
		Prefix:        envPrefix,
		EnvironFunc:   func() []string { return environ },
		TransformFunc: envTransform(&envErrs),
	})
	if err := k.Load(ep, nil); err != nil {
		return Config{}, fmt.Errorf("config: read environment: %w", err)
	}
	if len(envErrs) > 0 {
		return Config{}, errors.Join(envErrs...)
	}

	// A nil koanf makes posflag skip every flag the user did not set, so flag defaults
	// never hide values from the file or the environment.
	fp := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		key := flagKeys[f.Name]
		if key == "" {
			return "", nil
		}
		v := posflag.FlagVal(fs, f)
		// As map[string]any the headers merge with those from lower layers.
		if m, ok := v.(map[string]string); ok {
			mm := make(map[string]any, len(m))
			for hk, hv := range m {
				mm[hk] = hv
			}
			v = mm
		}
		return key, v
	})
	if err := k.Load(fp, nil); err != nil {
		return Config{}, fmt.Errorf("config: read flags: %w", err)
	}

	cfg, errs := decode(k)
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

// OTLPEnabled reports whether spans are exported over OTLP: an endpoint is configured or
// one of the standard OpenTelemetry endpoint variables is set in environ.
func (c Config) OTLPEnabled(environ []string) bool {
	return c.OTLP.Endpoint != "" ||
		lookupEnv(environ, "OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		lookupEnv(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// lookupEnv returns the last value of name in environ, as the process environment would.
func lookupEnv(environ []string, name string) string {
	var val string
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			val = v
		}
	}
	return val
}

// loadFile reads a YAML config file into its own koanf so that its keys can be checked
// before they are merged: a typo must fail rather than be silently ignored.
func loadFile(path string) (*koanf.Koanf, error) {
	b, err := file.Provider(path).ReadBytes()
	if err != nil {
		return nil, &Error{Key: path, Reason: "cannot read config file: " + pathErr(err)}
	}
	m, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, &Error{Key: path, Reason: "is not a valid YAML config: " + err.Error()}
	}
	fk := koanf.New(".")
	if err := fk.Load(confmap.Provider(m, ""), nil); err != nil {
		return nil, &Error{Key: path, Reason: err.Error()}
	}
	var errs []error
	for _, key := range fk.Keys() {
		switch {
		case isKnown(key):
		case firstKeyIn(key) != "":
			if v := fk.Get(key); v != nil {
				errs = append(errs, &Error{Key: key, Value: v, Reason: "in " + path + " is a section and needs keys below it"})
			}
		default:
			reason := "unknown key in " + path
			if s := suggest(key); s != "" {
				reason += " (did you mean " + s + "?)"
			}
			errs = append(errs, &Error{Key: key, Reason: reason})
		}
	}
	return fk, errors.Join(errs...)
}

// envTransform maps PKTSPAN_OTLP__ENDPOINT to otlp.endpoint and splits list values on
// commas. Unknown variables are ignored, since other tools may share the prefix, except
// those that look like a key written with single underscores, or that name a section,
// which are reported through errs.
func envTransform(errs *[]error) func(string, string) (string, any) {
	return func(name, val string) (string, any) {
		if name == envConfig {
			return "", nil
		}
		key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, envPrefix), "__", "."))
		if l, ok := leafByKey[key]; ok {
			if l.typ.Kind() == reflect.Slice {
				return key, splitList(val)
			}
			return key, val
		}
		if strings.HasPrefix(key, headersKey+".") {
			return key, val
		}
		if first := firstKeyIn(key); first != "" {
			*errs = append(*errs, &Error{Key: name, Value: val, Reason: "names a section; set its keys, e.g. " + EnvName(first)})
			return "", nil
		}
		for _, l := range leaves {
			if strings.EqualFold(envPrefix+strings.ReplaceAll(l.key, ".", "_"), name) {
				*errs = append(*errs, &Error{Key: name, Reason: "is not a pktspan variable (did you mean " + EnvName(l.key) + "?)"})
			}
		}
		return "", nil
	}
}

// splitList splits a comma-separated list, dropping blanks so that "" is an empty list.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// decode converts the merged layers into a Config. Values arrive as Go types (defaults,
// flags), YAML types (int, string, []any, map[string]any) or strings (environment), so
// each field's conversion accepts all three and reports a bad value under its key.
func decode(k *koanf.Koanf) (Config, []error) {
	cfg := Default()
	rv := reflect.ValueOf(&cfg).Elem()
	var errs []error
	for _, l := range leaves {
		if !k.Exists(l.key) {
			continue
		}
		v, err := convert(l, k.Get(l.key))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rv.FieldByIndex(l.index).Set(reflect.ValueOf(v))
	}
	return cfg, errs
}

var durationType = reflect.TypeFor[time.Duration]()

func convert(l leaf, raw any) (any, error) {
	bad := func(v any, reason string) error { return &Error{Key: l.key, Value: v, Reason: reason} }
	switch {
	case l.typ == durationType:
		switch v := raw.(type) {
		case nil:
			return time.Duration(0), nil
		case time.Duration:
			return v, nil
		case string:
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, bad(v, "is not a duration (e.g. 500ms, 10s, 1m30s)")
			}
			return d, nil
		default:
			return nil, bad(raw, "is not a duration (give a unit, e.g. 10s)")
		}
	case l.typ.Kind() == reflect.String:
		if raw == nil {
			return "", nil
		}
		s, ok := scalarString(raw)
		if !ok {
			return nil, bad(raw, "is not a string")
		}
		return s, nil
	case l.typ.Kind() == reflect.Bool:
		switch v := raw.(type) {
		case nil:
			return false, nil
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad(v, "is not true or false")
			}
			return b, nil
		default:
			return nil, bad(raw, "is not true or false")
		}
	case l.typ.Kind() == reflect.Int:
		if raw == nil {
			return 0, nil
		}
		n, ok := toInt(raw)
		if !ok {
			return nil, bad(raw, "is not an integer")
		}
		return n, nil
	case l.typ.Kind() == reflect.Float64:
		if raw == nil {
			return 0.0, nil
		}
		f, ok := toFloat(raw)
		if !ok {
			return nil, bad(raw, "is not a number")
		}
		return f, nil
	case l.typ.Kind() == reflect.Slice:
		items, ok := toList(raw)
		if !ok {
			return nil, bad(raw, "is not a list")
		}
		if l.typ.Elem().Kind() == reflect.Int {
			var out []int
			for _, it := range items {
				n, ok := toInt(it)
				if !ok {
					return nil, bad(it, "is not an integer")
				}
				out = append(out, n)
			}
			return out, nil
		}
		var out []string
		for _, it := range items {
			s, ok := scalarString(it)
			if !ok {
				return nil, bad(it, "is not a string")
			}
			out = append(out, s)
		}
		return out, nil
	case l.typ.Kind() == reflect.Map:
		return toHeaders(l, raw)
	}
	return nil, bad(raw, fmt.Sprintf("has no conversion to %s", l.typ))
}

// scalarString accepts strings and integers: a YAML netns inode is written unquoted.
func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case int:
		return strconv.Itoa(v), true
	}
	return "", false
}

// toInt accepts the int that YAML decodes numbers into and the strings of the environment.
func toInt(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return n, err == nil
	}
	return 0, false
}

// toFloat accepts YAML's numbers and the strings of the environment and flags.
func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}

// toList accepts a list or a single value; a single string is a comma-separated list so
// that `proto: tcp` and `port: 80,443` work in YAML as they do in the environment. An
// empty list decodes to nil.
func toList(v any) ([]any, bool) {
	switch v := v.(type) {
	case nil:
		return nil, true
	case string:
		var out []any
		for _, s := range splitList(v) {
			out = append(out, s)
		}
		return out, true
	case int:
		return []any{v}, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return nil, false
	}
	out := make([]any, 0, rv.Len())
	for i := range rv.Len() {
		out = append(out, rv.Index(i).Interface())
	}
	if len(out) == 0 {
		return nil, true
	}
	return out, true
}

// toHeaders accepts a mapping or a "k=v,k2=v2" string (a single environment variable).
// An empty mapping decodes to nil.
func toHeaders(l leaf, raw any) (map[string]string, error) {
	out := make(map[string]string)
	switch v := raw.(type) {
	case nil:
	case string:
		for _, kv := range splitList(v) {
			hk, hv, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, &Error{Key: l.key, Value: kv, Reason: "is not KEY=VALUE"}
			}
			out[strings.TrimSpace(hk)] = strings.TrimSpace(hv)
		}
	case map[string]string:
		for hk, hv := range v {
			out[hk] = hv
		}
	case map[string]any:
		// Sorted so that the same bad header is reported on every run.
		for _, hk := range slices.Sorted(maps.Keys(v)) {
			s, ok := scalarString(v[hk])
			if !ok {
				return nil, &Error{Key: l.key + "." + hk, Value: v[hk], Reason: "is not a string"}
			}
			out[hk] = s
		}
	default:
		return nil, &Error{Key: l.key, Value: raw, Reason: "is not a mapping of header names to values"}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

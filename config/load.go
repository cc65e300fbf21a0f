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

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

const (
	envPrefix = "PKTSPAN_"
	// envConfig names the config file like --config does; it is not a key.
	envConfig = envPrefix + "CONFIG"
	// expressionKey is set by the positional arguments, not by a flag.
	expressionKey = "filter.expression"
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

	var flagErrs []error
	fs.Visit(func(f *pflag.Flag) {
		if err := emptyFilter(flagKeys[f.Name], posflag.FlagVal(fs, f), false); err != nil {
			flagErrs = append(flagErrs, err)
		}
	})
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
	// The positional arguments are one expression, as tcpdump joins them.
	if fs.NArg() > 0 {
		expr := strings.Join(fs.Args(), " ")
		if err := emptyFilter(expressionKey, expr, false); err != nil {
			flagErrs = append(flagErrs, err)
		}
		if err := k.Set(expressionKey, expr); err != nil {
			return Config{}, fmt.Errorf("config: read arguments: %w", err)
		}
	}

	if len(flagErrs) > 0 {
		return Config{}, errors.Join(flagErrs...)
	}
	cfg, errs := unmarshal(k)
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.OTLPEnabled(environ) {
		errs = append(errs, validateOTEL(environ)...)
	}
	return cfg, errors.Join(errs...)
}

// emptyFilter refuses a filter given as nothing (--filter-addr ”, addr: "", an empty
// YAML list, a comma list with a blank item): an empty filter matches every packet,
// surely not what was meant. It is checked in each layer, on the values that layer
// gives, since a filter left out matches every packet too and is no mistake.
// An empty YAML list (`addr: []`, as examples/pktspan.yaml shows the defaults) says
// "no filter" in so many words and is kept.
func emptyFilter(key string, raw any, emptyListOK bool) error {
	if !strings.HasPrefix(key, "filter.") {
		return nil
	}
	const reason = "gives an empty filter value, which would match every packet (leave the filter out for that)"
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.String:
		// An expression is one value: a comma in it is libpcap's to judge. The file's
		// `expression: ""` says "none" as an empty list does.
		if key == expressionKey {
			if s := rv.String(); isBlank(s) && (s != "" || !emptyListOK) {
				return &Error{Key: key, Value: s, Reason: reason}
			}
			return nil
		}
		if s := rv.String(); slices.ContainsFunc(strings.Split(s, ","), isBlank) {
			return &Error{Key: key, Value: s, Reason: reason}
		}
	case reflect.Slice:
		if rv.Len() == 0 && !emptyListOK {
			return &Error{Key: key, Value: "", Reason: reason}
		}
		items := make([]string, rv.Len())
		for i := range items {
			items[i] = fmt.Sprint(rv.Index(i).Interface())
		}
		if slices.ContainsFunc(items, isBlank) {
			return &Error{Key: key, Value: strings.Join(items, ","), Reason: reason}
		}
	}
	return nil
}

func isBlank(s string) bool { return strings.TrimSpace(s) == "" }

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
// before they are merged: a typo must fail rather than be silently ignored, and once
// merged a wrong key could be hidden by another layer's (PKTSPAN_OTLP__ENDPOINT turns
// `otlp: host:port` into a section).
func loadFile(path string) (*koanf.Koanf, error) {
	b, err := readCapped(path, MaxConfigBytes)
	if err != nil {
		return nil, &Error{Key: path, Reason: "config file " + err.Error()}
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
			if err := emptyFilter(key, fk.Get(key), true); err != nil {
				errs = append(errs, err)
			}
		case firstKeyIn(key) != "":
			// A section whose keys are all commented out sets nothing; merged as it is, its
			// nil would hide the defaults of the section's keys.
			if v := fk.Get(key); v == nil {
				fk.Delete(key)
			} else {
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

// envTransform maps PKTSPAN_OTLP__ENDPOINT to otlp.endpoint. Every other PKTSPAN_
// variable is reported through errs, with the key it most likely meant: a misspelt
// variable silently ignored would leave its setting at the default.
func envTransform(errs *[]error) func(string, string) (string, any) {
	return func(name, val string) (string, any) {
		if name == envConfig {
			return "", nil
		}
		key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, envPrefix), "__", "."))
		if isKnown(key) {
			if err := emptyFilter(key, val, false); err != nil {
				*errs = append(*errs, err)
			}
			return key, val
		}
		if first := firstKeyIn(key); first != "" {
			*errs = append(*errs, &Error{Key: name, Value: val, Reason: "names a section; set its keys, e.g. " + EnvName(first)})
			return "", nil
		}
		reason := "is not a pktspan variable"
		for _, l := range leaves {
			if strings.EqualFold(envPrefix+strings.ReplaceAll(l.key, ".", "_"), name) {
				reason += " (did you mean " + EnvName(l.key) + "?)"
				break
			}
		}
		if !strings.Contains(reason, "(") {
			if s := suggest(key); s != "" {
				reason += " (did you mean " + EnvName(s) + "?)"
			} else {
				reason += " (each key's variable is in --help, e.g. " + EnvName("otlp.endpoint") + ")"
			}
		}
		*errs = append(*errs, &Error{Key: name, Reason: reason})
		return "", nil
	}
}

// unmarshal decodes the merged layers into a Config with koanf's unmarshalling. Every key
// is present, the defaults being the bottom layer, so decoding starts from the zero Config
// and an empty list stays nil. Values arrive as Go types (defaults, flags), YAML types
// (int, string, []any, map[string]any) or strings (environment): the hooks accept each
// field's forms from all of them and turn the rest into *Error values under their keys.
func unmarshal(k *koanf.Koanf) (Config, []error) {
	var cfg Config
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(durationHook, listHook, headersHook, scalarHook),
			// Each layer's keys are checked as it is read (a later layer could replace a
			// wrong section of the file); a key that still slips through fails here.
			ErrorUnused: true,
		},
	})
	bad := configErrors(err)
	// A field that cannot be decoded keeps its default, so that Validate speaks only of
	// the others.
	cv, def := reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(Default())
	errs := make([]error, 0, len(bad))
	for _, e := range bad {
		if l, ok := leafByKey[e.Key]; ok {
			cv.FieldByIndex(l.index).Set(def.FieldByIndex(l.index))
		}
		errs = append(errs, e)
	}
	return cfg, errs
}

// badValue is a hook's verdict on a value; configErrors adds the key it was found under.
type badValue struct {
	sub    string // the part of the key below the field, such as a header's name
	value  any
	reason string
}

func (e *badValue) Error() string { return e.reason }

// configErrors flattens mapstructure's tree of errors, in the order of Config's fields,
// into *Error values.
func configErrors(err error) []*Error {
	switch e := err.(type) {
	case nil:
		return nil
	case interface{ Unwrap() []error }:
		var out []*Error
		for _, e := range e.Unwrap() {
			out = append(out, configErrors(e)...)
		}
		return out
	case *mapstructure.DecodeError:
		var bv *badValue
		if !errors.As(e.Unwrap(), &bv) {
			return []*Error{{Key: e.Name(), Reason: e.Unwrap().Error()}}
		}
		key := e.Name()
		if bv.sub != "" {
			key += "." + bv.sub
		}
		return []*Error{{Key: key, Value: bv.value, Reason: bv.reason}}
	}
	if inner := errors.Unwrap(err); inner != nil {
		return configErrors(inner)
	}
	return []*Error{{Reason: err.Error()}}
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook reads Go durations such as 1m30s; a bare number has no unit and is refused.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	s, ok := data.(string)
	if !ok {
		return nil, &badValue{value: data, reason: "is not a duration (give a unit, e.g. 10s)"}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, &badValue{value: s, reason: "is not a duration (e.g. 500ms, 10s, 1m30s)"}
	}
	return d, nil
}

// listHook accepts a list or a single value; a single string is a comma-separated list so
// that `proto: tcp` and `port: 80,443` work in YAML as they do in the environment and in
// flags. The items are converted here, the first bad one reported, and an empty list
// decodes to nil.
func listHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Slice {
		return data, nil
	}
	var items []any
	switch v := data.(type) {
	case string:
		for _, s := range splitList(v) {
			items = append(items, s)
		}
	case int:
		items = []any{v}
	default:
		if from.Kind() != reflect.Slice {
			return nil, &badValue{value: data, reason: "is not a list"}
		}
		rv := reflect.ValueOf(data)
		for i := range rv.Len() {
			items = append(items, rv.Index(i).Interface())
		}
	}
	out := reflect.MakeSlice(to, 0, len(items))
	for _, it := range items {
		v, err := scalar(to.Elem().Kind(), it)
		if err != nil {
			return nil, err
		}
		out = reflect.Append(out, reflect.ValueOf(v))
	}
	if out.Len() == 0 {
		return reflect.Zero(to).Interface(), nil
	}
	return out.Interface(), nil
}

// headersHook accepts a mapping or a "k=v,k2=v2" string (a single environment variable);
// header names are sorted so that the same bad header is reported on every run. An empty
// mapping decodes to nil.
func headersHook(_, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Map {
		return data, nil
	}
	out := make(map[string]string)
	switch v := data.(type) {
	case string:
		for _, kv := range splitList(v) {
			hk, hv, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, &badValue{value: kv, reason: "is not KEY=VALUE"}
			}
			out[strings.TrimSpace(hk)] = strings.TrimSpace(hv)
		}
	case map[string]string:
		maps.Copy(out, v)
	case map[string]any:
		for _, hk := range slices.Sorted(maps.Keys(v)) {
			s, err := scalar(reflect.String, v[hk])
			if err != nil {
				return nil, &badValue{sub: hk, value: v[hk], reason: notA[reflect.String]}
			}
			out[hk] = s.(string)
		}
	default:
		return nil, &badValue{value: data, reason: "is not a mapping of header names to values"}
	}
	if len(out) == 0 {
		return reflect.Zero(to).Interface(), nil
	}
	return out, nil
}

// scalarHook converts the single values of strings, booleans, integers and numbers.
func scalarHook(_, to reflect.Type, data any) (any, error) {
	if _, ok := notA[to.Kind()]; !ok {
		return data, nil
	}
	return scalar(to.Kind(), data)
}

// notA says what a value of a scalar kind must be, for the error about one that is not.
var notA = map[reflect.Kind]string{
	reflect.String:  "is not a string",
	reflect.Bool:    "is not true or false",
	reflect.Int:     "is not an integer",
	reflect.Float64: "is not a number",
}

// scalar converts v to kind from the types that YAML (string, int, float64, bool), the
// environment (string) and flags give; an int is also a string, since a YAML netns inode
// is written unquoted.
func scalar(kind reflect.Kind, v any) (any, error) {
	switch x := v.(type) {
	case string:
		var (
			out any
			err error
		)
		switch kind {
		case reflect.String:
			return x, nil
		case reflect.Bool:
			out, err = strconv.ParseBool(x)
		case reflect.Int:
			out, err = strconv.Atoi(strings.TrimSpace(x))
		case reflect.Float64:
			out, err = strconv.ParseFloat(strings.TrimSpace(x), 64)
		}
		if err == nil && out != nil {
			return out, nil
		}
	case int:
		switch kind {
		case reflect.String:
			return strconv.Itoa(x), nil
		case reflect.Int:
			return x, nil
		case reflect.Float64:
			return float64(x), nil
		}
	case bool, float64:
		if reflect.TypeOf(x).Kind() == kind {
			return x, nil
		}
	}
	return nil, &badValue{value: v, reason: notA[kind]}
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

package config

import (
	"reflect"
	"strings"
)

// leaf is one settable value of Config: its dotted koanf key and where it lives in the
// struct. Keys come from the `koanf` tags so the struct stays the only list of keys.
type leaf struct {
	key   string
	index []int
}

var (
	leaves    = collectLeaves(reflect.TypeFor[Config](), "", nil)
	leafByKey = func() map[string]leaf {
		m := make(map[string]leaf, len(leaves))
		for _, l := range leaves {
			m[l.key] = l
		}
		return m
	}()
)

// headersKey is the one map-valued key: any key below it names an OTLP header.
const headersKey = "otlp.headers"

// collectLeaves walks the struct; a field without a koanf tag is not configurable.
func collectLeaves(t reflect.Type, prefix string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || !f.IsExported() {
			continue
		}
		key := prefix + tag
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, collectLeaves(f.Type, key+".", idx)...)
			continue
		}
		out = append(out, leaf{key: key, index: idx})
	}
	return out
}

// defaultValues returns Default() as a flat key → value map, the bottom koanf layer.
func defaultValues() map[string]any {
	v := reflect.ValueOf(Default())
	m := make(map[string]any, len(leaves))
	for _, l := range leaves {
		m[l.key] = v.FieldByIndex(l.index).Interface()
	}
	return m
}

// firstKeyIn returns the first key inside section, or "" when section does not name a
// group of keys (otlp, filter, …).
func firstKeyIn(section string) string {
	for _, l := range leaves {
		if strings.HasPrefix(l.key, section+".") {
			return l.key
		}
	}
	return ""
}

// isKnown reports whether key is a leaf or a single OTLP header.
func isKnown(key string) bool {
	_, ok := leafByKey[key]
	return ok || strings.HasPrefix(key, headersKey+".")
}

// EnvName returns the environment variable that sets key: otlp.endpoint →
// PKTSPAN_OTLP__ENDPOINT, service_name → PKTSPAN_SERVICE_NAME.
func EnvName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// suggest returns the known key closest to an unknown one, or "" when none is close:
// first a key with the same last part (endpoint → otlp.endpoint), else a small edit.
func suggest(unknown string) string {
	last := unknown[strings.LastIndex(unknown, ".")+1:]
	for _, l := range leaves {
		if l.key[strings.LastIndex(l.key, ".")+1:] == last {
			return l.key
		}
	}
	best, bestDist := "", 4
	for _, l := range leaves {
		if d := editDistance(unknown, l.key); d < bestDist {
			best, bestDist = l.key, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package config

import (
	"fmt"
	"strings"
)

// Error is a configuration problem the user can fix: a bad value, an unknown key, an
// unreadable config file or a bad command line. cmd/ finds it with errors.As to exit with
// code 2; Load and Validate may return several joined with errors.Join.
type Error struct {
	// Key is the koanf key (such as otlp.endpoint), the config file's path for a file that
	// cannot be read or parsed, or empty for a command-line error.
	Key string
	// Value is the offending value as given, or nil when there is none to show.
	Value any
	// Reason says what is wrong and, where it helps, what is allowed.
	Reason string
}

// Error renders `config: KEY: VALUE REASON` on one line, quoting string values so that
// empty strings and spaces stay visible.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	switch v := e.Value.(type) {
	case nil:
	case string:
		fmt.Fprintf(&b, "%q ", v)
	default:
		fmt.Fprintf(&b, "%v ", v)
	}
	b.WriteString(e.Reason)
	return oneLine(b.String())
}

// oneLine joins the lines of s (a YAML parser's error lists its problems on lines of
// their own, a key may hold a line break), so every problem stays one line of output.
func oneLine(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

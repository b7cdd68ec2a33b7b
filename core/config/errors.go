package config

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one configuration problem with its position.
// File and Line are empty for a Config built in code; Key is empty for a syntax error that names no key.
type Error struct {
	File string
	Line int
	Key  string // full dotted key, e.g. "c2s.max_stanza_size" or "c2s.listen[1]"
	Msg  string
}

// Error formats e as "file:line: key: msg", leaving out the parts that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors collects every problem found (report all, not just the first).
type Errors []*Error

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As reach the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// problem is a configuration problem before it is given a position.
type problem struct {
	// keys[0] is where the problem is reported; the others are fallbacks used when keys[0] does not
	// appear in the file, because the value came from the defaults (e.g. the other half of a combination).
	keys []string
	msg  string
}

// parseTOML parses data into its generic tree, turning syntax errors into Errors.
func parseTOML(name string, data []byte) (map[string]any, error) {
	var raw map[string]any
	_, err := toml.Decode(string(data), &raw)
	if err == nil {
		return raw, nil
	}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return nil, Errors{{File: name, Line: errorLine(string(data), pe.Position), Msg: pe.Message}}
	}
	// Decoding into a map has no type errors, so this is not expected; keep the text anyway.
	return nil, Errors{{File: name, Msg: err.Error()}}
}

// errorLine returns the line of a syntax error. toml's Position.Line is one too far when the error is
// at a newline (e.g. an unclosed "[table" header), so count lines up to the byte offset instead.
func errorLine(src string, pos toml.Position) int {
	if pos.Len == 0 { // no offset recorded
		return pos.Line
	}
	src = stripBOM(src) // offsets are counted after the BOM, which the parser drops
	return strings.Count(src[:min(max(pos.Start, 0), len(src))], "\n") + 1
}

// locate turns problems found in the file called name into Errors with lines, sorted by line.
func locate(name string, data []byte, probs []problem) Errors {
	lines := keyLines(string(data))
	errs := make(Errors, 0, len(probs))
	for _, p := range probs {
		e := &Error{File: name, Key: p.keys[0], Msg: p.msg}
		for _, k := range p.keys {
			if l, ok := lines[k]; ok {
				e.Key, e.Line = k, l
				break
			}
		}
		errs = append(errs, e)
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	return errs
}

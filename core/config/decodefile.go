package config

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Problem is a problem a schema finds in its own decoded values, reported against the key that
// holds the value, spelled as decode errors spell keys: "link[2].room", "network[0].servers[1]".
type Problem struct {
	Key string
	Msg string
}

// Checker is implemented by schemas that validate themselves once DecodeFile has decoded them.
type Checker interface {
	Check() []Problem
}

// DecodeFile decodes the TOML document data, read from the file called name, strictly onto dst,
// a pointer to a struct whose fields carry `toml` tags (the schema), as Parse does for the server
// configuration: unknown keys and wrong types are errors, values already in *dst are defaults,
// and every problem is reported with its line, as Errors sorted by line. When dst implements
// Checker, its problems are reported too (a missing key with its table's line), except against
// keys that already failed to decode.
// Other files with their own schemas (bridge maps) use it to be as strict as aldis.toml.
func DecodeFile(name string, data []byte, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.DecodeFile: destination must be a non-nil pointer to a struct, not %T", dst)
	}
	raw, err := parseTOML(name, data)
	if err != nil {
		return err
	}
	d := decoder{}
	d.table("", raw, dst)
	errs := locate(name, data, d.probs)
	if c, ok := dst.(Checker); ok {
		var checked []Problem
		for _, p := range c.Check() {
			// A key that failed to decode kept its default; don't report a second problem against it.
			if !d.failed[p.Key] {
				checked = append(checked, p)
			}
		}
		errs = append(errs, Locate(name, data, checked)...)
		slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// Locate gives problems found after decoding (say, label expressions checked against a policy
// loaded later) the lines of their keys in data, the document read from the file called name.
// A problem whose key is not in the file (a default) gets the line of the nearest enclosing
// table that is, such as the [[link]] header for a link's missing key.
func Locate(name string, data []byte, probs []Problem) Errors {
	lines := keyLines(string(data))
	errs := make(Errors, 0, len(probs))
	for _, p := range probs {
		e := &Error{File: name, Key: p.Key, Msg: p.Msg}
		for _, k := range withParents(p.Key) {
			if l, ok := lines[k]; ok {
				e.Line = l
				break
			}
		}
		errs = append(errs, e)
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	return errs
}

// withParents returns key and then the keys of its enclosing tables, innermost first, as the
// fallbacks locate tries: "link[0].network", "link[0]", "link". Quoted segments with dots are
// rare enough in map files that cutting at the last dot is good enough for a line number.
func withParents(key string) []string {
	keys := []string{key}
	for {
		switch i := strings.LastIndexAny(key, ".["); {
		case i <= 0:
			return keys
		default:
			key = key[:i]
			keys = append(keys, key)
		}
	}
}

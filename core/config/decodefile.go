package config

import (
	"fmt"
	"reflect"
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
// Checker, its problems are reported too, except against keys that already failed to decode.
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
	probs := d.probs
	if c, ok := dst.(Checker); ok {
		for _, p := range c.Check() {
			// A key that failed to decode kept its default; don't report a second problem against it.
			if !d.failed[p.Key] {
				probs = append(probs, problem{keys: []string{p.Key}, msg: p.Msg})
			}
		}
	}
	if len(probs) == 0 {
		return nil
	}
	return locate(name, data, probs)
}

// Locate gives problems found after decoding (say, label expressions checked against a policy
// loaded later) the lines of their keys in data, the document read from the file called name.
// A problem whose key is not in the file (a default) is reported without a line.
func Locate(name string, data []byte, probs []Problem) Errors {
	ps := make([]problem, len(probs))
	for i, p := range probs {
		ps[i] = problem{keys: []string{p.Key}, msg: p.Msg}
	}
	return locate(name, data, ps)
}

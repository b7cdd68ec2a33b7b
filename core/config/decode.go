package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// decoder copies a parsed TOML tree onto a Config, using the struct's `toml` tags as the schema.
//
// It is used instead of toml.Decode into the struct because that stops at the first type error and
// reports unknown keys through MetaData.Undecoded without positions; walking the tree ourselves
// reports every problem under its full key, which keyLines can then place.
type decoder struct {
	probs  []problem
	failed map[string]bool // keys that were reported here and kept their default
}

var durationType = reflect.TypeFor[time.Duration]()

func (d *decoder) fail(key, format string, args ...any) {
	d.probs = append(d.probs, problem{keys: []string{key}, msg: fmt.Sprintf(format, args...)})
	if d.failed == nil {
		d.failed = make(map[string]bool)
	}
	d.failed[key] = true
}

// table assigns the entries of tbl, found at key path, to the tagged fields of the struct *dst.
func (d *decoder) table(path string, tbl map[string]any, dst any) {
	d.tableValue(path, tbl, reflect.ValueOf(dst).Elem())
}

func (d *decoder) tableValue(path string, tbl map[string]any, rv reflect.Value) {
	names := make([]string, 0, len(tbl))
	for name := range tbl {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic order for equal lines; locate sorts by line afterwards
	for _, name := range names {
		key := joinKey(path, name)
		f, ok := fieldByTag(rv, name)
		if !ok {
			// Don't descend: one report for an unknown table is enough.
			d.fail(key, "unknown key")
			continue
		}
		d.value(key, tbl[name], f)
	}
}

func fieldByTag(rv reflect.Value, name string) (reflect.Value, bool) {
	t := rv.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag == name && tag != "" && tag != "-" {
			return rv.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// value assigns the TOML value v, found at key, to the field f.
func (d *decoder) value(key string, v any, f reflect.Value) {
	if f.Type() == durationType {
		s, ok := v.(string)
		if !ok {
			d.fail(key, `must be a duration string such as "30s" or "5m", not %s`, tomlType(v))
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.fail(key, `invalid duration %q: want a number with a unit, such as "30s" or "5m"`, s)
			return
		}
		f.SetInt(int64(dur))
		return
	}
	switch f.Kind() {
	case reflect.Pointer:
		// An optional setting (*bool): nil when the file leaves it out.
		nv := reflect.New(f.Type().Elem())
		d.value(key, v, nv.Elem())
		f.Set(nv)
	case reflect.Struct:
		tbl, ok := v.(map[string]any)
		if !ok {
			d.fail(key, "must be a table, not %s", tomlType(v))
			return
		}
		d.tableValue(key, tbl, f)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.fail(key, "must be a string, not %s", tomlType(v))
			return
		}
		f.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.fail(key, "must be true or false, not %s", tomlType(v))
			return
		}
		f.SetBool(b)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.fail(key, "must be an integer, not %s", tomlType(v))
			return
		}
		if int64(int(n)) != n { // only on 32-bit platforms
			d.fail(key, "integer %d is out of range", n)
			return
		}
		f.SetInt(n)
	case reflect.Map:
		d.stringMap(key, v, f)
	case reflect.Slice:
		if f.Type().Elem().Kind() == reflect.Struct {
			d.tables(key, v, f)
			return
		}
		if f.Type().Elem().Kind() != reflect.String {
			d.fail(key, "unsupported setting type %s", f.Type()) // a schema bug, not an input error
			return
		}
		arr, ok := v.([]any)
		if !ok {
			d.fail(key, "must be an array of strings, not %s", tomlType(v))
			return
		}
		out := make([]string, 0, len(arr))
		bad := false
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				d.fail(indexKey(key, i), "must be a string, not %s", tomlType(e))
				bad = true
				continue
			}
			out = append(out, s)
		}
		if bad {
			d.failed[key] = true
			return
		}
		f.Set(reflect.ValueOf(out))
	default:
		d.fail(key, "unsupported setting type %s", f.Type()) // a schema bug, not an input error
	}
}

// tomlType names the TOML type of a value from the parsed tree, for messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// joinKey appends the key segment name to path, quoting it as TOML would print it.
func joinKey(path, name string) string {
	seg := toml.Key{name}.String()
	if path == "" {
		return seg
	}
	return path + "." + seg
}

// indexKey names element i of the array at key.
func indexKey(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

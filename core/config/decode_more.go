package config

import (
	"reflect"
)

// stringMap assigns a TOML table of strings, such as s2s.hosts, to a map[string]string field.
func (d *decoder) stringMap(key string, v any, f reflect.Value) {
	if f.Type().Key().Kind() != reflect.String || f.Type().Elem().Kind() != reflect.String {
		d.fail(key, "unsupported setting type %s", f.Type()) // a schema bug, not an input error
		return
	}
	tbl, ok := v.(map[string]any)
	if !ok {
		d.fail(key, "must be a table of strings, not %s", tomlType(v))
		return
	}
	out := reflect.MakeMapWithSize(f.Type(), len(tbl))
	bad := false
	for name, e := range tbl {
		s, ok := e.(string)
		if !ok {
			d.fail(joinKey(key, name), "must be a string, not %s", tomlType(e))
			bad = true
			continue
		}
		out.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(s))
	}
	if bad {
		d.failed[key] = true
		return
	}
	f.Set(out)
}

// tables assigns an array of tables ([[components.component]]), or of inline tables, to a slice
// of structs; each element starts from the zero value of the struct, so every key it needs must
// be written.
func (d *decoder) tables(key string, v any, f reflect.Value) {
	var elems []map[string]any
	switch arr := v.(type) {
	case []map[string]any:
		elems = arr
	case []any:
		for i, e := range arr {
			m, ok := e.(map[string]any)
			if !ok {
				d.fail(indexKey(key, i), "must be a table, not %s", tomlType(e))
				return
			}
			elems = append(elems, m)
		}
	default:
		d.fail(key, "must be an array of tables, not %s", tomlType(v))
		return
	}
	out := reflect.MakeSlice(f.Type(), len(elems), len(elems))
	for i, m := range elems {
		d.tableValue(indexKey(key, i), m, out.Index(i))
	}
	f.Set(out)
}

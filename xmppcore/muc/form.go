package muc

import (
	"errors"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

// XEP-0004 data form helpers.

// field adds a field with values to the form x and returns it.
func field(x *wire.Element, typ, name, label string, values ...string) *wire.Element {
	f := x.AddChild(wire.New("field", ""))
	f.SetAttr("var", name)
	if typ != "" {
		f.SetAttr("type", typ)
	}
	if label != "" {
		f.SetAttr("label", label)
	}
	for _, v := range values {
		f.AddChild(wire.New("value", "")).AddText(v)
	}
	return f
}

func hidden(x *wire.Element, name, value string) { field(x, "hidden", name, "", value) }

func option(f *wire.Element, label, value string) {
	o := f.AddChild(wire.New("option", ""))
	if label != "" {
		o.SetAttr("label", label)
	}
	o.AddChild(wire.New("value", "")).AddText(value)
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// formValues returns the values of each field of a submitted form.
func formValues(x *wire.Element) map[string][]string {
	out := map[string][]string{}
	for f := range x.Elements() {
		if f.Local() != "field" || f.Attr("var") == "" {
			continue
		}
		vals := []string{}
		for v := range f.Elements() {
			if v.Local() == "value" {
				vals = append(vals, v.Text())
			}
		}
		out[f.Attr("var")] = vals
	}
	return out
}

func formType(x *wire.Element) string { return first(formValues(x)["FORM_TYPE"]) }

func first(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return vals[0]
}

var errNotBool = errors.New("not a boolean")

// parseBool reads an XEP-0004 boolean.
func parseBool(s string) (bool, error) {
	switch s {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, errNotBool
}

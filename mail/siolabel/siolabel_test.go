package siolabel

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

const example = `marking="SECRET"; fgcolor=black; bgcolor=red; type=":ess"; label="MQYCAQQGASk="`

// TestChecklistParse is PROTOCOLS §5.4: the example header becomes a
// label with the SECRET black-on-red marking and the identical base64.
func TestChecklistParse(t *testing.T) {
	l, err := Parse(example)
	if err != nil {
		t.Fatal(err)
	}
	want := Label{Marking: "SECRET", FG: "black", BG: "red", Type: TypeESS, Label: "MQYCAQQGASk="}
	if l != want {
		t.Fatalf("Parse = %+v, want %+v", l, want)
	}
	elem, ok, err := l.Element()
	if err != nil || !ok {
		t.Fatalf("Element: %v %v", ok, err)
	}
	wantElem := `<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking fgcolor='black' bgcolor='red'>SECRET</displaymarking>` +
		`<label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQYCAQQGASk=</esssecuritylabel></label></securitylabel>`
	if string(elem) != wantElem {
		t.Errorf("Element =\n%s\nwant\n%s", elem, wantElem)
	}
}

// TestChecklistReverse: XMPP to email gives exactly that parameter set,
// each parameter once, and the ESS label survives XMPP → email → XMPP
// byte for byte.
func TestChecklistReverse(t *testing.T) {
	in := `<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking bgcolor='red' fgcolor='black'>SECRET</displaymarking>` +
		"<label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>\n  MQYCAQQG\n  ASk=\n</esssecuritylabel></label>" +
		`<equivalentlabel><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQYCAQIGASk=</esssecuritylabel></equivalentlabel></securitylabel>`
	l, ok, err := FromElement([]byte(in))
	if err != nil || !ok {
		t.Fatalf("FromElement: %v %v", ok, err)
	}
	h := l.Format()
	name, value, _ := strings.Cut(h, ":")
	if name != Header {
		t.Errorf("header name %q", name)
	}
	params := map[string]int{}
	for _, p := range strings.Split(value, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		params[k+"="+v]++
	}
	for _, want := range []string{`marking="SECRET"`, `fgcolor="black"`, `bgcolor="red"`, `type=":ess"`, `label="MQYCAQQGASk="`} {
		if params[want] != 1 {
			t.Errorf("%s appears %d times in %q", want, params[want], h)
		}
	}
	if len(params) != 5 {
		t.Errorf("%d parameters in %q, want 5", len(params), h)
	}
	back, err := Parse(value)
	if err != nil {
		t.Fatal(err)
	}
	elem, _, err := back.Element()
	if err != nil {
		t.Fatal(err)
	}
	l2, _, err := FromElement(elem)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Label != "MQYCAQQGASk=" || !strings.Contains(string(elem), ">MQYCAQQGASk=<") {
		t.Errorf("ESS label after the round trip: %q in %s", l2.Label, elem)
	}
}

// TestContinuations: label*0, label*1 reassemble; long labels and markings
// are written with continuations in lines of at most 78 characters.
func TestContinuations(t *testing.T) {
	l, err := Parse(`type=":ess"; label*1="GASk="; label*0="MQYCAQQ"; marking="S"`)
	if err != nil {
		t.Fatal(err)
	}
	if l.Label != "MQYCAQQGASk=" {
		t.Errorf("reassembled %q", l.Label)
	}
	long := Label{
		Marking: "SECRET // REL TO " + strings.Repeat("GBR, USA, CAN, AUS, NZL, ", 4) + "«ÉTÉ»",
		FG:      "#FF0000",
		Type:    TypeESS,
		Label:   base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x31\x06\x02\x01\x04\x06\x01\x29", 140))),
	}
	h := long.Format()
	for _, line := range strings.Split(h, "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
	if !strings.Contains(h, "label*0=") || !strings.Contains(h, "marking*0*=utf-8''") {
		t.Errorf("no continuations in\n%s", h)
	}
	_, value, _ := strings.Cut(h, ":")
	back, err := Parse(value)
	if err != nil {
		t.Fatal(err)
	}
	long.FG = "#ff0000"
	if back != long {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, long)
	}
}

func TestParseErrors(t *testing.T) {
	for name, v := range map[string]string{
		"empty":           "",
		"duplicate":       `marking="A"; marking="B"`,
		"label sans type": `label="MQYCAQQGASk="`,
		"type sans label": `marking="A"; type=":ess"`,
		"not base64":      `type=":ess"; label="!!!"`,
		"bad colour":      `marking="A"; fgcolor="url(x)"`,
		"nothing":         `fgcolor=red`,
		"garbage":         `;;;==`,
		"too long":        `marking="` + strings.Repeat("A", MaxValue) + `"`,
	} {
		if _, err := Parse(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse(%.40q) = %v, want ErrMalformed", name, v, err)
		}
	}
	// Marking alone is fine, and gives an empty <label/>.
	l, err := Parse(`marking="UNCLASSIFIED"`)
	if err != nil {
		t.Fatal(err)
	}
	elem, ok, err := l.Element()
	if err != nil || !ok || !strings.Contains(string(elem), "<label/>") {
		t.Errorf("marking only: %s %v %v", elem, ok, err)
	}
	// X.411 cannot be carried: marking only, ok false.
	l, _ = Parse(`marking="S"; type=":x411"; label="MQYCAQQGASk="`)
	if _, ok, err := l.Element(); ok || err != nil {
		t.Errorf("x411: ok %v err %v, want false, nil", ok, err)
	}
	// An :xml label that is not STANAG 4774.
	l, _ = Parse(`type=":xml"; label="` + base64.StdEncoding.EncodeToString([]byte("<foo/>")) + `"`)
	if _, _, err := l.Element(); !errors.Is(err, ErrMalformed) {
		t.Errorf("xml non-4774: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add(`type=":ess"; label*1="GASk="; label*0="MQYCAQQ"`)
	f.Add(`marking*=utf-8''%C2%ABx; type=":xml"; label="PGEvPg=="`)
	f.Fuzz(func(t *testing.T, v string) {
		l, err := Parse(v)
		if err != nil {
			return
		}
		// Whatever parses formats, and reparses to the same label.
		h := l.Format()
		for _, line := range strings.Split(h, "\r\n") {
			if len(line) > 998 {
				t.Fatalf("line of %d characters", len(line))
			}
		}
		_, value, _ := strings.Cut(h, ":")
		back, err := Parse(value)
		if err != nil {
			t.Fatalf("reparse of %q: %v", h, err)
		}
		if back.Marking != l.Marking || back.Label != l.Label || back.Type != l.Type {
			t.Fatalf("round trip %+v → %q → %+v", l, h, back)
		}
		_, _, _ = l.Element()
	})
}

func FuzzFromElement(f *testing.F) {
	f.Add([]byte(`<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking>S</displaymarking><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQYCAQQGASk=</esssecuritylabel></label></securitylabel>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		l, _, err := FromElement(b)
		if err != nil {
			return
		}
		if _, err := Parse(strings.TrimPrefix(l.Format(), Header+":")); err != nil {
			t.Fatalf("FromElement gave %+v, whose header does not parse: %v", l, err)
		}
	})
}

package nato

import (
	"reflect"
	"strings"
	"testing"
)

// example is the ADatP-4774 label from PROTOCOLS §1.5.
const example = `<originatorConfidentialityLabel xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0">
  <ConfidentialityInformation>
    <PolicyIdentifier URI="urn:oid:1.3.26.1.3.1">NATO</PolicyIdentifier>
    <Classification>UNCLASSIFIED</Classification>
    <Category TagName="Context" Type="PERMISSIVE">
      <GenericValue>NATO</GenericValue>
      <GenericValue>Releasable</GenericValue>
    </Category>
    <Category TagName="Releasable To" Type="PERMISSIVE">
      <GenericValue>NATO</GenericValue>
      <GenericValue>ISAF</GenericValue>
    </Category>
    <Category TagName="Administrative" Type="INFORMATIVE">
      <GenericValue>STAFF</GenericValue>
    </Category>
  </ConfidentialityInformation>
  <CreationDateTime>2015-08-29T16:15:00Z</CreationDateTime>
</originatorConfidentialityLabel>`

var exampleLabel = Label{
	Root:           RootOriginator,
	PolicyName:     "NATO",
	PolicyURI:      "urn:oid:1.3.26.1.3.1",
	Classification: "UNCLASSIFIED",
	Categories: []Category{
		{TagName: "Context", Type: Permissive, Values: []string{"NATO", "Releasable"}},
		{TagName: "Releasable To", Type: Permissive, Values: []string{"NATO", "ISAF"}},
		{TagName: "Administrative", Type: Informative, Values: []string{"STAFF"}},
	},
	CreationDateTime: "2015-08-29T16:15:00Z",
}

// spiffingFile is SPIFFING's test-data/nato-4774-17-1.nato, with its URL=.
const spiffingFile = `<originatorConfidentialityLabel xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0">
<ConfidentialityInformation>
<PolicyIdentifier URL="urn:oid:1.3.26.1.3.1">NATO</PolicyIdentifier>
<Classification>UNCLASSIFIED</Classification>
<Category TagName="Context" Type="PERMISSIVE">
<GenericValue>NATO</GenericValue>
<GenericValue>Releasable</GenericValue>
</Category>
<Category TagName="Releasable To" Type="PERMISSIVE">
<GenericValue>NATO</GenericValue>
<GenericValue>ISAF</GenericValue>
<GenericValue>KFOR</GenericValue>
<GenericValue>RESOLUTE SUPPORT</GenericValue>
</Category>
</ConfidentialityInformation>
</originatorConfidentialityLabel>
`

func TestParseExample(t *testing.T) {
	got, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exampleLabel) {
		t.Fatalf("got %+v\nwant %+v", got, exampleLabel)
	}
	if OID(got.PolicyURI) != "1.3.26.1.3.1" {
		t.Fatalf("OID(%q) = %q", got.PolicyURI, OID(got.PolicyURI))
	}
	// The canonical form is the example without its indentation.
	compact := strings.NewReplacer("\n", "", "  ", "").Replace(example)
	if m := string(got.Marshal()); m != compact {
		t.Fatalf("Marshal:\n%s\nwant\n%s", m, compact)
	}
}

func TestParseURLTypo(t *testing.T) {
	got, err := Parse([]byte(spiffingFile))
	if err != nil {
		t.Fatal(err)
	}
	if got.PolicyURI != "urn:oid:1.3.26.1.3.1" || got.PolicyName != "NATO" {
		t.Fatalf("policy %q %q", got.PolicyName, got.PolicyURI)
	}
	if v := got.Categories[1].Values; len(v) != 4 || v[3] != "RESOLUTE SUPPORT" {
		t.Fatalf("values %q", v)
	}
	// Written back with URI=.
	if m := got.Marshal(); !strings.Contains(string(m), `<PolicyIdentifier URI="urn:oid:1.3.26.1.3.1">`) {
		t.Fatalf("Marshal: %s", m)
	}
}

func TestParseVariants(t *testing.T) {
	for name, tc := range map[string]struct {
		in    string
		check func(Label) bool
	}{
		"prefixed": {
			`<n:originatorConfidentialityLabel xmlns:n="` + NS + `"><n:ConfidentialityInformation><n:PolicyIdentifier>P</n:PolicyIdentifier><n:Classification>S</n:Classification></n:ConfidentialityInformation></n:originatorConfidentialityLabel>`,
			func(l Label) bool { return l.PolicyName == "P" && l.Classification == "S" },
		},
		"upper camel root": {
			`<OriginatorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation><PolicyIdentifier>P</PolicyIdentifier><Classification>S</Classification></ConfidentialityInformation></OriginatorConfidentialityLabel>`,
			func(l Label) bool { return l.Root == RootOriginator },
		},
		"successor": {
			`<SuccessorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation><PolicyIdentifier>P</PolicyIdentifier><Classification>S</Classification></ConfidentialityInformation></SuccessorConfidentialityLabel>`,
			func(l Label) bool { return l.Root == RootSuccessor },
		},
		"everything": {
			`<?xml version="1.0" encoding="UTF-8"?>
<!-- comment --><alternativeConfidentialityLabel xmlns="` + NS + `" ReviewDateTime=" 2030-01-01T00:00:00+01:00 ">
<ConfidentialityInformation><Classification> NATO SECRET </Classification><PolicyIdentifier URI="urn:oid:1.3.26.1.3.1" URL="ignored">NATO</PolicyIdentifier>
<PrivacyMark>EYES &amp; EARS</PrivacyMark><Category TagName="T" Type="restrictive" URI="urn:oid:1.2"><GenericValue>A&lt;B</GenericValue></Category></ConfidentialityInformation>
<OriginatorID IDType="rfc822Name">ops@example.org</OriginatorID><CreationDateTime>2015-08-29T16:15:00.5-05:00</CreationDateTime></alternativeConfidentialityLabel>`,
			func(l Label) bool {
				return l.Root == RootAlternative && l.Classification == "NATO SECRET" && l.PolicyURI == "urn:oid:1.3.26.1.3.1" &&
					l.PrivacyMark == "EYES & EARS" && l.Categories[0].Type == Restrictive && l.Categories[0].URI == "urn:oid:1.2" &&
					l.Categories[0].Values[0] == "A<B" && l.OriginatorID == "ops@example.org" && l.OriginatorIDType == "rfc822Name" &&
					l.ReviewDateTime == "2030-01-01T00:00:00+01:00" && l.CreationDateTime == "2015-08-29T16:15:00.5-05:00"
			},
		},
		"foreign elements skipped": {
			`<originatorConfidentialityLabel xmlns="` + NS + `" xmlns:x="urn:x"><x:ext><x:deep><Classification>no</Classification></x:deep></x:ext><ConfidentialityInformation><PolicyIdentifier>P<x:i/></PolicyIdentifier><Classification>S</Classification><Category TagName="T" Type="PERMISSIVE"><x:y/><GenericValue>V</GenericValue></Category></ConfidentialityInformation></originatorConfidentialityLabel>`,
			func(l Label) bool { return l.PolicyName == "P" && l.Classification == "S" && len(l.Categories) == 1 },
		},
	} {
		got, err := Parse([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !tc.check(got) {
			t.Errorf("%s: got %+v", name, got)
		}
		if again, err := Parse(got.Marshal()); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: round trip: %v\n%+v\n%+v", name, err, again, got)
		}
	}
}

func TestParseErrors(t *testing.T) {
	wrap := func(info string) string {
		return `<originatorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation>` + info + `</ConfidentialityInformation></originatorConfidentialityLabel>`
	}
	const pc = `<PolicyIdentifier>P</PolicyIdentifier><Classification>S</Classification>`
	deep := strings.Repeat("<x:a>", 16) + strings.Repeat("</x:a>", 16)
	for name, in := range map[string]string{
		"empty":            ``,
		"not xml":          `hello`,
		"wrong namespace":  `<originatorConfidentialityLabel xmlns="urn:other"/>`,
		"wrong root":       `<label xmlns="` + NS + `"/>`,
		"no info":          `<originatorConfidentialityLabel xmlns="` + NS + `"/>`,
		"no policy":        wrap(`<Classification>S</Classification>`),
		"no class":         wrap(`<PolicyIdentifier>P</PolicyIdentifier>`),
		"empty class":      wrap(`<PolicyIdentifier>P</PolicyIdentifier><Classification> </Classification>`),
		"empty policy":     wrap(`<PolicyIdentifier/><Classification>S</Classification>`),
		"two classes":      wrap(pc + `<Classification>S</Classification>`),
		"unknown NS elem":  wrap(pc + `<Colour>red</Colour>`),
		"nested in text":   wrap(`<PolicyIdentifier>P<Classification>S</Classification></PolicyIdentifier><Classification>S</Classification>`),
		"text in info":     wrap(pc + `stray`),
		"category no tag":  wrap(pc + `<Category Type="PERMISSIVE"><GenericValue>V</GenericValue></Category>`),
		"category no type": wrap(pc + `<Category TagName="T"><GenericValue>V</GenericValue></Category>`),
		"category bad typ": wrap(pc + `<Category TagName="T" Type="MAYBE"><GenericValue>V</GenericValue></Category>`),
		"no values":        wrap(pc + `<Category TagName="T" Type="PERMISSIVE"></Category>`),
		"empty value":      wrap(pc + `<Category TagName="T" Type="PERMISSIVE"><GenericValue/></Category>`),
		"category other":   wrap(pc + `<Category TagName="T" Type="PERMISSIVE"><Value>V</Value></Category>`),
		"bad date": `<originatorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation>` + pc +
			`</ConfidentialityInformation><CreationDateTime>2015-02-29T00:00:00Z</CreationDateTime></originatorConfidentialityLabel>`,
		"bad review": `<originatorConfidentialityLabel xmlns="` + NS + `" ReviewDateTime="tomorrow"><ConfidentialityInformation>` + pc +
			`</ConfidentialityInformation></originatorConfidentialityLabel>`,
		"IDType no ID": `<originatorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation>` + pc +
			`</ConfidentialityInformation><OriginatorID IDType="x"/></originatorConfidentialityLabel>`,
		"doctype":        `<!DOCTYPE x [<!ENTITY a "b">]>` + wrap(pc),
		"entity":         wrap(`<PolicyIdentifier>&a;</PolicyIdentifier><Classification>S</Classification>`),
		"PI":             wrap(pc + `<?php x?>`),
		"late decl":      wrap(pc) + `<?xml version="1.0"?>`,
		"trailing":       wrap(pc) + `<x/>`,
		"trailing text":  wrap(pc) + `x`,
		"two roots":      wrap(pc) + wrap(pc),
		"truncated":      wrap(pc)[:60],
		"mismatched":     `<originatorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation></originatorConfidentialityLabel>`,
		"too deep":       `<originatorConfidentialityLabel xmlns="` + NS + `" xmlns:x="urn:x">` + deep + `</originatorConfidentialityLabel>`,
		"long text":      wrap(`<PolicyIdentifier>` + strings.Repeat("p", MaxText+1) + `</PolicyIdentifier><Classification>S</Classification>`),
		"long attribute": wrap(`<PolicyIdentifier URI="` + strings.Repeat("p", MaxText+1) + `">P</PolicyIdentifier><Classification>S</Classification>`),
		"bad char":       wrap(`<PolicyIdentifier>&#1;</PolicyIdentifier><Classification>S</Classification>`),
		"bad UTF-8":      wrap("<PolicyIdentifier>\xff</PolicyIdentifier><Classification>S</Classification>"),
	} {
		if l, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: parsed %+v, want error", name, l)
		} else if !strings.HasPrefix(err.Error(), "nato: ") {
			t.Errorf("%s: error %q lacks package prefix", name, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	cat := `<Category TagName="T" Type="PERMISSIVE"><GenericValue>V</GenericValue></Category>`
	head := `<originatorConfidentialityLabel xmlns="` + NS + `"><ConfidentialityInformation><PolicyIdentifier>P</PolicyIdentifier><Classification>S</Classification>`
	tail := `</ConfidentialityInformation></originatorConfidentialityLabel>`
	if _, err := Parse([]byte(head + strings.Repeat(cat, MaxCategories) + tail)); err != nil {
		t.Fatalf("64 categories: %v", err)
	}
	if _, err := Parse([]byte(head + strings.Repeat(cat, MaxCategories+1) + tail)); err == nil {
		t.Fatal("65 categories parsed")
	}
	vals := func(n int) string {
		return `<Category TagName="T" Type="PERMISSIVE">` + strings.Repeat(`<GenericValue>V</GenericValue>`, n) + `</Category>`
	}
	if _, err := Parse([]byte(head + vals(MaxValues) + tail)); err != nil {
		t.Fatalf("256 values: %v", err)
	}
	if _, err := Parse([]byte(head + vals(MaxValues+1) + tail)); err == nil {
		t.Fatal("257 values parsed")
	}
	big := head + `<!--` + strings.Repeat("x", MaxSize) + `-->` + tail
	if _, err := Parse([]byte(big)); err == nil {
		t.Fatal("oversized input parsed")
	}
	deep := strings.Repeat("<x:a>", MaxDepth-1) + strings.Repeat("</x:a>", MaxDepth-1)
	ok := `<originatorConfidentialityLabel xmlns="` + NS + `" xmlns:x="urn:x">` + deep +
		`<ConfidentialityInformation><PolicyIdentifier>P</PolicyIdentifier><Classification>S</Classification></ConfidentialityInformation></originatorConfidentialityLabel>`
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
}

func TestValidateAndMarshal(t *testing.T) {
	l := exampleLabel
	l.Root = ""
	l.PrivacyMark = `quotes " and ' and tabs	and
newlines`
	l.Categories = append([]Category(nil), l.Categories...)
	l.Categories[0].URI = `urn:oid:1.2?a="b"&c`
	l.Categories[0].TagName = "  spaced\tname\n"
	l.ReviewDateTime = "2030-12-31T24:00:00Z"
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(l.Marshal())
	if err != nil {
		t.Fatalf("%v\n%s", err, l.Marshal())
	}
	l.Root = RootOriginator
	if !reflect.DeepEqual(got, l) {
		t.Fatalf("round trip:\n%+v\n%+v", got, l)
	}
	for name, bad := range map[string]func(*Label){
		"root":         func(l *Label) { l.Root = "label" },
		"class":        func(l *Label) { l.Classification = "" },
		"padded class": func(l *Label) { l.Classification = " S" },
		"no policy":    func(l *Label) { l.PolicyName, l.PolicyURI = "", "" },
		"type":         func(l *Label) { l.Categories = []Category{{TagName: "T", Type: "permissive", Values: []string{"V"}}} },
		"date":         func(l *Label) { l.CreationDateTime = "2015-08-29" },
		"control char": func(l *Label) { l.PrivacyMark = "a\x00b" },
		"long":         func(l *Label) { l.OriginatorID = strings.Repeat("a", MaxText+1) },
	} {
		m := exampleLabel
		bad(&m)
		if m.Validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

func TestOID(t *testing.T) {
	for in, want := range map[string]string{
		"urn:oid:1.3.26.1.3.1":             "1.3.26.1.3.1",
		"URN:OID:2.16.840.1.101.2.1.8.3":   "2.16.840.1.101.2.1.8.3",
		"urn:oid:2.999":                    "2.999",
		"urn:oid:1":                        "",
		"urn:oid:1.40":                     "",
		"urn:oid:3.1":                      "",
		"urn:oid:1.02":                     "",
		"urn:oid:1..2":                     "",
		"urn:oid:1.2.":                     "",
		"urn:oid:1.+2":                     "",
		"urn:oid:1.2.18446744073709551616": "",
		"urn:oid:":                         "",
		"http://example.org/1.2":           "",
		"NATO":                             "",
	} {
		if got := OID(in); got != want {
			t.Errorf("OID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDateTime(t *testing.T) {
	for _, s := range []string{
		"2015-08-29T16:15:00Z", "2015-08-29T16:15:00", "2015-08-29T16:15:00.123456+14:00",
		"-0044-03-15T12:00:00Z", "12015-01-01T00:00:00Z", "2000-02-29T00:00:00Z", "2015-12-31T24:00:00-05:30",
	} {
		if !validDateTime(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{
		"", "2015-08-29", "15-08-29T16:15:00Z", "02015-08-29T16:15:00Z", "2015-13-01T00:00:00Z",
		"1900-02-29T00:00:00Z", "2015-04-31T00:00:00Z", "2015-08-29T25:00:00Z", "2015-08-29T24:00:01Z",
		"2015-08-29T16:60:00Z", "2015-08-29T16:15:60Z", "2015-08-29T16:15:00.Z", "2015-08-29T16:15:00+15:00",
		"2015-08-29T16:15:00+14:30", "2015-08-29T16:15:00z", "2015-08-29 16:15:00Z", "2015-08-29T16:15:00+0100",
	} {
		if validDateTime(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

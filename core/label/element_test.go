package label

import (
	"errors"
	"strings"
	"testing"
)

// The XEP-0258 examples and the decoded vectors of PROTOCOLS.md §1.4.
func TestParseElementVectors(t *testing.T) {
	s := testSet(t)
	cases := []struct {
		name, xml string
		class     int
		policy    string // "" = no known policy (primary nil)
		mark      string
	}{
		{"spec example, secret under 1.1 (unknown policy) with an equivalent", `<securitylabel xmlns='urn:xmpp:sec-label:0'>
  <displaymarking fgcolor='black' bgcolor='red'>SECRET</displaymarking>
  <label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQYCAQIGASk=</esssecuritylabel></label>
  <equivalentlabel><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQoCAQQGBSsaAQMB</esssecuritylabel></equivalentlabel>
</securitylabel>`, 4, "NATO", ""},
		{"NATO secret, whitespace in base64, children reordered, no marking", `<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>
  MQoCAQQG
  BSsaAQMB
</esssecuritylabel></label></securitylabel>`, 4, "NATO", ""},
		{"privacy mark", `<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MRICAQQGBSsaAQMBDAZTRUNSRVQ=</esssecuritylabel></label><displaymarking>NATO SECRET</displaymarking></securitylabel>`, 4, "NATO", "SECRET"},
		{"STANAG 4774 XML", `<securitylabel xmlns='urn:xmpp:sec-label:0'><label><originatorConfidentialityLabel xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0"><ConfidentialityInformation><PolicyIdentifier URI="urn:oid:1.3.26.1.3.1">NATO</PolicyIdentifier><Classification>CONFIDENTIAL</Classification><Category TagName="Releasable To" Type="PERMISSIVE"><GenericValue>GBR</GenericValue></Category></ConfidentialityInformation><CreationDateTime>2015-08-29T16:15:00Z</CreationDateTime></originatorConfidentialityLabel></label></securitylabel>`, 3, "NATO", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := ParseElement([]byte(c.xml))
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Resolve(e)
			if err != nil {
				t.Fatal(err)
			}
			nato, _ := s.Policy("NATO")
			l := s.For(m, nato, nil)
			if l == nil || l.Class != c.class || l.PrivacyMark != c.mark {
				t.Fatalf("effective label %v, want class %d mark %q", l, c.class, c.mark)
			}
		})
	}
}

func TestParseElementErrors(t *testing.T) {
	const ess = `<esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQoCAQQGBSsaAQMB</esssecuritylabel>`
	for name, x := range map[string]string{
		"no label":            `<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking>X</displaymarking></securitylabel>`,
		"two labels":          `<securitylabel xmlns='urn:xmpp:sec-label:0'><label>` + ess + `</label><label/></securitylabel>`,
		"two elements":        `<securitylabel xmlns='urn:xmpp:sec-label:0'><label>` + ess + ess + `</label></securitylabel>`,
		"empty equivalent":    `<securitylabel xmlns='urn:xmpp:sec-label:0'><label/><equivalentlabel/></securitylabel>`,
		"bad base64":          `<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>!!!</esssecuritylabel></label></securitylabel>`,
		"bad colour":          `<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking bgcolor='mauve'>X</displaymarking><label/></securitylabel>`,
		"wrong root":          `<label xmlns='urn:xmpp:sec-label:0'/>`,
		"text":                `<securitylabel xmlns='urn:xmpp:sec-label:0'>hello<label/></securitylabel>`,
		"unknown child":       `<securitylabel xmlns='urn:xmpp:sec-label:0'><label/><colour/></securitylabel>`,
		"too deep":            `<securitylabel xmlns='urn:xmpp:sec-label:0'><label><a xmlns='x'>` + strings.Repeat("<a>", 20) + strings.Repeat("</a>", 21) + `</label></securitylabel>`,
		"too big":             `<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking>` + strings.Repeat("x", MaxElementSize) + `</displaymarking><label/></securitylabel>`,
		"trailing":            `<securitylabel xmlns='urn:xmpp:sec-label:0'><label/></securitylabel><x/>`,
		"markup in essb64":    `<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'><b/></esssecuritylabel></label></securitylabel>`,
		"not xml":             `<securitylabel xmlns='urn:xmpp:sec-label:0'><label>`,
		"processing instruct": `<securitylabel xmlns='urn:xmpp:sec-label:0'><?pi x?><label/></securitylabel>`,
	} {
		if _, err := ParseElement([]byte(x)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestResolveRules(t *testing.T) {
	s := testSet(t)
	nato, _ := s.Policy("NATO")
	uk, _ := s.Policy("UK")
	parse := func(x string) *Marking {
		t.Helper()
		e, err := ParseElement([]byte(x))
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Resolve(e)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Empty <label/>: the default applies.
	def := mustLabel(t, s, "RESTRICTED")
	m := parse(`<securitylabel xmlns='urn:xmpp:sec-label:0'><label/></securitylabel>`)
	if got := s.For(m, nato, def); got != def {
		t.Fatalf("empty label gave %v", got)
	}
	// A NATO label read by a UK principal is translated.
	m = parse(`<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQoCAQQGBSsaAQMB</esssecuritylabel></label></securitylabel>`)
	if got := s.For(m, uk, nil); got == nil || got.String() != "UK :: UK SECRET" {
		t.Fatalf("translation gave %v", got)
	}
	// Unknown policy only: ErrUnknownPolicy.
	e, _ := ParseElement([]byte(`<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQYCAQQGASk=</esssecuritylabel></label></securitylabel>`))
	if _, err := s.Resolve(e); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("unknown policy: %v", err)
	}
	// A classification the policy does not define: ErrUndefined (Deny).
	l, _ := nato.NewLabel(4, "", nil)
	essl := l.ESS()
	essl.Class = 77
	b64, _ := essl.Base64()
	e, _ = ParseElement([]byte(`<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>` + b64 + `</esssecuritylabel></label></securitylabel>`))
	if _, err := s.Resolve(e); !errors.Is(err, ErrUndefined) {
		t.Fatalf("undefined class: %v", err)
	}
}

// Marshal writes displaymarking, label, equivalentlabel in that order, and
// what it writes reads back as the same label, in both formats.
func TestMarshalRoundTrip(t *testing.T) {
	s := testSet(t)
	uk, _ := s.Policy("UK")
	for _, format := range []string{"ess", "nato"} {
		s.Governing.Format = format
		l := mustLabel(t, s, "SECRET; Sensitive: CRYPTO; Releasable To: GBR, USA; Administrative: STAFF; privacy mark: ops")
		eq, _ := s.Translate(mustLabel(t, s, "SECRET; Releasable To: GBR"), uk)
		b, err := l.Marshal(eq)
		if err != nil {
			t.Fatal(err)
		}
		x := string(b)
		if i, j, k := strings.Index(x, "<displaymarking"), strings.Index(x, "<label>"), strings.Index(x, "<equivalentlabel>"); !(i >= 0 && i < j && j < k) {
			t.Fatalf("%s: order wrong: %s", format, x)
		}
		e, err := ParseElement(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, x)
		}
		m, err := s.Resolve(e)
		if err != nil {
			t.Fatal(err)
		}
		got := m.Primary
		if got == nil || !Dominates(got, l) || !Dominates(l, got) || got.PrivacyMark != l.PrivacyMark {
			t.Fatalf("%s: read back %v, want %v", format, got, l)
		}
		if e.Display == nil || e.Display.BG != "red" || !strings.HasPrefix(e.Display.Text, "SECRET") {
			t.Fatalf("%s: display marking %+v", format, e.Display)
		}
		if len(m.Equivalents) != 1 || m.Equivalents[0].Policy != uk {
			t.Fatalf("%s: equivalents %v", format, m.Equivalents)
		}
	}
}

func FuzzParseElement(f *testing.F) {
	f.Add([]byte(`<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking fgcolor='black' bgcolor='red'>SECRET</displaymarking><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQoCAQQGBSsaAQMB</esssecuritylabel></label></securitylabel>`))
	f.Add([]byte(`<securitylabel xmlns='urn:xmpp:sec-label:0'><label/><equivalentlabel><x xmlns='y'/></equivalentlabel></securitylabel>`))
	f.Add([]byte(`<securitylabel xmlns='urn:xmpp:sec-label:0'><label><originatorConfidentialityLabel xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0"><ConfidentialityInformation><PolicyIdentifier URI="urn:oid:1.3.26.1.3.1">NATO</PolicyIdentifier><Classification>SECRET</Classification></ConfidentialityInformation></originatorConfidentialityLabel></label></securitylabel>`))
	s := testSet(f)
	nato, _ := s.Policy("NATO")
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseElement(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			return
		}
		m, err := s.Resolve(e)
		if err != nil {
			return
		}
		// Whatever resolves re-encodes and reads back as the same label.
		if l := s.For(m, nato, nil); l != nil {
			out, err := l.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			e2, err := ParseElement(out)
			if err != nil {
				t.Fatalf("re-encoded label does not parse: %v\n%s", err, out)
			}
			m2, err := s.Resolve(e2)
			if err != nil || m2.Primary == nil || !Dominates(m2.Primary, l) || !Dominates(l, m2.Primary) {
				t.Fatalf("re-encoded label reads back as %v (%v), want %v", m2, err, l)
			}
		}
	})
}

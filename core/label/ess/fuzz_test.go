package ess

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, v := range specVectors {
		b, _ := base64.RawStdEncoding.DecodeString(strings.TrimRight(v.b64, "="))
		f.Add(b)
	}
	for _, c := range []Category{
		{Type: TypeRestrictive, TagName: "1.2", Values: []int{0, 9}},
		{Type: TypeEnumeratedPermissive, TagName: "1.2", Values: []int{1, 300}},
		{Type: TypeInformative, TagName: "1.2", Values: []int{2}, Bitmap: true},
		{Type: "1.2.3", Raw: []byte{5, 0}},
	} {
		b, _ := (Label{Policy: "1.1", Categories: []Category{c}}).Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Decode(b)
		if err != nil {
			return
		}
		checkLabelRoundTrip(t, l)
	})
}

// checkLabelRoundTrip asserts that l re-encodes to DER that decodes to l and
// that the DER is a fixed point.
func checkLabelRoundTrip(t *testing.T, l Label) {
	t.Helper()
	der, err := l.Marshal()
	if err != nil {
		// Re-encoding in the standard form can grow a label that arrived
		// in a compact non-standard form; nothing else may fail.
		if strings.Contains(err.Error(), "encodes to") {
			return
		}
		t.Fatalf("Marshal(%+v): %v", l, err)
	}
	l2, err := Decode(der)
	if err != nil {
		t.Fatalf("Decode(Marshal) %x: %v", der, err)
	}
	if !reflect.DeepEqual(l, l2) {
		t.Fatalf("round trip changed the label:\n%+v\n%+v", l, l2)
	}
	der2, err := l2.Marshal()
	if err != nil || !bytes.Equal(der, der2) {
		t.Fatalf("DER not a fixed point (%v): %x vs %x", err, der, der2)
	}
}

func FuzzDecodeClearance(f *testing.F) {
	for _, h := range []string{
		"3003060129",
		"3006060129030100",
		"3007060129030203" + "78",
		t_("30", "800129", "81020110", t_("a2", t_("30", "80022a03", "a1020500"))),
	} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeClearance(b)
		if err != nil {
			return
		}
		der, err := c.Marshal()
		if err != nil {
			if strings.Contains(err.Error(), "encodes to") {
				return
			}
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		c2, err := DecodeClearance(der)
		if err != nil {
			t.Fatalf("DecodeClearance(Marshal) %x: %v", der, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the clearance:\n%+v\n%+v", c, c2)
		}
	})
}

func FuzzDecodeBase64(f *testing.F) {
	for _, v := range specVectors {
		f.Add(v.b64)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := DecodeBase64(s)
		if err != nil {
			return
		}
		checkLabelRoundTrip(t, l)
	})
}

func BenchmarkDecode(b *testing.B) {
	l := Label{
		Policy: "1.3.26.1.3.1", HasClass: true, Class: 4, PrivacyMark: "NATO SECRET",
		Categories: []Category{
			{Type: TypePermissive, TagName: "1.3.26.1.3.1.1", Values: []int{1, 2, 3, 17, 40}},
			{Type: TypeRestrictive, TagName: "1.3.26.1.3.1.2", Values: []int{0}},
			{Type: TypeEnumeratedPermissive, TagName: "1.3.26.1.3.1.3", Values: []int{5, 6, 900}},
			{Type: TypeInformative, TagName: "1.3.26.1.3.1.4", Values: []int{1}},
		},
	}
	der, err := l.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(der); err != nil {
			b.Fatal(err)
		}
	}
}

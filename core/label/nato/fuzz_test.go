package nato

import (
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte(spiffingFile))
	f.Add([]byte(`<n:SuccessorConfidentialityLabel xmlns:n="` + NS + `" ReviewDateTime="2030-01-01T00:00:00Z"><n:ConfidentialityInformation><n:PolicyIdentifier>P</n:PolicyIdentifier><n:Classification>S</n:Classification><n:PrivacyMark>M</n:PrivacyMark></n:ConfidentialityInformation><n:OriginatorID IDType="t">o</n:OriginatorID></n:SuccessorConfidentialityLabel>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("Parse returned an invalid label: %v", err)
		}
		m := l.Marshal()
		l2, err := Parse(m)
		if err != nil {
			t.Fatalf("Parse(Marshal) %s: %v", m, err)
		}
		if !reflect.DeepEqual(l, l2) {
			t.Fatalf("round trip changed the label:\n%+v\n%+v", l, l2)
		}
	})
}

func FuzzParseClearance(f *testing.F) {
	f.Add([]byte(clearanceExample))
	f.Add([]byte(`<c:ConfidentialityClearance xmlns:c="` + NSClearance + `"><c:PolicyIdentifier URL="urn:oid:1.2">P</c:PolicyIdentifier><c:ClassificationList/></c:ConfidentialityClearance>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseClearance(b)
		if err != nil {
			return
		}
		m := c.Marshal()
		c2, err := ParseClearance(m)
		if err != nil {
			t.Fatalf("ParseClearance(Marshal) %s: %v", m, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the clearance:\n%+v\n%+v", c, c2)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	in := []byte(example)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

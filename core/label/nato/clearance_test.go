package nato

import (
	"reflect"
	"strings"
	"testing"
)

// clearanceExample is the SPIFFING-style clearance from PROTOCOLS §1.5.
const clearanceExample = `<ConfidentialityClearance xmlns="urn:nato:stanag:4774:confidentialityclearance:1:0">
  <PolicyIdentifier xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0" URI="urn:oid:1.3.26.1.3.1">NATO</PolicyIdentifier>
  <ClassificationList>
    <Classification xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0">UNCLASSIFIED</Classification>
    <Classification xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0">SECRET</Classification>
  </ClassificationList>
  <Category xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0" TagName="Releasable To" Type="PERMISSIVE">
    <GenericValue>GBR</GenericValue>
  </Category>
</ConfidentialityClearance>`

var exampleClearance = Clearance{
	PolicyName:      "NATO",
	PolicyURI:       "urn:oid:1.3.26.1.3.1",
	Classifications: []string{"UNCLASSIFIED", "SECRET"},
	Categories:      []Category{{TagName: "Releasable To", Type: Permissive, Values: []string{"GBR"}}},
}

func TestParseClearanceExample(t *testing.T) {
	got, err := ParseClearance([]byte(clearanceExample))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exampleClearance) {
		t.Fatalf("got %+v", got)
	}
	compact := strings.NewReplacer("\n", "", "  ", "").Replace(clearanceExample)
	if m := string(got.Marshal()); m != compact {
		t.Fatalf("Marshal:\n%s\nwant\n%s", m, compact)
	}
}

func TestParseClearanceVariants(t *testing.T) {
	// Children in the clearance namespace, no classifications, URL= typo.
	in := `<c:ConfidentialityClearance xmlns:c="` + NSClearance + `"><c:PolicyIdentifier URL="urn:oid:1.2">P</c:PolicyIdentifier><c:ClassificationList/></c:ConfidentialityClearance>`
	got, err := ParseClearance([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Clearance{PolicyName: "P", PolicyURI: "urn:oid:1.2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if again, err := ParseClearance(got.Marshal()); err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("round trip: %v %+v", err, again)
	}
}

func TestParseClearanceErrors(t *testing.T) {
	root := func(s string) string {
		return `<ConfidentialityClearance xmlns="` + NSClearance + `">` + s + `</ConfidentialityClearance>`
	}
	for name, in := range map[string]string{
		"label root":      `<originatorConfidentialityLabel xmlns="` + NS + `"/>`,
		"root in NS":      `<ConfidentialityClearance xmlns="` + NS + `"/>`,
		"no policy":       root(`<ClassificationList/>`),
		"two policies":    root(`<PolicyIdentifier>P</PolicyIdentifier><PolicyIdentifier>P</PolicyIdentifier>`),
		"two lists":       root(`<PolicyIdentifier>P</PolicyIdentifier><ClassificationList/><ClassificationList/>`),
		"unknown":         root(`<PolicyIdentifier>P</PolicyIdentifier><Level>1</Level>`),
		"list other":      root(`<PolicyIdentifier>P</PolicyIdentifier><ClassificationList><Level>1</Level></ClassificationList>`),
		"empty class":     root(`<PolicyIdentifier>P</PolicyIdentifier><ClassificationList><Classification/></ClassificationList>`),
		"bad category":    root(`<PolicyIdentifier>P</PolicyIdentifier><Category TagName="T" Type="X"><GenericValue>V</GenericValue></Category>`),
		"too many":        root(`<PolicyIdentifier>P</PolicyIdentifier><ClassificationList>` + strings.Repeat(`<Classification>C</Classification>`, MaxValues+1) + `</ClassificationList>`),
		"oversized input": root(`<PolicyIdentifier>P</PolicyIdentifier><!--` + strings.Repeat("x", MaxSize) + `-->`),
	} {
		if c, err := ParseClearance([]byte(in)); err == nil {
			t.Errorf("%s: parsed %+v, want error", name, c)
		} else if !strings.HasPrefix(err.Error(), "nato: ") {
			t.Errorf("%s: error %q lacks package prefix", name, err)
		}
	}
}

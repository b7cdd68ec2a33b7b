// Package labeltest provides the NATO-like policy that tests of label enforcement share.
package labeltest

import (
	"testing"

	"github.com/aldis-im/aldis/core/label"
)

// ESS-encoded labels of the policy, as clients send them.
const (
	SecretESS       = "MQoCAQQGBSsaAQMB" // SECRET
	ConfidentialESS = "MQoCAQMGBSsaAQMB" // CONFIDENTIAL
)

// Element is a <securitylabel/> carrying the ESS label b64.
func Element(b64 string) string {
	return `<securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking>MARK</displaymarking><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>` +
		b64 + `</esssecuritylabel></label></securitylabel>`
}

// Spec is the policy: NATO (1.3.26.1.3.1) with UNCLASSIFIED..TOP SECRET,
// a restrictive "Sensitive", a permissive "Releasable To" and an
// informative "Administrative" tag set, UNCLASSIFIED as the default label
// and clearance, and a catalog of four items.
func Spec() label.FileSpec {
	return label.FileSpec{Policies: []label.PolicySpec{{
		Name: "NATO", ID: "1.3.26.1.3.1",
		DefaultLabel: "UNCLASSIFIED", DefaultClearance: "UNCLASSIFIED",
		Classifications: []label.ClassSpec{
			{Name: "UNCLASSIFIED", Value: 1, Marking: "NATO UNCLASSIFIED"},
			{Name: "RESTRICTED", Value: 2},
			{Name: "CONFIDENTIAL", Value: 3},
			{Name: "SECRET", Value: 4, Marking: "NATO SECRET", FG: "white", BG: "red"},
			{Name: "TOP SECRET", Value: 5},
		},
		TagSets: []label.TagSetSpec{
			{Name: "Sensitive", ID: "1.3.26.1.3.1.1", Type: "restrictive", Values: []label.ValueSpec{{Name: "CRYPTO", Value: 1}, {Name: "ATOMAL", Value: 2}}},
			{Name: "Releasable To", ID: "1.3.26.1.3.1.2", Type: "permissive", Enumerated: true, Values: []label.ValueSpec{{Name: "GBR", Value: 1}, {Name: "USA", Value: 2}, {Name: "FRA", Value: 3}}},
			{Name: "Administrative", ID: "1.3.26.1.3.1.3", Type: "informative", Values: []label.ValueSpec{{Name: "STAFF", Value: 1}}},
		},
		Catalog: []label.CatalogSpec{
			{Selector: "UNCLASSIFIED", Label: "UNCLASSIFIED", Default: true},
			{Selector: "Classified|CONFIDENTIAL", Label: "CONFIDENTIAL"},
			{Selector: "Classified|SECRET", Label: "SECRET"},
			{Selector: "No label"},
		},
	}}}
}

// Set builds Spec.
func Set(t testing.TB) *label.Set {
	t.Helper()
	s, errs := label.Build(Spec())
	if errs != nil {
		t.Fatalf("labeltest policy: %v", errs)
	}
	return s
}

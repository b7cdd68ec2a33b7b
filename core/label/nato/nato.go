// Package nato parses and writes STANAG 4774 confidentiality labels and clearances in XML.
package nato

import (
	"strconv"
	"strings"
)

// Namespaces of ADatP-4774 labels and of SPIFFING-style clearances.
const (
	NS          = "urn:nato:stanag:4774:confidentialitymetadatalabel:1:0"
	NSClearance = "urn:nato:stanag:4774:confidentialityclearance:1:0"
)

// Limits on hostile input.
const (
	MaxSize       = 16 << 10 // bytes of serialised XML
	MaxDepth      = 16       // element nesting, foreign elements included
	MaxCategories = 64
	MaxValues     = 256  // GenericValues in one Category; Classifications in a clearance
	MaxText       = 1024 // bytes of one text field or attribute value
)

// Root element names of a label, in the lower-camel form that is emitted.
const (
	RootOriginator  = "originatorConfidentialityLabel"
	RootAlternative = "alternativeConfidentialityLabel"
	RootSuccessor   = "successorConfidentialityLabel"
)

// Category types.
const (
	Permissive  = "PERMISSIVE"
	Restrictive = "RESTRICTIVE"
	Informative = "INFORMATIVE"
)

// Label is a STANAG 4774 confidentiality label.
type Label struct {
	Root             string // RootOriginator (default when empty), RootAlternative or RootSuccessor
	PolicyName       string // PolicyIdentifier text, e.g. "NATO"
	PolicyURI        string // PolicyIdentifier URI attribute, e.g. "urn:oid:1.3.26.1.3.1"
	Classification   string
	PrivacyMark      string
	Categories       []Category
	CreationDateTime string // xs:dateTime, kept as text
	ReviewDateTime   string // xs:dateTime root attribute, kept as text
	OriginatorID     string
	OriginatorIDType string // OriginatorID's IDType attribute, e.g. "rfc822Name"
}

// Category is one Category element.
type Category struct {
	TagName string
	Type    string   // Permissive, Restrictive or Informative
	URI     string   // optional
	Values  []string // GenericValue texts, in document order
}

// Clearance is a ConfidentialityClearance.
type Clearance struct {
	PolicyName, PolicyURI string
	Classifications       []string
	Categories            []Category
}

// OID returns the dotted OID of a "urn:oid:…" URI ("" if it is not one).
func OID(uri string) string {
	const prefix = "urn:oid:"
	// RFC 8141: the "urn" scheme and the NID are case-insensitive.
	if len(uri) <= len(prefix) || !strings.EqualFold(uri[:len(prefix)], prefix) {
		return ""
	}
	s := uri[len(prefix):]
	arcs := strings.Split(s, ".")
	if len(arcs) < 2 {
		return ""
	}
	for _, a := range arcs {
		if a == "" || len(a) > 1 && a[0] == '0' || a[0] < '0' || a[0] > '9' {
			return ""
		}
		if _, err := strconv.ParseUint(a, 10, 64); err != nil {
			return ""
		}
	}
	second, _ := strconv.ParseUint(arcs[1], 10, 64)
	switch {
	case arcs[0] == "2":
	case arcs[0] == "0" || arcs[0] == "1":
		if second >= 40 {
			return ""
		}
	default:
		return ""
	}
	return s
}

// Package ess encodes and decodes RFC 2634 ESSSecurityLabel and RFC 5755 Clearance values in BER and DER.
package ess

// Limits on hostile input. A label may ride on every stanza, so each bound
// keeps both decoding time and the decoded value small.
const (
	MaxSize       = 16 << 10  // encoded bytes of a label or clearance
	MaxCategories = 64        // SecurityCategories ::= SET SIZE (1..64)
	MaxValues     = 256       // attribute numbers in one category
	MaxAttribute  = 1<<16 - 1 // largest attribute number (bit position or INTEGER)
	MaxClass      = 256       // SecurityClassification (0..ub-integer-options)
	MaxPString    = 128       // ub-privacy-mark-length for the PrintableString form
)

// Category value syntaxes from ACP 145(A), the NATO tag-set forms.
const (
	TypeRestrictive           = "2.16.840.1.101.2.1.8.3.0" // RestrictiveTag: SEQUENCE{tagName OID, attributeFlags BIT STRING}
	TypeEnumeratedPermissive  = "2.16.840.1.101.2.1.8.3.1" // EnumeratedTag: SEQUENCE{tagName OID, attributeList SET OF INTEGER}
	TypePermissive            = "2.16.840.1.101.2.1.8.3.2" // PermissiveTag: SEQUENCE{tagName OID, attributeFlags BIT STRING}
	TypeInformative           = "2.16.840.1.101.2.1.8.3.3" // InformativeTag: SEQUENCE{tagName OID, field CHOICE{bitSetAttributes BIT STRING, securityAttributes SET OF INTEGER}}
	TypeEnumeratedRestrictive = "2.16.840.1.101.2.1.8.3.4" // EnumeratedTag
)

// Label is a decoded ESSSecurityLabel.
type Label struct {
	Policy        string // dotted OID of security-policy-identifier; "" when absent
	HasClass      bool
	Class         int    // security-classification, 0..256
	PrivacyMark   string // "" when absent
	PrintableMark bool   // privacy mark was/should be a PrintableString (pString) rather than UTF8String
	Categories    []Category
}

// Category is one SecurityCategory { type [0] OID, value [1] ANY }.
type Category struct {
	Type    string // dotted OID of the category type
	TagName string // dotted OID tagName, for the five types above
	Values  []int  // attribute numbers: set bits of a BIT STRING (bit 0 = first bit) or the INTEGERs of a SET OF INTEGER; sorted ascending, no duplicates
	Bitmap  bool   // for TypeInformative: true when the field used bitSetAttributes
	// Raw is, for unknown types only, the contents of the [1] wrapper: in the
	// standard form the complete encoding of the value. It is kept and
	// re-emitted verbatim.
	Raw []byte
}

// Clearance is a decoded RFC 5755 Clearance.
type Clearance struct {
	Policy     string // dotted OID of policyId
	Classes    []int  // classList BIT STRING positions (unmarked=0 .. topSecret=5, any up to 256); sorted
	Categories []Category
}

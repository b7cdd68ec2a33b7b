package nato

import (
	"bytes"
	"encoding/xml"
)

// Marshal writes l in canonical form: no insignificant whitespace, NS as
// the default namespace on the root and the element order of the ADatP-4774
// example. An empty or unknown Root is written as RootOriginator. Marshal
// does not validate; see Validate for the labels it round-trips.
func (l Label) Marshal() []byte {
	root := rootName(l.Root)
	if root == "" {
		root = RootOriginator
	}
	var b bytes.Buffer
	b.WriteString("<" + root + ` xmlns="` + NS + `"`)
	writeAttr(&b, "ReviewDateTime", l.ReviewDateTime)
	b.WriteString("><ConfidentialityInformation>")
	writePolicy(&b, "", l.PolicyName, l.PolicyURI)
	writeElem(&b, "Classification", "", l.Classification)
	if l.PrivacyMark != "" {
		writeElem(&b, "PrivacyMark", "", l.PrivacyMark)
	}
	for _, c := range l.Categories {
		writeCategory(&b, "", c)
	}
	b.WriteString("</ConfidentialityInformation>")
	if l.CreationDateTime != "" {
		writeElem(&b, "CreationDateTime", "", l.CreationDateTime)
	}
	if l.OriginatorID != "" || l.OriginatorIDType != "" {
		b.WriteString("<OriginatorID")
		writeAttr(&b, "IDType", l.OriginatorIDType)
		b.WriteString(">")
		escape(&b, l.OriginatorID)
		b.WriteString("</OriginatorID>")
	}
	b.WriteString("</" + root + ">")
	return b.Bytes()
}

// Marshal writes c in the shape SPIFFING reads: the root in NSClearance and
// the label elements in NS.
func (c Clearance) Marshal() []byte {
	const xmlns = ` xmlns="` + NS + `"`
	var b bytes.Buffer
	b.WriteString(`<ConfidentialityClearance xmlns="` + NSClearance + `">`)
	writePolicy(&b, xmlns, c.PolicyName, c.PolicyURI)
	if len(c.Classifications) > 0 {
		b.WriteString("<ClassificationList>")
		for _, v := range c.Classifications {
			writeElem(&b, "Classification", xmlns, v)
		}
		b.WriteString("</ClassificationList>")
	}
	for _, cat := range c.Categories {
		writeCategory(&b, xmlns, cat)
	}
	b.WriteString("</ConfidentialityClearance>")
	return b.Bytes()
}

func writePolicy(b *bytes.Buffer, xmlns, name, uri string) {
	b.WriteString("<PolicyIdentifier" + xmlns)
	writeAttr(b, "URI", uri)
	b.WriteString(">")
	escape(b, name)
	b.WriteString("</PolicyIdentifier>")
}

func writeCategory(b *bytes.Buffer, xmlns string, c Category) {
	b.WriteString("<Category" + xmlns)
	// TagName and Type are required, so they are written even when empty.
	b.WriteString(` TagName="`)
	escape(b, c.TagName)
	b.WriteString(`" Type="`)
	escape(b, c.Type)
	b.WriteString(`"`)
	writeAttr(b, "URI", c.URI)
	b.WriteString(">")
	for _, v := range c.Values {
		writeElem(b, "GenericValue", "", v)
	}
	b.WriteString("</Category>")
}

// writeElem writes a text-only element.
func writeElem(b *bytes.Buffer, name, xmlns, text string) {
	b.WriteString("<" + name + xmlns + ">")
	escape(b, text)
	b.WriteString("</" + name + ">")
}

// writeAttr writes an optional attribute, omitting it when empty.
func writeAttr(b *bytes.Buffer, name, v string) {
	if v == "" {
		return
	}
	b.WriteString(" " + name + `="`)
	escape(b, v)
	b.WriteString(`"`)
}

// escape writes s as XML text. xml.EscapeText also escapes quotes and
// tab, CR and LF, so its output is safe in attribute values and keeps their
// whitespace from attribute-value normalisation.
func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // bytes.Buffer writes never fail
}

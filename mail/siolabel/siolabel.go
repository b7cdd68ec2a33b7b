// Package siolabel reads and writes RFC 7444 SIO-Label header fields and maps them to and from XEP-0258 security labels.
package siolabel

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/label/nato"
)

// Header is the name of the header field.
const Header = "SIO-Label"

// Label types (the type parameter).
const (
	TypeESS  = ":ess"  // an ESS security label (RFC 2634), BER
	TypeXML  = ":xml"  // an XML label: a STANAG 4774 confidentiality label
	TypeX411 = ":x411" // an X.411 security label, BER
)

// Limits on what is read.
const (
	// MaxValue bounds a header field value.
	MaxValue = 16 << 10
	// MaxMarking bounds a display marking, as XEP-0258 elements are.
	MaxMarking = 1024
)

// ErrMalformed is returned for a header field that breaks RFC 7444.
var ErrMalformed = errors.New("malformed SIO-Label")

// Label is the content of an SIO-Label header field.
type Label struct {
	Marking string // display marking; may be the only parameter
	FG, BG  string // display colours: CSS names or #rrggbb
	Type    string // TypeESS, TypeXML, TypeX411 or another; "" when there is no Label
	// Label is the encoded label in canonical base64 (standard alphabet,
	// padded, no whitespace): the bytes are carried, never re-encoded, so
	// an ESS label crosses XMPP and mail byte for byte.
	Label string
}

// Bytes returns the decoded label.
func (l Label) Bytes() ([]byte, error) {
	return base64.StdEncoding.DecodeString(l.Label)
}

// Parse reads a header field value (unfolded or not): MIME-style
// parameters with RFC 2231 continuations and charset encoding. Each
// parameter may appear at most once, label needs type, and unknown
// parameters are ignored.
func Parse(value string) (Label, error) {
	if len(value) > MaxValue {
		return Label{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxValue)
	}
	value = strings.NewReplacer("\r", "", "\n", "").Replace(value)
	value = strings.TrimSpace(value)
	if value == "" {
		return Label{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	// The value is a MIME parameter list: borrow the media type parser,
	// which does quoting, RFC 2231 continuations and charsets, and refuses
	// duplicates.
	_, params, err := mime.ParseMediaType("x/x; " + value)
	if err != nil {
		return Label{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	l := Label{
		Marking: params["marking"],
		FG:      params["fgcolor"],
		BG:      params["bgcolor"],
		Type:    params["type"],
	}
	if !utf8.ValidString(l.Marking) || len(l.Marking) > MaxMarking || strings.ContainsFunc(l.Marking, unicode.IsControl) {
		return Label{}, fmt.Errorf("%w: marking is not printable UTF-8 of at most %d bytes", ErrMalformed, MaxMarking)
	}
	for _, c := range []string{l.FG, l.BG} {
		if c != "" && !label.ValidColour(c) {
			return Label{}, fmt.Errorf("%w: colour %q", ErrMalformed, c)
		}
	}
	if len(l.Type) > 64 || !isPlain(l.Type) || strings.ContainsAny(l.Type, " \t\"\\") {
		return Label{}, fmt.Errorf("%w: type %q", ErrMalformed, l.Type)
	}
	if raw, ok := params["label"]; ok {
		if l.Type == "" {
			return Label{}, fmt.Errorf("%w: label without type", ErrMalformed)
		}
		raw = strings.Join(strings.Fields(raw), "")
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil || len(b) == 0 {
			return Label{}, fmt.Errorf("%w: label is not base64", ErrMalformed)
		}
		l.Label = base64.StdEncoding.EncodeToString(b)
	} else if l.Type != "" {
		return Label{}, fmt.Errorf("%w: type without label", ErrMalformed)
	}
	if l.Marking == "" && l.Label == "" {
		return Label{}, fmt.Errorf("%w: neither marking nor label", ErrMalformed)
	}
	return l, nil
}

// lineMax is the RFC 5322 recommended line length.
const lineMax = 78

// Format returns the header field, "SIO-Label: ..." folded into lines of
// at most 78 characters joined by CRLF and a space, without a final CRLF.
// Parameters too long for a line are split into RFC 2231 continuations;
// a non-ASCII marking is written in RFC 2231 UTF-8 form.
func (l Label) Format() string {
	var params []string
	if l.Marking != "" {
		params = append(params, param("marking", l.Marking)...)
	}
	if l.FG != "" {
		params = append(params, param("fgcolor", strings.ToLower(l.FG))...)
	}
	if l.BG != "" {
		params = append(params, param("bgcolor", strings.ToLower(l.BG))...)
	}
	if l.Label != "" {
		params = append(params, param("type", l.Type)...)
		params = append(params, param("label", l.Label)...)
	}
	var b strings.Builder
	b.WriteString(Header + ":")
	col := len(Header) + 1
	for i, p := range params {
		if i < len(params)-1 {
			p += ";"
		}
		if col+1+len(p) > lineMax {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(p)
		col += 1 + len(p)
	}
	return b.String()
}

// chunk is the longest value segment of a continuation; with a name such as
// "label*12=" and the quotes it stays within a 78-character line.
const chunk = 60

// param renders one parameter as one or more name=value items.
func param(name, v string) []string {
	if isPlain(v) {
		q := quote(v)
		if len(name)+1+len(q)+2 <= lineMax {
			return []string{name + "=" + q}
		}
		var out []string
		for i := 0; len(v) > 0; i++ {
			n := min(chunk, len(v))
			out = append(out, name+"*"+strconv.Itoa(i)+"="+quote(v[:n]))
			v = v[n:]
		}
		return out
	}
	enc := "utf-8''" + pctEncode(v)
	if len(name)+2+len(enc)+2 <= lineMax {
		return []string{name + "*=" + enc}
	}
	var out []string
	for i := 0; len(enc) > 0; i++ {
		n := min(chunk, len(enc))
		// Never split a %XX triplet.
		if k := strings.LastIndexByte(enc[:n], '%'); k >= 0 && k > n-3 && n < len(enc) {
			n = k
		}
		out = append(out, name+"*"+strconv.Itoa(i)+"*="+enc[:n])
		enc = enc[n:]
	}
	return out
}

// isPlain reports whether v can be a quoted-string: printable ASCII.
func isPlain(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// pctEncode encodes v for an RFC 2231 extended value: attribute-chars
// stay, everything else is %XX.
func pctEncode(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c > 0x20 && c < 0x7f && !strings.ContainsRune(`*'%()<>@,;:\"/[]?=`, rune(c)) {
			b.WriteByte(c)
		} else {
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// XEP-0258 element namespaces.
const (
	nsSecLabel = label.NS
	nsESS      = label.NSESS
)

// Element returns the XEP-0258 <securitylabel/> element for l (PROTOCOLS
// §5.2, email to XMPP): the marking and colours as the display marking, an
// ESS label as <esssecuritylabel> with the same base64 text, an XML label
// (which must be a STANAG 4774 confidentiality label) as itself. An X.411
// or unknown label type gives a display marking only (ok false: the label
// itself could not be carried), as does a marking without a label.
func (l Label) Element() (elem []byte, ok bool, err error) {
	var b strings.Builder
	b.WriteString(`<securitylabel xmlns='` + nsSecLabel + `'>`)
	if l.Marking != "" {
		b.WriteString(`<displaymarking`)
		if l.FG != "" {
			b.WriteString(` fgcolor='` + escape(strings.ToLower(l.FG)) + `'`)
		}
		if l.BG != "" {
			b.WriteString(` bgcolor='` + escape(strings.ToLower(l.BG)) + `'`)
		}
		b.WriteString(`>` + escape(l.Marking) + `</displaymarking>`)
	}
	ok = true
	switch {
	case l.Label == "":
		b.WriteString(`<label/>`)
	case l.Type == TypeESS:
		b.WriteString(`<label><esssecuritylabel xmlns='` + nsESS + `'>` + l.Label + `</esssecuritylabel></label>`)
	case l.Type == TypeXML:
		raw, err := l.Bytes()
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		nl, err := nato.Parse(raw)
		if err != nil {
			return nil, false, fmt.Errorf("%w: the XML label is not a STANAG 4774 label: %v", ErrMalformed, err)
		}
		b.WriteString(`<label>`)
		b.Write(nl.Marshal())
		b.WriteString(`</label>`)
	default:
		b.WriteString(`<label/>`)
		ok = false
	}
	b.WriteString(`</securitylabel>`)
	out := []byte(b.String())
	// What we built must be what the XMPP side accepts.
	if _, err := label.ParseElement(out); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return out, ok, nil
}

func escape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// FromElement maps a serialised XEP-0258 <securitylabel/> to a Label
// (PROTOCOLS §5.2, XMPP to email). An ESS label keeps its base64 text
// (whitespace removed); a STANAG 4774 label is carried as type ":xml".
// Equivalent labels have no place in the header and are left out. A label
// in another format gives the marking only, with ok false.
func FromElement(elem []byte) (l Label, ok bool, err error) {
	e, err := label.ParseElement(elem)
	if err != nil {
		return Label{}, false, err
	}
	if e.Display != nil {
		l.Marking, l.FG, l.BG = e.Display.Text, e.Display.FG, e.Display.BG
	}
	ok = true
	switch {
	case e.Label == nil:
	case e.Label.ESS != nil:
		text, err := essText(elem)
		if err != nil {
			return Label{}, false, err
		}
		l.Type, l.Label = TypeESS, text
	case e.Label.NATO != nil:
		l.Type, l.Label = TypeXML, base64.StdEncoding.EncodeToString(e.Label.NATO.Marshal())
	default:
		ok = false
	}
	if l.Marking == "" && l.Label == "" {
		return Label{}, ok, fmt.Errorf("%w: neither a display marking nor a label to carry", ErrMalformed)
	}
	return l, ok, nil
}

// essText returns the base64 text of the <esssecuritylabel> in <label>
// (not in an <equivalentlabel>), whitespace removed.
func essText(elem []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(elem))
	inLabel, inESS := false, false
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == nsSecLabel && t.Name.Local == "label" {
				inLabel = true
			} else if inLabel && t.Name.Space == nsESS && t.Name.Local == "esssecuritylabel" {
				inESS = true
			}
		case xml.EndElement:
			if inESS {
				return strings.Join(strings.Fields(text.String()), ""), nil
			}
			if t.Name.Local == "label" {
				inLabel = false
			}
		case xml.CharData:
			if inESS {
				text.Write(t)
			}
		}
	}
	return "", fmt.Errorf("%w: no esssecuritylabel", ErrMalformed)
}

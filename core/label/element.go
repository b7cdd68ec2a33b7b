package label

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aldis-im/aldis/core/label/ess"
	"github.com/aldis-im/aldis/core/label/nato"
)

// XEP-0258 namespaces.
const (
	NS        = "urn:xmpp:sec-label:0"
	NSCatalog = "urn:xmpp:sec-label:catalog:2"
	NSESS     = "urn:xmpp:sec-label:ess:0"
)

// Limits on a <securitylabel> subtree (PROTOCOLS.md §1.3).
const (
	MaxElementSize  = 16 << 10
	maxDepth        = 16
	maxEquivalents  = 16
	maxMarkingBytes = 1024
)

// Errors of ParseElement and Set.Resolve; test with errors.Is.
var (
	// ErrMalformed: the element breaks XEP-0258's structure or a label's encoding.
	ErrMalformed = errors.New("malformed security label")
	// ErrUnknownPolicy: no label in the element is under a known policy.
	ErrUnknownPolicy = errors.New("security label under an unknown policy")
	// ErrUndefined: the label uses a classification or category its policy
	// does not define; the decision for it is Deny.
	ErrUndefined = errors.New("security label value not defined by its policy")
)

// DisplayMarking is the text clients show for a label.
type DisplayMarking struct {
	Text   string
	FG, BG string // empty: XEP-0258's defaults, black on white
}

// Encoded is one label as a stanza carries it: ESS, STANAG 4774 XML, or
// another format the server keeps but cannot read.
type Encoded struct {
	ESS   *ess.Label
	NATO  *nato.Label
	Other []byte // the raw XML of a format the server does not know
}

// Element is a parsed <securitylabel/>.
type Element struct {
	Display     *DisplayMarking
	Label       *Encoded // nil for an empty <label/>: "use the default"
	Equivalents []Encoded
}

// ParseElement reads a serialised <securitylabel xmlns='urn:xmpp:sec-label:0'>
// element. Children may come in any order and the display marking may be
// missing; anything else outside the schema is ErrMalformed.
func ParseElement(b []byte) (*Element, error) {
	if len(b) > MaxElementSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxElementSize)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	start, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	if start.Name.Space != NS || start.Name.Local != "securitylabel" {
		return nil, fmt.Errorf("%w: root is {%s}%s", ErrMalformed, start.Name.Space, start.Name.Local)
	}
	e := &Element{}
	labels := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if labels != 1 {
				return nil, fmt.Errorf("%w: %d <label> elements, want 1", ErrMalformed, labels)
			}
			if _, err := d.Token(); err != io.EOF {
				return nil, fmt.Errorf("%w: data after the element", ErrMalformed)
			}
			return e, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text in <securitylabel>", ErrMalformed)
			}
		case xml.StartElement:
			if t.Name.Space != NS {
				return nil, fmt.Errorf("%w: unexpected {%s}%s", ErrMalformed, t.Name.Space, t.Name.Local)
			}
			switch t.Name.Local {
			case "displaymarking":
				if e.Display != nil {
					return nil, fmt.Errorf("%w: two display markings", ErrMalformed)
				}
				dm, err := displayMarking(d, t)
				if err != nil {
					return nil, err
				}
				e.Display = dm
			case "label":
				labels++
				enc, err := labelContent(d, b, true)
				if err != nil {
					return nil, err
				}
				e.Label = enc
			case "equivalentlabel":
				if len(e.Equivalents) == maxEquivalents {
					return nil, fmt.Errorf("%w: more than %d equivalent labels", ErrMalformed, maxEquivalents)
				}
				enc, err := labelContent(d, b, false)
				if err != nil {
					return nil, err
				}
				e.Equivalents = append(e.Equivalents, *enc)
			default:
				return nil, fmt.Errorf("%w: unexpected <%s>", ErrMalformed, t.Name.Local)
			}
		default:
			// Comments and processing instructions have no place in a stanza.
			return nil, fmt.Errorf("%w: unexpected %T", ErrMalformed, tok)
		}
	}
}

func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, fmt.Errorf("%w: text outside the element", ErrMalformed)
			}
		default:
			return xml.StartElement{}, fmt.Errorf("%w: unexpected %T", ErrMalformed, tok)
		}
	}
}

func displayMarking(d *xml.Decoder, start xml.StartElement) (*DisplayMarking, error) {
	dm := &DisplayMarking{}
	for _, a := range start.Attr {
		switch {
		case a.Name.Space != "":
		case a.Name.Local == "fgcolor":
			dm.FG = a.Value
		case a.Name.Local == "bgcolor":
			dm.BG = a.Value
		}
	}
	for _, c := range []string{dm.FG, dm.BG} {
		if c != "" && !ValidColour(c) {
			return nil, fmt.Errorf("%w: display marking colour %q", ErrMalformed, c)
		}
	}
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if text.Len()+len(t) > maxMarkingBytes {
				return nil, fmt.Errorf("%w: display marking too long", ErrMalformed)
			}
			text.Write(t)
		case xml.EndElement:
			dm.Text = text.String()
			return dm, nil
		default:
			return nil, fmt.Errorf("%w: markup in the display marking", ErrMalformed)
		}
	}
}

// labelContent reads the content of <label> or <equivalentlabel>: one
// element in another namespace, or (for <label> only) nothing.
func labelContent(d *xml.Decoder, src []byte, emptyOK bool) (*Encoded, error) {
	var enc *Encoded
	for depth := 0; ; {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text in a label", ErrMalformed)
			}
		case xml.EndElement:
			if enc == nil && !emptyOK {
				return nil, fmt.Errorf("%w: empty equivalent label", ErrMalformed)
			}
			return enc, nil
		case xml.StartElement:
			if enc != nil {
				return nil, fmt.Errorf("%w: a label holds one element", ErrMalformed)
			}
			if t.Name.Space == NS {
				return nil, fmt.Errorf("%w: <%s> inside a label", ErrMalformed, t.Name.Local)
			}
			if err := skip(d, depth+3); err != nil {
				return nil, err
			}
			raw := src[off:d.InputOffset()]
			if enc, err = decodeEncoded(t, raw); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: unexpected %T", ErrMalformed, tok)
		}
	}
}

// skip consumes the rest of the element just started, bounding its depth.
func skip(d *xml.Decoder, depth int) error {
	for n := 1; n > 0; {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch tok.(type) {
		case xml.StartElement:
			n++
			if depth+n > maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
			}
		case xml.EndElement:
			n--
		case xml.ProcInst, xml.Directive:
			return fmt.Errorf("%w: unexpected %T", ErrMalformed, tok)
		}
	}
	return nil
}

func decodeEncoded(start xml.StartElement, raw []byte) (*Encoded, error) {
	switch {
	case start.Name.Space == NSESS && start.Name.Local == "esssecuritylabel":
		text, err := elementText(raw)
		if err != nil {
			return nil, err
		}
		l, err := ess.DecodeBase64(text)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return &Encoded{ESS: &l}, nil
	case start.Name.Space == nato.NS:
		l, err := nato.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return &Encoded{NATO: &l}, nil
	}
	return &Encoded{Other: bytes.Clone(raw)}, nil
}

// elementText returns the character data of a leaf element.
func elementText(raw []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	var b strings.Builder
	starts := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return b.String(), nil
		}
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			if starts++; starts > 1 {
				return "", fmt.Errorf("%w: markup inside <%s>", ErrMalformed, t.Name.Local)
			}
		}
	}
}

package nato

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// reader walks an XML document token by token under this package's limits.
// Each method that is handed a start element consumes through its end.
type reader struct {
	d     *xml.Decoder
	depth int
	any   bool // a token other than the XML declaration has been read
}

func newReader(b []byte) *reader {
	d := xml.NewDecoder(bytes.NewReader(b))
	// Strict mode (the default) knows only the five predefined entities, so
	// no entity can expand; DOCTYPE is refused below.
	d.Strict = true
	return &reader{d: d}
}

// token returns the next start element, end element or character data,
// dropping comments. DOCTYPE and other directives and processing
// instructions are errors; only a leading XML declaration is allowed.
func (r *reader) token() (xml.Token, error) {
	for {
		tok, err := r.d.Token()
		if err != nil {
			if err == io.EOF {
				return nil, err
			}
			return nil, fmt.Errorf("xml: %w", err)
		}
		first := !r.any
		r.any = true
		switch t := tok.(type) {
		case xml.StartElement:
			if r.depth++; r.depth > MaxDepth {
				return nil, fmt.Errorf("nesting deeper than %d", MaxDepth)
			}
			return t, nil
		case xml.EndElement:
			r.depth--
			return t, nil
		case xml.CharData:
			return t, nil
		case xml.Comment:
		case xml.ProcInst:
			if !first || t.Target != "xml" {
				return nil, fmt.Errorf("processing instruction <?%s?> not allowed", t.Target)
			}
		default: // xml.Directive: DOCTYPE and friends
			return nil, errors.New("DOCTYPE and other directives not allowed")
		}
	}
}

// root returns the document element, allowing only whitespace before it.
func (r *reader) root() (xml.StartElement, error) {
	for {
		tok, err := r.token()
		if err == io.EOF {
			return xml.StartElement{}, errors.New("no root element")
		}
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if !isSpace(t) {
				return xml.StartElement{}, errors.New("text before the root element")
			}
		default:
			return xml.StartElement{}, errors.New("malformed document")
		}
	}
}

// end checks that nothing but whitespace and comments follow the root.
func (r *reader) end() error {
	for {
		tok, err := r.token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if cd, ok := tok.(xml.CharData); !ok || !isSpace(cd) {
			return errors.New("data after the root element")
		}
	}
}

// children calls fn for each child element in one of the namespaces ns and
// skips children in any other namespace. Text other than whitespace is an
// error. It returns after the parent's end element.
func (r *reader) children(ns []string, fn func(xml.StartElement) error) error {
	for {
		tok, err := r.token()
		if err != nil {
			return eofIsTruncation(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.CharData:
			if !isSpace(t) {
				return errors.New("unexpected text")
			}
		case xml.StartElement:
			if !in(t.Name.Space, ns) {
				if err := r.skip(); err != nil {
					return err
				}
				continue
			}
			if err := fn(t); err != nil {
				return fmt.Errorf("%s: %w", t.Name.Local, err)
			}
		}
	}
}

// text returns the trimmed character data of an element with no children
// in the namespaces ns; children in other namespaces are skipped.
func (r *reader) text(ns []string) (string, error) {
	var buf []byte
	for {
		tok, err := r.token()
		if err != nil {
			return "", eofIsTruncation(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return strings.Trim(string(buf), xmlSpace), nil
		case xml.CharData:
			if len(buf)+len(t) > MaxText {
				return "", fmt.Errorf("text longer than %d bytes", MaxText)
			}
			buf = append(buf, t...)
		case xml.StartElement:
			if in(t.Name.Space, ns) {
				return "", fmt.Errorf("unexpected element %s", t.Name.Local)
			}
			if err := r.skip(); err != nil {
				return "", err
			}
		}
	}
}

// skip consumes the rest of an element whose start was just read.
func (r *reader) skip() error {
	for level := r.depth; r.depth >= level; {
		if _, err := r.token(); err != nil {
			return eofIsTruncation(err)
		}
	}
	return nil
}

func eofIsTruncation(err error) error {
	if err == io.EOF {
		return errors.New("unexpected end of document")
	}
	return err
}

// attr returns the value of the unprefixed attribute name, if present.
func attr(se xml.StartElement, name string) (string, bool, error) {
	for _, a := range se.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			if len(a.Value) > MaxText {
				return "", false, fmt.Errorf("attribute %s longer than %d bytes", name, MaxText)
			}
			return a.Value, true, nil
		}
	}
	return "", false, nil
}

const xmlSpace = " \t\r\n"

func isSpace(b []byte) bool {
	return len(bytes.Trim(b, xmlSpace)) == 0
}

func in(s string, list []string) bool {
	for _, v := range list {
		if s == v {
			return true
		}
	}
	return false
}

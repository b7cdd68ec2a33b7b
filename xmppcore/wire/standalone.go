package wire

import (
	"fmt"
	"strings"
)

const standaloneHeader = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"

// ParseElement parses one complete element, such as a stanza read back from
// storage; unprefixed elements without their own xmlns are in jabber:client.
func ParseElement(s string) (*Element, error) {
	d := NewDecoder(strings.NewReader(standaloneHeader+s+"</stream:stream>"), Limits{MaxStanza: len(s) + 1})
	if _, err := d.Next(); err != nil {
		return nil, fmt.Errorf("parse element: %w", err)
	}
	tok, err := d.Next()
	if err != nil {
		return nil, fmt.Errorf("parse element: %w", err)
	}
	if tok.Kind != Stanza {
		return nil, fmt.Errorf("parse element: no element in %q", short(s))
	}
	if end, err := d.Next(); err != nil || end.Kind != StreamEnd {
		return nil, fmt.Errorf("parse element: trailing data after the element")
	}
	return tok.Elem, nil
}

// PendingData reports whether the bytes read but not yet returned hold
// anything but whitespace: data a peer pipelined after a STARTTLS request,
// which must not be trusted.
func (d *Decoder) PendingData() bool {
	for _, c := range d.buf[d.start:d.end] {
		if !isSpace(c) {
			return true
		}
	}
	return false
}

// Package wire reads and writes the restricted XML of XMPP streams (RFC 6120 §11).
package wire

import (
	"iter"
	"strings"
	"unicode/utf8"
)

// Attr is one attribute as written; Name is the qualified name ("to", "xml:lang", "xmlns", "xmlns:foo").
type Attr struct{ Name, Value string } // Value unescaped

// Element is an XML element with its attributes and children.
type Element struct {
	Name  string // qualified name as written: "message", "stream:features", "foo:bar"
	Space string // resolved namespace URI (the decoder fills it; New sets it)
	Attrs []Attr // as written, including xmlns / xmlns:p declarations
	Nodes []Node // children in document order
}

// Node is a child: an element, or character data when Elem is nil.
type Node struct {
	Elem *Element
	Text string // unescaped character data (Elem == nil)
}

// New returns an element named name in namespace space. When space is not
// empty it also declares it: as xmlns:p for a prefixed name p:local (so the
// element serialises self-contained), otherwise as xmlns.
func New(name, space string) *Element {
	e := &Element{Name: name, Space: space}
	if space != "" {
		if i := strings.IndexByte(name, ':'); i > 0 {
			e.Attrs = []Attr{{Name: "xmlns:" + name[:i], Value: space}}
		} else {
			e.Attrs = []Attr{{Name: "xmlns", Value: space}}
		}
	}
	return e
}

// Local returns the name without its prefix.
func (e *Element) Local() string {
	if i := strings.IndexByte(e.Name, ':'); i >= 0 {
		return e.Name[i+1:]
	}
	return e.Name
}

// Attr returns the value of the attribute with qualified name name, or "" when absent.
func (e *Element) Attr(name string) string {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			return e.Attrs[i].Value
		}
	}
	return ""
}

// HasAttr reports whether the attribute with qualified name name is present.
func (e *Element) HasAttr(name string) bool {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			return true
		}
	}
	return false
}

// SetAttr replaces the value of attribute name, or appends it, and returns e.
func (e *Element) SetAttr(name, value string) *Element {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			e.Attrs[i].Value = value
			return e
		}
	}
	e.Attrs = append(e.Attrs, Attr{Name: name, Value: value})
	return e
}

// RemoveAttr removes every attribute with qualified name name.
func (e *Element) RemoveAttr(name string) {
	out := e.Attrs[:0]
	for _, a := range e.Attrs {
		if a.Name != name {
			out = append(out, a)
		}
	}
	clear(e.Attrs[len(out):])
	e.Attrs = out
}

func (e *Element) matches(local, space string) bool {
	return (local == "" || e.Local() == local) && (space == "" || e.Space == space)
}

// Child returns the first child element with that local name and namespace;
// space "" matches any namespace and local "" matches any name.
func (e *Element) Child(local, space string) *Element {
	for _, n := range e.Nodes {
		if n.Elem != nil && n.Elem.matches(local, space) {
			return n.Elem
		}
	}
	return nil
}

// ChildText returns the Text of Child(local, space), or "" if there is none.
func (e *Element) ChildText(local, space string) string {
	if c := e.Child(local, space); c != nil {
		return c.Text()
	}
	return ""
}

// Elements yields the child elements in order.
func (e *Element) Elements() iter.Seq[*Element] {
	return func(yield func(*Element) bool) {
		for _, n := range e.Nodes {
			if n.Elem != nil && !yield(n.Elem) {
				return
			}
		}
	}
}

// Text returns the concatenated direct character data of e.
func (e *Element) Text() string {
	var only string
	count := 0
	for _, n := range e.Nodes {
		if n.Elem == nil && n.Text != "" {
			only = n.Text
			count++
		}
	}
	if count <= 1 {
		// The common case (a single text node) needs no allocation.
		return only
	}
	var b strings.Builder
	for _, n := range e.Nodes {
		if n.Elem == nil {
			b.WriteString(n.Text)
		}
	}
	return b.String()
}

// AddChild appends c to e's children and returns c.
func (e *Element) AddChild(c *Element) *Element {
	e.Nodes = append(e.Nodes, Node{Elem: c})
	return c
}

// AddText appends character data to e and returns e. Text following text is
// merged into one node, as the decoder would produce after a round trip.
func (e *Element) AddText(s string) *Element {
	if s == "" {
		return e
	}
	if n := len(e.Nodes); n > 0 && e.Nodes[n-1].Elem == nil {
		e.Nodes[n-1].Text += s
		return e
	}
	e.Nodes = append(e.Nodes, Node{Text: s})
	return e
}

// RemoveChildren removes every child element matching local and space (with
// the wildcards of Child). Text left adjacent by a removal is merged.
func (e *Element) RemoveChildren(local, space string) {
	out := e.Nodes[:0]
	for _, n := range e.Nodes {
		switch {
		case n.Elem != nil && n.Elem.matches(local, space):
			continue
		case n.Elem == nil && len(out) > 0 && out[len(out)-1].Elem == nil:
			out[len(out)-1].Text += n.Text
			continue
		}
		out = append(out, n)
	}
	clear(e.Nodes[len(out):])
	e.Nodes = out
}

// WithAttr returns e with the attribute name set to value, as a new
// top-level element that shares e's children: a stanza addressed to each
// of many recipients costs one small allocation each rather than a deep
// copy. The children must be treated as read-only by every holder.
func (e *Element) WithAttr(name, value string) *Element {
	c := &Element{Name: e.Name, Space: e.Space}
	c.Attrs = make([]Attr, len(e.Attrs), len(e.Attrs)+1)
	copy(c.Attrs, e.Attrs)
	// Capped, so that appending a child to one copy never writes into the
	// array the others share.
	c.Nodes = e.Nodes[:len(e.Nodes):len(e.Nodes)]
	c.SetAttr(name, value)
	return c
}

// Copy returns a deep copy of e. Strings are shared (they are immutable);
// everything else is new, allocated in three slabs.
func (e *Element) Copy() *Element {
	var c copier
	c.count(e)
	c.elems = make([]Element, c.ne)
	c.attrs = make([]Attr, 0, c.na)
	c.nodes = make([]Node, 0, c.nn)
	return c.copy(e)
}

type copier struct {
	ne, na, nn int
	elems      []Element
	attrs      []Attr
	nodes      []Node
}

func (c *copier) count(e *Element) {
	c.ne++
	c.na += len(e.Attrs)
	c.nn += len(e.Nodes)
	for _, n := range e.Nodes {
		if n.Elem != nil {
			c.count(n.Elem)
		}
	}
}

func (c *copier) copy(e *Element) *Element {
	var d *Element
	if len(c.elems) > 0 {
		d, c.elems = &c.elems[0], c.elems[1:]
	} else {
		d = new(Element)
	}
	d.Name, d.Space = e.Name, e.Space
	if len(e.Attrs) > 0 {
		start := len(c.attrs)
		c.attrs = append(c.attrs, e.Attrs...)
		d.Attrs = c.attrs[start:len(c.attrs):len(c.attrs)]
	}
	if n := len(e.Nodes); n > 0 {
		// Reserve this element's run first: children append their own runs after it.
		start := len(c.nodes)
		if cap(c.nodes)-start < n {
			c.nodes = make([]Node, 0, n)
			start = 0
		}
		c.nodes = c.nodes[:start+n]
		d.Nodes = c.nodes[start : start+n : start+n]
		for i, ch := range e.Nodes {
			if ch.Elem != nil {
				d.Nodes[i] = Node{Elem: c.copy(ch.Elem)}
			} else {
				d.Nodes[i] = Node{Text: ch.Text}
			}
		}
	}
	return d
}

// Append appends the serialisation of e to dst: text and attribute values
// escaped, attributes in single quotes, self-closing when e has no Nodes.
// Characters XML cannot carry (controls, invalid UTF-8, U+FFFE/U+FFFF) are
// written as U+FFFD so the output is always well-formed.
func (e *Element) Append(dst []byte) []byte {
	if e == nil {
		return dst
	}
	dst = e.appendOpen(dst)
	if len(e.Nodes) == 0 {
		return append(dst, '/', '>')
	}
	dst = append(dst, '>')
	for _, n := range e.Nodes {
		if n.Elem != nil {
			dst = n.Elem.Append(dst)
		} else {
			dst = appendEscaped(dst, n.Text, &textEscapes)
		}
	}
	dst = append(dst, '<', '/')
	dst = append(dst, e.Name...)
	return append(dst, '>')
}

// AppendStart appends only the start tag "<name attrs...>" (for the stream header).
func (e *Element) AppendStart(dst []byte) []byte {
	if e == nil {
		return dst
	}
	return append(e.appendOpen(dst), '>')
}

// String returns the serialisation of e.
func (e *Element) String() string {
	return string(e.Append(nil))
}

func (e *Element) appendOpen(dst []byte) []byte {
	dst = append(dst, '<')
	dst = append(dst, e.Name...)
	for _, a := range e.Attrs {
		dst = append(dst, ' ')
		dst = append(dst, a.Name...)
		dst = append(dst, '=', '\'')
		dst = appendEscaped(dst, a.Value, &attrEscapes)
		dst = append(dst, '\'')
	}
	return dst
}

// Escape classes: 0 copy as is, 1 replace by the entity in escapeText, 2
// validate as UTF-8 and XML Char.
var textEscapes, attrEscapes = func() (t, a [256]uint8) {
	for c := range 0x20 {
		t[c], a[c] = 1, 1
	}
	for c := 0x80; c < 0x100; c++ {
		t[c], a[c] = 2, 2
	}
	t['\t'], t['\n'] = 0, 0
	// \r in text would be normalised to \n by a parser, so it is escaped too.
	for _, c := range "&<>" {
		t[c], a[c] = 1, 1
	}
	a['\''] = 1
	return t, a
}()

func escapeText(c byte) string {
	switch c {
	case '&':
		return "&amp;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	case '\'':
		return "&apos;"
	case '\t':
		return "&#x9;"
	case '\n':
		return "&#xA;"
	case '\r':
		return "&#xD;"
	}
	return "\uFFFD"
}

func appendEscaped(dst []byte, s string, tab *[256]uint8) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch tab[c] {
		case 0:
			i++
			continue
		case 2:
			r, n := utf8.DecodeRuneInString(s[i:])
			if n > 1 && isCharRune(r) {
				i += n
				continue
			}
			dst = append(dst, s[last:i]...)
			dst = append(dst, "\uFFFD"...)
			i += n
		default:
			dst = append(dst, s[last:i]...)
			dst = append(dst, escapeText(c)...)
			i++
		}
		last = i
	}
	return append(dst, s[last:]...)
}

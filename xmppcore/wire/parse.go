package wire

import (
	"strings"
	"unicode/utf8"
)

const (
	nsStream = "http://etherx.jabber.org/streams"
	nsXML    = "http://www.w3.org/XML/1998/namespace"
	nsXMLNS  = "http://www.w3.org/2000/xmlns/"

	cdataStart = "<![CDATA["

	// maxBindings caps the namespace declarations in scope within one
	// stanza: lookups are linear, and real stanzas use a handful.
	maxBindings = 128
)

// binding is one in-scope namespace declaration.
type binding struct {
	prefix, uri string
	decl        string // attribute name that made it ("xmlns:stream"), to re-declare it
}

type openElem struct {
	e     *Element
	nodes int // len(parser.stack) when e opened: its children start there
	ns    int // len(parser.ns) before e's declarations
}

// parser builds trees from complete, framed tokens held in one string, so
// names and most values are substrings of it. Its slices are scratch reused
// across stanzas; they are cleared after use so an idle connection does not
// pin its last stanza.
type parser struct {
	lim Limits
	s   string

	// Per-stanza slabs, sized from the framing scanner's counts.
	elems []Element
	attrs []Attr
	nodes []Node

	ns    []binding // header scope in ns[:hdrN], then stanza declarations
	hdrN  int
	used  []bool // used[k]: the stanza relies on header binding k
	stack []Node // children of the open elements, innermost last
	high  int    // most entries stack held this stanza, to clear them once
	open  []openElem

	// Text accumulator: a substring s[ta:tb] while possible, else buf.
	buf    []byte
	ta, tb int
	dirty  bool
}

func (p *parser) newElem() *Element {
	if len(p.elems) > 0 {
		e := &p.elems[0]
		p.elems = p.elems[1:]
		return e
	}
	return new(Element)
}

// resetText starts a new accumulation at offset i.
func (p *parser) resetText(i int) {
	p.ta, p.tb, p.dirty = i, i, false
}

// addRaw appends s[a:b] to the text being accumulated.
func (p *parser) addRaw(a, b int) {
	if a == b {
		return
	}
	if !p.dirty {
		if p.ta == p.tb || a == p.tb {
			if p.ta == p.tb {
				p.ta = a
			}
			p.tb = b
			return
		}
		p.spill()
	}
	p.buf = append(p.buf, p.s[a:b]...)
}

// spill moves the accumulated substring into buf before a transformed
// piece (an entity, a normalised newline, or a non-contiguous CDATA body).
func (p *parser) spill() {
	p.buf = append(p.buf[:0], p.s[p.ta:p.tb]...)
	p.dirty = true
}

func (p *parser) addByte(c byte) {
	if !p.dirty {
		p.spill()
	}
	p.buf = append(p.buf, c)
}

func (p *parser) addRune(r rune) {
	if !p.dirty {
		p.spill()
	}
	p.buf = utf8.AppendRune(p.buf, r)
}

func (p *parser) text() string {
	if p.dirty {
		return string(p.buf)
	}
	return p.s[p.ta:p.tb]
}

// lookup resolves prefix ("" for the default namespace) in the current scope.
func (p *parser) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	for k := len(p.ns) - 1; k >= 0; k-- {
		if p.ns[k].prefix == prefix {
			if k < p.hdrN && prefix != "" {
				p.used[k] = true
			}
			return p.ns[k].uri, true
		}
	}
	return "", prefix == ""
}

func (p *parser) popNS(mark int) {
	clear(p.ns[mark:])
	p.ns = p.ns[:mark]
}

// release drops every reference into the last token.
func (p *parser) release() {
	p.s = ""
	p.elems, p.attrs, p.nodes = nil, nil, nil
	p.popNS(p.hdrN)
	clear(p.stack[:max(p.high, len(p.stack))])
	p.stack, p.high = p.stack[:0], 0
	clear(p.open)
	p.open = p.open[:0]
	if cap(p.buf) > 64<<10 {
		p.buf = nil
	}
	if cap(p.stack) > 1024 {
		p.stack, p.open = nil, nil
	}
}

// header parses the stream header start tag in s; its declarations become
// the scope for the stanzas that follow.
func (p *parser) header(s string) (*Element, *Error) {
	p.popNS(0)
	p.hdrN = 0
	p.s = s
	defer func() { p.s = "" }()
	e, i, empty, err := p.startTag(0)
	if err != nil {
		return nil, err
	}
	if empty || i != len(s) {
		return nil, notWellFormed("stream header must be an open start tag")
	}
	if e.Local() != "stream" || e.Space != nsStream {
		return nil, &Error{Condition: condInvalidNamespace, Text: "stream header must be <stream> in " + nsStream}
	}
	p.hdrN = len(p.ns)
	p.used = make([]bool, p.hdrN)
	p.attrs = nil
	return e, nil
}

// stanza parses one complete top-level element. elems, attrs and texts are
// the framing scanner's counts, used to size the slabs (overflow just
// allocates, so a miscount can never corrupt the tree).
func (p *parser) stanza(s string, elems, attrs, texts int) (*Element, *Error) {
	p.s = s
	p.slabs(elems, attrs, elems-1+texts)
	defer p.release()
	root, err := p.tree()
	if err != nil {
		return nil, err
	}
	// Prefixes declared only on the stream header are re-declared on the
	// stanza so it can be serialised on its own.
	for k, u := range p.used {
		if u {
			root.Attrs = append(root.Attrs, Attr{Name: p.ns[k].decl, Value: p.ns[k].uri})
			p.used[k] = false
		}
	}
	return root, nil
}

// Size classes that put a stanza's elements, attributes and nodes in one
// allocation; most stanzas fit the first two.
type (
	slabS struct {
		e [4]Element
		a [8]Attr
		n [8]Node
	}
	slabM struct {
		e [12]Element
		a [24]Attr
		n [24]Node
	}
)

func (p *parser) slabs(elems, attrs, nodes int) {
	switch {
	case elems <= 4 && attrs <= 8 && nodes <= 8:
		s := new(slabS)
		p.elems, p.attrs, p.nodes = s.e[:elems], s.a[:0], s.n[:0]
	case elems <= 12 && attrs <= 24 && nodes <= 24:
		s := new(slabM)
		p.elems, p.attrs, p.nodes = s.e[:elems], s.a[:0], s.n[:0]
	default:
		p.elems = make([]Element, elems)
		p.attrs = make([]Attr, 0, attrs)
		p.nodes = make([]Node, 0, nodes)
	}
}

func (p *parser) tree() (*Element, *Error) {
	s := p.s
	mark := len(p.ns)
	root, i, empty, err := p.startTag(0)
	if err != nil {
		return nil, err
	}
	if !empty {
		p.open = append(p.open, openElem{e: root, ns: mark})
	}
	for len(p.open) > 0 {
		if i, err = p.content(i); err != nil {
			return nil, err
		}
		if i+1 >= len(s) {
			return nil, notWellFormed("unexpected end of element")
		}
		// content stops only at '<' of a tag.
		switch s[i+1] {
		case '/':
			top := p.open[len(p.open)-1]
			if i, err = p.endTag(i, top.e.Name); err != nil {
				return nil, err
			}
			p.close(top)
			p.open[len(p.open)-1] = openElem{}
			p.open = p.open[:len(p.open)-1]
		case '?':
			return nil, restricted("processing instruction")
		default:
			if len(p.open) >= p.lim.MaxDepth {
				return nil, policy("elements nested deeper than %d", p.lim.MaxDepth)
			}
			mark := len(p.ns)
			var e *Element
			if e, i, empty, err = p.startTag(i); err != nil {
				return nil, err
			}
			p.stack = append(p.stack, Node{Elem: e})
			if empty {
				p.popNS(mark)
			} else {
				p.open = append(p.open, openElem{e: e, nodes: len(p.stack), ns: mark})
			}
		}
	}
	if i != len(s) {
		return nil, notWellFormed("data after the end of the element")
	}
	return root, nil
}

// close gives o.e its children and ends its namespace scope.
func (p *parser) close(o openElem) {
	if n := len(p.stack) - o.nodes; n > 0 {
		start := len(p.nodes)
		p.nodes = append(p.nodes, p.stack[o.nodes:]...)
		o.e.Nodes = p.nodes[start:len(p.nodes):len(p.nodes)]
		p.high = max(p.high, len(p.stack))
		p.stack = p.stack[:o.nodes]
	}
	p.popNS(o.ns)
}

// endTag parses "</name S? >" at s[i], which must close the element named name.
func (p *parser) endTag(i int, name string) (int, *Error) {
	s := p.s
	j := i + 2
	if !strings.HasPrefix(s[j:], name) {
		return 0, notWellFormed("end tag does not match %s", short(name))
	}
	j += len(name)
	for j < len(s) && isSpace(s[j]) {
		j++
	}
	if j >= len(s) || s[j] != '>' {
		return 0, notWellFormed("end tag does not match %s", short(name))
	}
	return j + 1, nil
}

// startTag parses "<name attrs... >" or "/>" at s[i] and binds namespaces.
func (p *parser) startTag(i int) (e *Element, next int, empty bool, err *Error) {
	s := p.s
	j, colon, qname := scanName(s, i+1)
	if j == i+1 {
		return nil, 0, false, notWellFormed("invalid element name")
	}
	if !qname {
		return nil, 0, false, notWellFormed("%s %s", msgQName, short(s[i+1:j]))
	}
	e = p.newElem()
	e.Name = s[i+1 : j]
	first := len(p.attrs)
	decls, prefixed := false, false // facts that let bind skip its loops
	for {
		k := j
		for k < len(s) && isSpace(s[k]) {
			k++
		}
		if k >= len(s) {
			return nil, 0, false, notWellFormed("unterminated start tag %s", short(e.Name))
		}
		if c := s[k]; c == '>' {
			j = k + 1
			break
		} else if c == '/' {
			if k+1 < len(s) && s[k+1] == '>' {
				j, empty = k+2, true
				break
			}
			return nil, 0, false, notWellFormed("expected /> in start tag %s", short(e.Name))
		}
		an, acolon, qname := scanName(s, k)
		if an == k {
			return nil, 0, false, notWellFormed("invalid character in start tag %s", short(e.Name))
		}
		if k == j {
			return nil, 0, false, notWellFormed("%s %s", msgAttrSpace, short(s[k:an]))
		}
		if !qname {
			return nil, 0, false, notWellFormed("%s %s", msgQName, short(s[k:an]))
		}
		name := s[k:an]
		switch {
		case acolon < 0:
			decls = decls || name == "xmlns"
		case acolon-k == len("xmlns") && strings.HasPrefix(name, "xmlns"):
			decls = true
		default:
			prefixed = true
		}
		for k = an; k < len(s) && isSpace(s[k]); k++ {
		}
		if k >= len(s) || s[k] != '=' {
			return nil, 0, false, notWellFormed("attribute %s without value", short(name))
		}
		for k++; k < len(s) && isSpace(s[k]); k++ {
		}
		if k >= len(s) || s[k] != '\'' && s[k] != '"' {
			return nil, 0, false, notWellFormed("unquoted value for attribute %s", short(name))
		}
		if len(p.attrs)-first >= p.lim.MaxAttrs {
			return nil, 0, false, policy("more than %d attributes", p.lim.MaxAttrs)
		}
		var value string
		if value, j, err = p.attrValue(k+1, s[k]); err != nil {
			return nil, 0, false, err
		}
		p.attrs = append(p.attrs, Attr{Name: name, Value: value})
	}
	if n := len(p.attrs); n > first {
		e.Attrs = p.attrs[first:n:n]
	}
	if colon >= 0 {
		colon -= i + 1 // scanName reports it as an offset in s
	}
	if err = p.bind(e, colon, decls, prefixed); err != nil {
		return nil, 0, false, err
	}
	return e, j, empty, nil
}

// bind applies e's namespace declarations, resolves e.Space and checks
// attribute prefixes and uniqueness (Namespaces in XML 1.0 §3, §5, §6.3).
// decls says whether e has xmlns or xmlns:p attributes, prefixed whether it
// has other prefixed ones: most elements have neither, and skip that work.
func (p *parser) bind(e *Element, colon int, decls, prefixed bool) *Error {
	if decls {
		if err := p.declare(e.Attrs); err != nil {
			return err
		}
	}
	prefix := ""
	if colon >= 0 {
		prefix = e.Name[:colon]
		if prefix == "xmlns" {
			return notWellFormed("%s: element %s", msgReservedNS, short(e.Name))
		}
	}
	space, ok := p.lookup(prefix)
	if !ok {
		return notWellFormed("%s %s", msgUndeclaredPrefix, short(prefix))
	}
	e.Space = space
	if prefixed {
		n := 0
		for _, a := range e.Attrs {
			if c := strings.IndexByte(a.Name, ':'); c >= 0 && a.Name[:c] != "xmlns" {
				if _, ok := p.lookup(a.Name[:c]); !ok {
					return notWellFormed("%s %s", msgUndeclaredPrefix, short(a.Name[:c]))
				}
				n++
			}
		}
		if n > 1 {
			if err := p.expandedDuplicates(e.Attrs); err != nil {
				return err
			}
		}
	}
	return uniqueNames(e.Attrs)
}

// declare pushes the namespace declarations among attrs onto the scope.
func (p *parser) declare(attrs []Attr) *Error {
	for _, a := range attrs {
		if a.Name == "xmlns" {
			if a.Value == nsXML || a.Value == nsXMLNS {
				return notWellFormed("%s: default namespace %s", msgReservedNS, short(a.Value))
			}
			p.ns = append(p.ns, binding{uri: a.Value, decl: a.Name})
			continue
		}
		prefix, ok := strings.CutPrefix(a.Name, "xmlns:")
		switch {
		case !ok:
			continue
		case prefix == "xml":
			if a.Value != nsXML {
				return notWellFormed("%s: xml prefix bound to %s", msgReservedNS, short(a.Value))
			}
			continue // predefined; declaring it changes nothing
		case prefix == "xmlns" || a.Value == nsXML || a.Value == nsXMLNS:
			return notWellFormed("%s: %s", msgReservedNS, short(a.Name))
		case a.Value == "":
			return notWellFormed("%s for prefix %s", msgEmptyNSDecl, short(prefix))
		}
		p.ns = append(p.ns, binding{prefix: prefix, uri: a.Value, decl: a.Name})
	}
	if len(p.ns)-p.hdrN > maxBindings {
		return policy("more than %d namespace declarations in scope", maxBindings)
	}
	return nil
}

// uniqueNames rejects repeated attribute names.
func uniqueNames(attrs []Attr) *Error {
	if len(attrs) > 32 {
		// Above this a quadratic scan would let a peer burn CPU.
		seen := make(map[string]struct{}, len(attrs))
		for _, a := range attrs {
			if _, dup := seen[a.Name]; dup {
				return notWellFormed("%s %s", msgDuplicateAttr, short(a.Name))
			}
			seen[a.Name] = struct{}{}
		}
		return nil
	}
	for i := 1; i < len(attrs); i++ {
		for _, b := range attrs[:i] {
			if attrs[i].Name == b.Name {
				return notWellFormed("%s %s", msgDuplicateAttr, short(b.Name))
			}
		}
	}
	return nil
}

// expandedDuplicates rejects attributes that differ in prefix but have the
// same namespace and local name, like a:x and b:x with a and b bound alike.
func (p *parser) expandedDuplicates(attrs []Attr) *Error {
	for i, a := range attrs {
		ca := strings.IndexByte(a.Name, ':')
		if ca < 0 || a.Name[:ca] == "xmlns" {
			continue
		}
		if i >= 32 {
			return p.expandedDuplicatesMap(attrs)
		}
		for _, b := range attrs[:i] {
			cb := strings.IndexByte(b.Name, ':')
			if cb < 0 || b.Name[cb+1:] != a.Name[ca+1:] || b.Name[:cb] == "xmlns" {
				continue
			}
			sa, _ := p.lookup(a.Name[:ca])
			sb, _ := p.lookup(b.Name[:cb])
			if sa == sb {
				return notWellFormed("%s %s", msgDuplicateAttr, short(a.Name))
			}
		}
	}
	return nil
}

// expandedDuplicatesMap is expandedDuplicates for many attributes, where a
// quadratic scan would let a peer burn CPU.
func (p *parser) expandedDuplicatesMap(attrs []Attr) *Error {
	type expanded struct{ space, local string }
	seen := make(map[expanded]struct{}, len(attrs))
	for _, a := range attrs {
		c := strings.IndexByte(a.Name, ':')
		if c < 0 || a.Name[:c] == "xmlns" {
			continue
		}
		space, _ := p.lookup(a.Name[:c])
		x := expanded{space, a.Name[c+1:]}
		if _, dup := seen[x]; dup {
			return notWellFormed("%s %s", msgDuplicateAttr, short(a.Name))
		}
		seen[x] = struct{}{}
	}
	return nil
}

// attrValue scans a quoted value starting after the quote q at s[i],
// applying entity expansion and attribute-value normalisation (XML §3.3.3:
// literal whitespace becomes a space; character references are kept).
func (p *parser) attrValue(i int, q byte) (string, int, *Error) {
	s := p.s
	p.resetText(i)
	seg := i
	retry := i // where to try skipping a word at a time again
	for i < len(s) {
		if i >= retry {
			if i = skipPlain(s, i, q, '<', '&'); i >= len(s) {
				break
			}
			retry = i + 8 // the word at i needs attention: go byte by byte
		}
		c := s[i]
		if !attrTab[c] {
			i++
			continue
		}
		switch {
		case c == q:
			p.addRaw(seg, i)
			return p.text(), i + 1, nil
		case c == '\'' || c == '"':
			i++
		case c == '<':
			return "", 0, notWellFormed("'<' in attribute value")
		case c == '&':
			p.addRaw(seg, i)
			j, err := p.ref(i)
			if err != nil {
				return "", 0, err
			}
			i, seg = j, j
		case c == '\t' || c == '\n' || c == '\r':
			p.addRaw(seg, i)
			p.addByte(' ')
			i++
			if c == '\r' && i < len(s) && s[i] == '\n' {
				i++ // \r\n is one line end
			}
			seg = i
		case c >= utf8.RuneSelf:
			n, err := validRune(s, i)
			if err != nil {
				return "", 0, err
			}
			i += n
		default:
			return "", 0, notWellFormed("control character %#x in attribute value", c)
		}
	}
	return "", 0, notWellFormed("unterminated attribute value")
}

// validRune checks the non-ASCII character at s[i] and returns its length.
func validRune(s string, i int) (int, *Error) {
	r, n := utf8.DecodeRuneInString(s[i:])
	if n == 1 {
		return 0, notWellFormed("invalid UTF-8")
	}
	if r == 0xFFFE || r == 0xFFFF {
		return 0, notWellFormed("character %U not allowed in XML", r)
	}
	return n, nil
}

// content scans character data from s[i] up to the next tag, merging CDATA
// sections and references into one text node, which it appends to the stack.
func (p *parser) content(i int) (int, *Error) {
	s := p.s
	p.resetText(i)
	seg := i
	retry := i // where to try skipping a word at a time again
	for i < len(s) {
		if i >= retry {
			if i = skipPlain(s, i, '<', '&', '>'); i >= len(s) {
				break
			}
			retry = i + 8 // the word at i needs attention: go byte by byte
		}
		c := s[i]
		if !textTab[c] {
			i++
			continue
		}
		switch {
		case c == '<':
			p.addRaw(seg, i)
			if i+1 < len(s) && s[i+1] == '!' {
				j, err := p.bang(i)
				if err != nil {
					return 0, err
				}
				i, seg = j, j
				continue
			}
			p.pushText()
			return i, nil
		case c == '&':
			p.addRaw(seg, i)
			j, err := p.ref(i)
			if err != nil {
				return 0, err
			}
			i, seg = j, j
		case c == '\r':
			p.addRaw(seg, i)
			p.addByte('\n')
			i++
			if i < len(s) && s[i] == '\n' {
				i++
			}
			seg = i
		case c == '>':
			if i-seg >= 2 && s[i-1] == ']' && s[i-2] == ']' {
				return 0, notWellFormed("']]>' in character data")
			}
			i++
		case c >= utf8.RuneSelf:
			n, err := validRune(s, i)
			if err != nil {
				return 0, err
			}
			i += n
		default:
			return 0, notWellFormed("control character %#x in character data", c)
		}
	}
	p.addRaw(seg, i)
	p.pushText()
	return i, nil
}

func (p *parser) pushText() {
	if p.dirty || p.ta != p.tb {
		p.stack = append(p.stack, Node{Text: p.text()})
	}
}

// bang handles "<!" in content: a CDATA section (its body is text) or a
// comment or declaration, which XMPP forbids.
func (p *parser) bang(i int) (int, *Error) {
	s := p.s
	if !strings.HasPrefix(s[i:], cdataStart) {
		return 0, bangError(s[i:])
	}
	i += len(cdataStart)
	end := strings.Index(s[i:], "]]>")
	if end < 0 {
		return 0, notWellFormed("unterminated CDATA section")
	}
	end += i
	seg := i
	for i < end {
		c := s[i]
		if !cdataTab[c] {
			i++
			continue
		}
		switch {
		case c == '\r':
			p.addRaw(seg, i)
			p.addByte('\n')
			i++
			if i < end && s[i] == '\n' {
				i++
			}
			seg = i
		case c >= utf8.RuneSelf:
			n, err := validRune(s, i)
			if err != nil {
				return 0, err
			}
			i += n
		default:
			return 0, notWellFormed("control character %#x in CDATA section", c)
		}
	}
	p.addRaw(seg, end)
	return end + len("]]>"), nil
}

// bangError classifies markup starting "<!" that is not CDATA; b must hold
// at least as many bytes as "<!--" or "<!X" needs (callers ensure it or
// pass everything there is).
func bangError(b string) *Error {
	switch {
	case strings.HasPrefix(b, "<!--"):
		return restricted("comment")
	case len(b) > 2 && 'A' <= b[2] && b[2] <= 'Z':
		return restricted("document type or markup declaration")
	}
	return notWellFormed("invalid markup after '<!'")
}

// ref decodes the reference at s[i] == '&' into the text accumulator.
func (p *parser) ref(i int) (int, *Error) {
	s := p.s
	j := i + 1
	if j < len(s) && s[j] == '#' {
		j++
		var v uint32
		digits := 0
		if j < len(s) && s[j] == 'x' {
			for j++; j < len(s); j++ {
				d := hexDigit(s[j])
				if d < 0 {
					break
				}
				if v <= utf8.MaxRune { // stop growing once out of range; no overflow
					v = v<<4 | uint32(d)
				}
				digits++
			}
		} else {
			for ; j < len(s) && '0' <= s[j] && s[j] <= '9'; j++ {
				if v <= utf8.MaxRune {
					v = v*10 + uint32(s[j]-'0')
				}
				digits++
			}
		}
		if digits == 0 || j >= len(s) || s[j] != ';' {
			return 0, notWellFormed("malformed character reference")
		}
		r := rune(v)
		if v > utf8.MaxRune || !isCharRune(r) {
			if 0xD800 <= v && v <= 0xDFFF {
				return 0, notWellFormed("%s %#x", msgSurrogateRef, v)
			}
			return 0, notWellFormed("character reference to %#x, not an XML character", v)
		}
		p.addRune(r)
		return j + 1, nil
	}
	end, _, _ := scanName(s, j)
	if end == j || end >= len(s) || s[end] != ';' {
		return 0, notWellFormed("'&' not starting a reference")
	}
	var c byte
	switch s[j:end] {
	case "lt":
		c = '<'
	case "gt":
		c = '>'
	case "amp":
		c = '&'
	case "quot":
		c = '"'
	case "apos":
		c = '\''
	default:
		return 0, restricted("entity reference " + short(s[j:end]))
	}
	p.addByte(c)
	return end + 1, nil
}

func hexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

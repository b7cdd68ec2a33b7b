package wire

// Template is an element serialised once, to be written many times with a
// different value of one attribute each time: a room's message to each
// occupant differs only in its 'to'.
type Template struct {
	name  string // the element's qualified name
	attr  string
	after []byte // the serialisation after "<name"
}

// NewTemplate serialises e for Append; e must not have the attribute attr,
// and must not change afterwards.
func NewTemplate(e *Element, attr string) Template {
	b := e.Append(nil)
	return Template{name: e.Name, attr: attr, after: b[1+len(e.Name):]}
}

// Append appends the element with attr='value' as its first attribute.
func (t Template) Append(dst []byte, value string) []byte {
	if dst == nil {
		dst = make([]byte, 0, len(t.name)+len(t.attr)+len(value)+len(t.after)+8)
	}
	dst = append(dst, '<')
	dst = append(dst, t.name...)
	dst = append(dst, ' ')
	dst = append(dst, t.attr...)
	dst = append(dst, '=', '\'')
	dst = appendEscaped(dst, value, &attrEscapes)
	dst = append(dst, '\'')
	return append(dst, t.after...)
}

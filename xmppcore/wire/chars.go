package wire

import "unicode/utf8"

// isCharRune reports whether r is in the XML 1.0 Char production.
func isCharRune(r rune) bool {
	switch {
	case r < 0x20:
		return r == '\t' || r == '\n' || r == '\r'
	case r <= 0xD7FF:
		return true
	case r < 0xE000:
		return false // surrogates
	case r <= 0xFFFD:
		return true
	default:
		return r >= 0x10000 && r <= utf8.MaxRune
	}
}

// isNameStartRune is NameStartChar of XML 1.0 fifth edition (the edition
// RFC 6120 cites), without ':' which callers handle for QNames.
func isNameStartRune(r rune) bool {
	switch {
	case r < 0x80:
		return nameTab[r]&nmStart != 0
	case r < 0xC0:
		return false
	case r <= 0x2FF:
		return r != 0xD7 && r != 0xF7
	case r < 0x370:
		return false
	case r <= 0x1FFF:
		return r != 0x37E
	case r < 0x2070:
		return r == 0x200C || r == 0x200D
	case r <= 0x218F:
		return true
	case r < 0x2C00:
		return false
	case r <= 0x2FEF:
		return true
	case r < 0x3001:
		return false
	case r <= 0xD7FF:
		return true
	case r < 0xF900:
		return false
	case r <= 0xFDCF:
		return true
	case r < 0xFDF0:
		return false
	case r <= 0xFFFD:
		return true
	default:
		return r >= 0x10000 && r <= 0xEFFFF
	}
}

// isNameRune is NameChar of XML 1.0 fifth edition, without ':'.
func isNameRune(r rune) bool {
	if r < 0x80 {
		return nameTab[r] != 0
	}
	return isNameStartRune(r) || r == 0xB7 || r >= 0x300 && r <= 0x36F || r == 0x203F || r == 0x2040
}

const (
	nmStart = 1 << iota // ASCII NameStartChar other than ':'
	nmChar              // ASCII NameChar other than ':'
)

// nameTab classifies ASCII bytes for names; bytes >= 0x80 take the rune path.
var nameTab = func() (t [128]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = nmStart | nmChar
		t[c-'a'+'A'] = nmStart | nmChar
	}
	t['_'] = nmStart | nmChar
	for c := '0'; c <= '9'; c++ {
		t[c] = nmChar
	}
	t['-'], t['.'] = nmChar, nmChar
	return t
}()

// nameStartByte reports whether c can begin an element name; the framing
// scanner uses it to reject garbage after '<' without waiting for '>'.
func nameStartByte(c byte) bool {
	return c >= utf8.RuneSelf || c == ':' || nameTab[c]&nmStart != 0
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r'
}

// scanName scans an XML Name starting at s[i]. It returns the end of the
// name (i when there is none), the index of its first colon (-1 if none), and
// whether it is also a namespace-well-formed QName (NCName or NCName:NCName).
func scanName(s string, i int) (end, colon int, qname bool) {
	start := i
	colon = -1
	qname = true
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == ':' {
				if colon >= 0 || i == start {
					qname = false
				}
				if colon < 0 {
					colon = i
				}
				i++
				continue
			}
			t := nameTab[c]
			if t == 0 {
				break
			}
			if t&nmStart == 0 {
				if i == start {
					break // not a Name at all
				}
				if i == colon+1 {
					qname = false // local part must start like a name
				}
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 { // invalid UTF-8 ends the name; the caller rejects the byte
			break
		}
		if !isNameStartRune(r) {
			if !isNameRune(r) || i == start {
				break
			}
			if i == colon+1 {
				qname = false
			}
		}
		i += n
	}
	if i == start {
		return start, -1, false
	}
	if colon == i-1 {
		qname = false
	}
	return i, colon, qname
}

// Byte classes for the content and attribute-value scanners: 0 means an
// ordinary byte that needs no attention.
var textTab, attrTab, cdataTab = func() (t, a, c [256]bool) {
	for b := range 0x20 {
		t[b], a[b], c[b] = true, true, true
	}
	for b := 0x80; b < 0x100; b++ {
		t[b], a[b], c[b] = true, true, true
	}
	t['\t'], t['\n'], c['\t'], c['\n'] = false, false, false, false
	t['<'], t['&'], t['>'] = true, true, true
	a['<'], a['&'], a['\''], a['"'] = true, true, true, true
	return t, a, c
}()

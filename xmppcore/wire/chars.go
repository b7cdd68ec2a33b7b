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

// nameTab classifies ASCII bytes for names; bytes >= 0x80 are 0 and take
// the rune path.
var nameTab = func() (t [256]uint8) {
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
	colon, qname = -1, true
	if i >= len(s) {
		return start, -1, false
	}
	switch c := s[i]; {
	case nameTab[c]&nmStart != 0:
		i++
	case c == ':':
		colon, qname = i, false
		i++
	case c >= utf8.RuneSelf:
		r, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 || !isNameStartRune(r) {
			return start, -1, false
		}
		i += n
	default:
		return start, -1, false
	}
	for i < len(s) {
		c := s[i]
		if nameTab[c] != 0 {
			i++
			continue
		}
		if c == ':' {
			if colon >= 0 {
				qname = false
			} else {
				colon = i
			}
			i++
			if !startsNCName(s, i) {
				qname = false
			}
			continue
		}
		if c < utf8.RuneSelf {
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 || !isNameRune(r) { // invalid UTF-8 ends the name; the caller rejects it
			break
		}
		i += n
	}
	return i, colon, qname
}

// startsNCName reports whether s[i:] starts with a NameStartChar other than ':'.
func startsNCName(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	if c := s[i]; c < utf8.RuneSelf {
		return nameTab[c]&nmStart != 0
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return n > 1 && isNameStartRune(r)
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

// SWAR constants for testing eight bytes at once.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// load64 reads 8 bytes of s at i little-endian (the compiler merges the loads).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// skipPlain advances i over 8-byte words of s that contain only printable
// ASCII other than a, b and c, so the scanners' byte loops only see the
// neighbourhood of bytes that need attention.
func skipPlain(s string, i int, a, b, c byte) int {
	for i+8 <= len(s) {
		x := load64(s, i)
		// (x - lsb*0x20) &^ x flags bytes below 0x20; x itself flags bytes
		// of 0x80 and above; the xor terms flag a, b and c.
		xa, xb, xc := x^(lsb*uint64(a)), x^(lsb*uint64(b)), x^(lsb*uint64(c))
		t := (x-lsb*0x20)&^x | x | (xa-lsb)&^xa | (xb-lsb)&^xb | (xc-lsb)&^xc
		if t&msb != 0 {
			break
		}
		i += 8
	}
	return i
}

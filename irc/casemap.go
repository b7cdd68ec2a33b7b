package irc

import (
	"strings"

	"golang.org/x/text/secure/precis"
)

// CaseMapping folds nicks and channel names the way a server compares them (ISUPPORT CASEMAPPING).
// IRC has no single rule: "rfc1459" (the default) treats []\~ as the upper case of {}|^, "strict-rfc1459"
// leaves ~ and ^ alone, "ascii" folds only A-Z, and Ergo's "rfc7613" folds Unicode with PRECIS.
type CaseMapping string

// The casemappings servers advertise.
const (
	RFC1459       CaseMapping = "rfc1459"
	StrictRFC1459 CaseMapping = "strict-rfc1459"
	ASCII         CaseMapping = "ascii"
	RFC7613       CaseMapping = "rfc7613"
)

// ParseCaseMapping returns the casemapping a CASEMAPPING token names; unknown names get rfc1459,
// the RFC default, which folds a superset of ascii's pairs.
func ParseCaseMapping(s string) CaseMapping {
	switch c := CaseMapping(strings.ToLower(s)); c {
	case RFC1459, StrictRFC1459, ASCII, RFC7613:
		return c
	case "rfc1459-strict":
		return StrictRFC1459
	}
	return RFC1459
}

// Fold returns s in the canonical (lower) case of m. Two names are the same to the server when
// their folds are equal.
func (m CaseMapping) Fold(s string) string {
	switch m {
	case ASCII:
		return foldBytes(s, 'Z')
	case StrictRFC1459:
		return foldBytes(s, ']')
	case RFC7613:
		if out, err := precis.UsernameCaseMapped.CompareKey(s); err == nil {
			return out
		}
		return strings.ToLower(s) // not a valid PRECIS name; still compare case-insensitively
	default:
		return foldBytes(s, '^')
	}
}

// Equal reports whether a and b name the same nick or channel under m.
func (m CaseMapping) Equal(a, b string) bool {
	if len(a) != len(b) && m != RFC7613 {
		return false
	}
	return m.Fold(a) == m.Fold(b)
}

// foldBytes lowers the bytes from 'A' to last by 32: 'Z' for ascii, ']' adds []\ for strict-rfc1459,
// '^' adds ~ (which is '^'+32) for rfc1459. Bytes of multi-byte UTF-8 sequences are >= 0x80 and
// untouched.
func foldBytes(s string, last byte) string {
	i := 0
	for i < len(s) && !(s[i] >= 'A' && s[i] <= last) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if b[i] >= 'A' && b[i] <= last {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

package jid

import "strings"

// escapable lists the characters XEP-0106 escapes, indexed by byte; the value is the
// two lower-case hex digits of the escape sequence.
var escapable = func() (t [256]string) {
	for _, c := range []byte(` "&'/:<>@\`) {
		t[c] = string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])
	}
	return t
}()

// isEscapeSeq reports whether s starts with one of the ten XEP-0106 escape sequences.
// Only the lower-case spelling counts, as in the XEP's table and in every normalised localpart.
func isEscapeSeq(s string) bool {
	if len(s) < 3 || s[0] != '\\' {
		return false
	}
	c := unhex(s[1])<<4 | unhex(s[2])
	return c >= 0 && escapable[c] == s[1:3]
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -256 // makes the combined value negative
}

// Escape applies XEP-0106 escaping to a would-be localpart: space " & ' / : < > @ become
// \20 \22 \26 \27 \2f \3a \3c \3e \40. A backslash becomes \5c only when it starts
// something that Unescape would otherwise decode, so ordinary backslashes stay readable.
// Leading and trailing spaces are dropped because the XEP forbids an escaped localpart from
// beginning or ending with \20. Unescape(Escape(s)) == s for s without such spaces.
func Escape(s string) string {
	s = strings.Trim(s, " ")
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s, i) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		if needsEscape(s, i) {
			b.WriteByte('\\')
			b.WriteString(escapable[s[i]])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func needsEscape(s string, i int) bool {
	if s[i] == '\\' {
		return isEscapeSeq(s[i:])
	}
	return escapable[s[i]] != ""
}

// Unescape reverses Escape: each of the ten XEP-0106 escape sequences is decoded, anything
// else (including other backslashes) is kept as is.
func Unescape(s string) string {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if isEscapeSeq(s[i:]) {
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// keyLines maps every key defined in a TOML document to the line that defines it.
//
// BurntSushi/toml keeps key positions private, so this is a light second scan of the source. It only
// runs on documents the real parser accepted, so it skips values rather than validating them, but it
// must not loop or panic on anything. Keys are spelled as joinKey and indexKey spell them: full dotted
// paths, with [i] for elements of arrays and arrays of tables. A table defined implicitly (by a dotted
// key or a deeper header) gets the line of its first mention.
func keyLines(src string) map[string]int {
	s := lineScanner{src: stripBOM(src), line: 1, lines: make(map[string]int), aot: make(map[string]int)}
	s.document()
	return s.lines
}

// stripBOM drops the byte-order marks the toml parser drops, so neither counts them as content.
func stripBOM(s string) string {
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if rest, ok := strings.CutPrefix(s, bom); ok {
			return rest
		}
	}
	return s
}

type lineScanner struct {
	src   string
	i     int // byte offset
	line  int // line of src[i], from 1
	lines map[string]int
	aot   map[string]int // array-of-tables path → index of its current element
}

func (s *lineScanner) eof() bool { return s.i >= len(s.src) }

func (s *lineScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

// advance moves past one byte, counting lines.
func (s *lineScanner) advance() {
	if s.eof() {
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
	}
	s.i++
}

func (s *lineScanner) record(key string) {
	if _, ok := s.lines[key]; !ok {
		s.lines[key] = s.line
	}
}

func (s *lineScanner) document() {
	table := ""
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		start := s.i
		if s.peek() == '[' {
			table = s.header()
		} else {
			s.keyValue(table)
		}
		if s.i == start { // malformed input: make progress regardless
			s.advance()
		}
	}
}

// header scans [a.b] or [[a.b]] and returns the path of the table it opens.
func (s *lineScanner) header() string {
	s.advance()
	array := s.peek() == '['
	if array {
		s.advance()
	}
	segs := s.keySegments()
	for !s.eof() && s.peek() != '\n' && s.peek() != '#' {
		s.advance() // the closing bracket(s)
	}
	path := ""
	for j, seg := range segs {
		path = joinKey(path, seg)
		if array && j == len(segs)-1 {
			s.record(path)
			if n, seen := s.aot[path]; seen {
				s.aot[path] = n + 1
			} else {
				s.aot[path] = 0
			}
		}
		// Within a header, a segment naming an array of tables means its current element.
		if n, ok := s.aot[path]; ok {
			path = indexKey(path, n)
		}
		s.record(path)
	}
	return path
}

// keyValue scans `key = value` inside table.
func (s *lineScanner) keyValue(table string) {
	path := table
	for _, seg := range s.keySegments() {
		path = joinKey(path, seg)
		s.record(path)
	}
	s.skipSpace()
	if s.peek() != '=' {
		return
	}
	s.advance()
	s.value(path)
}

// keySegments scans a possibly dotted, possibly quoted key and returns its unquoted segments.
func (s *lineScanner) keySegments() []string {
	var segs []string
	for {
		s.skipSpace()
		var seg string
		switch c := s.peek(); {
		case c == '"':
			seg = unescapeBasic(s.quoted('"'))
		case c == '\'':
			seg = s.quoted('\'')
		case isBareKeyChar(c):
			start := s.i
			for !s.eof() && isBareKeyChar(s.peek()) {
				s.advance()
			}
			seg = s.src[start:s.i]
		default:
			return segs
		}
		segs = append(segs, seg)
		s.skipSpace()
		if s.peek() != '.' {
			return segs
		}
		s.advance()
	}
}

// value skips one value, recording the keys of inline tables and the elements of arrays under path.
func (s *lineScanner) value(path string) {
	s.skipSpace()
	switch {
	case strings.HasPrefix(s.src[s.i:], `"""`):
		s.multiline(`"""`, true)
	case strings.HasPrefix(s.src[s.i:], `'''`):
		s.multiline(`'''`, false)
	case s.peek() == '"':
		s.quoted('"')
	case s.peek() == '\'':
		s.quoted('\'')
	case s.peek() == '[':
		s.array(path)
	case s.peek() == '{':
		s.inlineTable(path)
	default:
		// Number, boolean or date-time; a date-time may contain a space, so stop only at delimiters.
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.peek())) {
			s.advance()
		}
	}
}

func (s *lineScanner) array(path string) {
	s.advance() // [
	for n := 0; ; {
		s.skipBlank()
		start := s.i
		switch s.peek() {
		case 0:
			if s.eof() {
				return
			}
		case ']':
			s.advance()
			return
		case ',':
			s.advance()
			n++
			continue
		}
		elem := indexKey(path, n)
		s.record(elem)
		s.value(elem)
		if s.i == start {
			s.advance()
		}
	}
}

func (s *lineScanner) inlineTable(path string) {
	s.advance() // {
	for {
		s.skipBlank() // TOML 1.1 allows newlines and comments inside inline tables
		start := s.i
		switch s.peek() {
		case 0:
			if s.eof() {
				return
			}
		case '}':
			s.advance()
			return
		case ',':
			s.advance()
			continue
		}
		s.keyValue(path)
		if s.i == start {
			s.advance()
		}
	}
}

// quoted scans a single-line string delimited by q and returns its raw content (escapes untouched).
func (s *lineScanner) quoted(q byte) string {
	s.advance()
	start := s.i
	for !s.eof() {
		switch c := s.peek(); {
		case c == q:
			raw := s.src[start:s.i]
			s.advance()
			return raw
		case c == '\n':
			return s.src[start:s.i]
		case c == '\\' && q == '"':
			s.advance()
		}
		s.advance()
	}
	return s.src[start:]
}

// multiline skips a multi-line string opened by delim (three quotes, double or single). The closing
// delimiter may be followed by up to two more quotes, which belong to the content.
func (s *lineScanner) multiline(delim string, escapes bool) {
	for range delim {
		s.advance()
	}
	for !s.eof() {
		if escapes && s.peek() == '\\' {
			s.advance()
			s.advance()
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			for range delim {
				s.advance()
			}
			for extra := 0; extra < 2 && s.peek() == delim[0]; extra++ {
				s.advance()
			}
			return
		}
		s.advance()
	}
}

// skipSpace skips spaces and tabs.
func (s *lineScanner) skipSpace() {
	for c := s.peek(); c == ' ' || c == '\t'; c = s.peek() {
		s.advance()
	}
}

// skipBlank skips whitespace, newlines and comments.
func (s *lineScanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			for !s.eof() && s.peek() != '\n' {
				s.advance()
			}
		default:
			return
		}
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// unescapeBasic decodes the escapes of a TOML basic string as toml v1.6.0 does (TOML 1.1, with \e and \xHH).
// Malformed escapes are kept literally: the parser has already rejected them.
func unescapeBasic(raw string) string {
	if !strings.Contains(raw, `\`) {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			b.WriteByte(raw[i])
			continue
		}
		i++
		c := raw[i]
		if k := strings.IndexByte(`btnfre"\`, c); k >= 0 {
			b.WriteByte("\b\t\n\f\r\x1b\"\\"[k])
			continue
		}
		width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		if width > 0 && i+width < len(raw) {
			r, err := strconv.ParseUint(raw[i+1:i+1+width], 16, 32)
			if err == nil && utf8.ValidRune(rune(r)) {
				b.WriteRune(rune(r))
				i += width
				continue
			}
		}
		b.WriteByte('\\')
		b.WriteByte(raw[i])
	}
	return b.String()
}

package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// kind classifies one framed piece of an XMPP stream.
type kind uint8

const (
	kindElement     kind = iota + 1 // a complete top-level element (stanza or nonza)
	kindStreamOpen                  // the <stream:stream> header
	kindStreamClose                 // </stream:stream>
)

// item is one framed piece of the stream. raw aliases the scanner's buffer
// and is valid only until the next call to next.
type item struct {
	kind kind
	raw  []byte
	head int // length of the element's opening tag within raw
}

// tok is the lexical class of a markup token.
type tok uint8

const (
	tokOpen tok = iota + 1
	tokSelfClose
	tokClose
	tokOther // processing instruction, comment, CDATA section or DOCTYPE
)

// scanner frames an XMPP stream into top-level elements by tracking tag
// depth only: no tree and no allocation per stanza, so the generator stays
// cheap next to the server it measures.
type scanner struct {
	r     io.Reader
	buf   []byte
	r0, w int // unread bytes are buf[r0:w]
	// Resume state for an element that is split across reads, so large
	// stanzas arriving in pieces are not rescanned from the start.
	pos, depth, head int
	open             bool // stream header seen
	max              int
}

func newScanner(r io.Reader, size, max int) *scanner {
	return &scanner{r: r, buf: make([]byte, size), max: max}
}

// reset prepares for a restarted stream (after STARTTLS or SASL) on r.
func (s *scanner) reset(r io.Reader) {
	s.r = r
	s.open = false
	s.pos, s.depth, s.head = 0, 0, 0
}

// buffered reports how many unread bytes are held.
func (s *scanner) buffered() int { return s.w - s.r0 }

// next returns the next framed item, reading as needed.
func (s *scanner) next() (item, error) {
	for {
		it, ok, err := s.scan()
		if err != nil || ok {
			return it, err
		}
		if err := s.fill(); err != nil {
			if errors.Is(err, io.EOF) && s.pos > 0 {
				err = io.ErrUnexpectedEOF
			}
			return item{}, err
		}
	}
}

func (s *scanner) fill() error {
	if s.r0 > 0 {
		s.w = copy(s.buf, s.buf[s.r0:s.w])
		s.r0 = 0
	}
	if s.w == len(s.buf) {
		if len(s.buf) >= s.max {
			return fmt.Errorf("stanza larger than %d bytes", s.max)
		}
		nb := make([]byte, min(2*len(s.buf), s.max))
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	n, err := s.r.Read(s.buf[s.w:])
	s.w += n
	if n > 0 {
		return nil
	}
	return err
}

func (s *scanner) consume(n int) {
	s.r0 += n
	s.pos, s.depth, s.head = 0, 0, 0
}

// scan tries to frame one item from the buffered bytes; ok is false when
// more input is needed.
func (s *scanner) scan() (it item, ok bool, err error) {
outer:
	for {
		if s.pos == 0 {
			// Between top-level items: drop character data such as
			// whitespace keepalives.
			j := bytes.IndexByte(s.buf[s.r0:s.w], '<')
			if j < 0 {
				s.r0 = s.w
				return item{}, false, nil
			}
			s.r0 += j
		}
		b := s.buf[s.r0:s.w]
		i, depth, head := s.pos, s.depth, s.head
		for {
			if i > 0 {
				// Inside an element: skip its character data.
				j := bytes.IndexByte(b[i:], '<')
				if j < 0 {
					s.pos, s.depth, s.head = len(b), depth, head
					return item{}, false, nil
				}
				i += j
			}
			n, t := tagLen(b[i:])
			if n == 0 {
				s.pos, s.depth, s.head = i, depth, head
				return item{}, false, nil
			}
			if n < 0 {
				return item{}, false, fmt.Errorf("malformed XML near %q", clip(b[i:], 64))
			}
			end := i + n
			switch t {
			case tokOther:
				if depth == 0 {
					s.consume(end)
					continue outer
				}
			case tokOpen:
				if depth == 0 {
					if !s.open {
						if !bytes.Equal(localName(b[:end]), []byte("stream")) {
							return item{}, false, fmt.Errorf("expected stream header, got %q", clip(b[:end], 64))
						}
						s.open = true
						s.consume(end)
						return item{kind: kindStreamOpen, raw: b[:end], head: end}, true, nil
					}
					head = end
				}
				depth++
			case tokSelfClose:
				if depth == 0 {
					if !s.open {
						return item{}, false, fmt.Errorf("element %q before stream header", clip(b[:end], 64))
					}
					s.consume(end)
					return item{kind: kindElement, raw: b[:end], head: end}, true, nil
				}
			case tokClose:
				if depth == 0 {
					if !s.open {
						return item{}, false, fmt.Errorf("stream closed before it was opened")
					}
					s.consume(end)
					return item{kind: kindStreamClose, raw: b[:end]}, true, nil
				}
				depth--
				if depth == 0 {
					s.consume(end)
					return item{kind: kindElement, raw: b[:end], head: head}, true, nil
				}
			}
			i = end
		}
	}
}

// tagLen measures the markup token at the start of b (b[0] == '<'). It
// returns 0 when b holds only part of it and -1 when it is malformed.
func tagLen(b []byte) (int, tok) {
	if len(b) < 2 {
		return 0, 0
	}
	switch b[1] {
	case '/':
		if j := bytes.IndexByte(b, '>'); j >= 0 {
			return j + 1, tokClose
		}
		return 0, 0
	case '?':
		return delimited(b, 2, "?>")
	case '!':
		for _, d := range [...][2]string{{"<!--", "-->"}, {"<![CDATA[", "]]>"}} {
			if bytes.HasPrefix(b, []byte(d[0])) {
				return delimited(b, len(d[0]), d[1])
			}
			if len(b) < len(d[0]) && bytes.HasPrefix([]byte(d[0]), b) {
				return 0, 0
			}
		}
		// A DOCTYPE is forbidden in XMPP; skip it as an opaque token.
		if j := bytes.IndexByte(b, '>'); j >= 0 {
			return j + 1, tokOther
		}
		return 0, 0
	}
	var quote byte
	for j := 1; j < len(b); j++ {
		c := b[j]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"':
			quote = c
		case '<':
			return -1, 0
		case '>':
			if b[j-1] == '/' {
				return j + 1, tokSelfClose
			}
			return j + 1, tokOpen
		}
	}
	return 0, 0
}

func delimited(b []byte, from int, end string) (int, tok) {
	if j := bytes.Index(b[from:], []byte(end)); j >= 0 {
		return from + j + len(end), tokOther
	}
	return 0, 0
}

// localName returns the element name of a tag without its namespace prefix.
func localName(tag []byte) []byte {
	if len(tag) < 2 || tag[0] != '<' {
		return nil
	}
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '>' && tag[i] != '/' {
		i++
	}
	name := tag[1:i]
	if j := bytes.LastIndexByte(name, ':'); j >= 0 {
		name = name[j+1:]
	}
	return name
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// attrValue returns the raw (still escaped) value of attribute name in an
// opening tag, or nil.
func attrValue(tag []byte, name string) []byte {
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '>' && tag[i] != '/' {
		i++
	}
	for i < len(tag) {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		start := i
		for i < len(tag) && tag[i] != '=' && !isSpace(tag[i]) && tag[i] != '>' && tag[i] != '/' {
			i++
		}
		if i == start {
			return nil // '>' or '/>' or garbage: no more attributes
		}
		attr := tag[start:i]
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '=' {
			continue // attribute without value (not XML, tolerate)
		}
		i++
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || (tag[i] != '\'' && tag[i] != '"') {
			return nil
		}
		q := tag[i]
		i++
		j := bytes.IndexByte(tag[i:], q)
		if j < 0 {
			return nil
		}
		if string(attr) == name {
			return tag[i : i+j]
		}
		i += j + 1
	}
	return nil
}

// msgStatus classifies a received <message/>.
type msgStatus uint8

const (
	msgOther msgStatus = iota // not one of ours (or from another run or phase)
	msgBench                  // one of ours, delivered
	msgError                  // one of ours, bounced with type='error'
)

// benchStamp returns the send timestamp carried in the body of a benchmark
// message ("<token> <nanoseconds> <padding>").
func benchStamp(it item, token []byte) (int64, msgStatus) {
	if it.head <= 0 || it.head > len(it.raw) {
		return 0, msgOther
	}
	body := bodyText(it.raw[it.head:])
	if len(body) <= len(token) || !bytes.HasPrefix(body, token) || body[len(token)] != ' ' {
		return 0, msgOther
	}
	ts, ok := parseUint(body[len(token)+1:])
	if !ok {
		return 0, msgOther
	}
	// The Contains pre-check keeps the attribute walk off the common path.
	if head := it.raw[:it.head]; bytes.Contains(head, []byte("error")) && bytes.Equal(attrValue(head, "type"), []byte("error")) {
		return ts, msgError
	}
	return ts, msgBench
}

// bodyText returns the character data of the first <body> child.
func bodyText(b []byte) []byte {
	for {
		j := bytes.Index(b, []byte("<body"))
		if j < 0 {
			return nil
		}
		b = b[j+len("<body"):]
		if len(b) > 0 && (b[0] == '>' || isSpace(b[0])) {
			break
		}
	}
	k := bytes.IndexByte(b, '>')
	if k < 0 || (k > 0 && b[k-1] == '/') {
		return nil
	}
	b = b[k+1:]
	if e := bytes.IndexByte(b, '<'); e >= 0 {
		b = b[:e]
	}
	return b
}

// parseUint parses leading decimal digits (at least one, no overflow).
func parseUint(b []byte) (int64, bool) {
	var v int64
	n := 0
	for ; n < len(b) && b[n] >= '0' && b[n] <= '9'; n++ {
		if v > (1<<63-1-9)/10 {
			return 0, false
		}
		v = v*10 + int64(b[n]-'0')
	}
	return v, n > 0
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

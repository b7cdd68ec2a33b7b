package wire

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Limits bounds what one peer can make the decoder buffer and build.
type Limits struct {
	MaxStanza int // bytes of one top-level element (0 = 256 KiB default)
	MaxDepth  int // nesting depth inside a stanza (0 = 64)
	MaxAttrs  int // attributes per element (0 = 64)
}

const (
	defaultMaxStanza = 256 << 10
	defaultMaxDepth  = 64
	defaultMaxAttrs  = 64

	maxHeader = 4 << 10 // XML declaration + stream header, and the closing tag

	// An idle connection holds minBuf; a buffer grown past shrinkAbove for
	// a large stanza is given back once that stanza has been returned.
	minBuf      = 1 << 10
	shrinkAbove = 4 << 10
)

// Kind says what a Token is.
type Kind int

const (
	StreamStart Kind = iota + 1 // the stream header
	Stanza                      // a complete top-level element
	StreamEnd                   // </stream:stream>
)

func (k Kind) String() string {
	switch k {
	case StreamStart:
		return "StreamStart"
	case Stanza:
		return "Stanza"
	case StreamEnd:
		return "StreamEnd"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Token is one stream-level event.
type Token struct {
	Kind Kind
	Elem *Element // StreamStart: the <stream:stream> header element (no Nodes); Stanza: the complete top-level element; StreamEnd: nil
	Size int      // bytes the token took on the wire
}

type phase uint8

const (
	phaseInit   phase = iota // before the stream header
	phaseStream              // between stanzas
	phaseDone                // after </stream:stream>
)

type tokKind uint8

const (
	tkHeader tokKind = iota + 1 // optional XML declaration and the stream header
	tkStanza
	tkEnd  // </stream:stream>
	tkBang // "<!" at stream level: an error once classified
)

// tagStop marks the bytes the framing scanner stops at inside a start tag.
var tagStop = [256]bool{'>': true, '\'': true, '"': true}

// Framing scanner states; each resumes at Decoder.pos when more bytes arrive.
type scanState uint8

const (
	sText   scanState = iota // character data inside a stanza
	sMarkup                  // at '<' inside a stanza, waiting for the next byte
	sBang                    // at "<!"
	sCDATA                   // inside <![CDATA[, looking for ]]>
	sTag                     // inside a start tag, outside quotes
	sQuote                   // inside a quoted attribute value
	sEndTag                  // inside an end tag
	sDecl                    // inside the XML declaration
	sGap                     // between the XML declaration and the stream header
)

// Decoder reads the tokens of an XMPP stream from an io.Reader.
//
// It works in two stages: a resumable byte-level framing scanner finds where
// each token ends (so input may arrive in any fragments, and nothing is
// scanned twice while waiting), then a parser builds the tree from the
// token's bytes, converted to one string whose substrings become the names
// and values.
type Decoder struct {
	r   io.Reader
	lim Limits

	buf   []byte
	start int   // first byte of the current token (or of unscanned input)
	pos   int   // where the scanner resumes
	end   int   // end of the bytes read
	rerr  error // read error held back until the bytes before it are used

	err   *Error // sticky once set
	phase phase
	fresh bool // nothing of this stream consumed yet: an XML declaration may follow

	// Framing state of the token in progress.
	inTok    bool
	kind     tokKind
	st       scanState
	quote    byte
	declOK   bool // "<?xml" S seen
	declEnd  int  // token offset just after the XML declaration (0 if none)
	hdrTag   int  // token offset of the stream header's '<'
	depth    int  // open elements in the stanza
	tagAttrs int  // attributes in the current start tag
	elems    int  // counts for the parser's slabs
	attrs    int
	texts    int
	pending  bool // character data seen since the last tag

	hdr *Element
	p   parser
}

// NewDecoder returns a decoder reading the stream from r within lim
// (zero fields take their defaults).
func NewDecoder(r io.Reader, lim Limits) *Decoder {
	if lim.MaxStanza <= 0 {
		lim.MaxStanza = defaultMaxStanza
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = defaultMaxDepth
	}
	if lim.MaxAttrs <= 0 {
		lim.MaxAttrs = defaultMaxAttrs
	}
	d := &Decoder{lim: lim, buf: make([]byte, minBuf)}
	d.p.lim = lim
	d.Reset(r)
	return d
}

// Reset starts a new stream on r (after STARTTLS, or after SASL success),
// dropping any buffered input and state, including a previous error.
func (d *Decoder) Reset(r io.Reader) {
	d.r = r
	d.start, d.pos, d.end = 0, 0, 0
	d.rerr, d.err = nil, nil
	d.phase, d.fresh, d.inTok = phaseInit, true, false
	d.hdr = nil
	d.p.popNS(0)
	d.p.hdrN, d.p.used = 0, nil
	if len(d.buf) > shrinkAbove {
		d.buf = make([]byte, minBuf)
	}
}

// Buffered returns the number of bytes read from r but not yet returned as
// tokens. It must be 0 before the connection switches to TLS.
func (d *Decoder) Buffered() int {
	return d.end - d.start
}

// Next returns the next token. It returns io.EOF when the input ends
// cleanly between tokens (and after StreamEnd), and an *Error, which it
// keeps returning, for input that breaks the rules. Other read errors are
// returned wrapped; the decoder keeps its state, so Next may be called
// again (for example after a read deadline passed).
func (d *Decoder) Next() (Token, error) {
	if d.err != nil {
		return Token{}, d.err
	}
	for {
		if d.phase == phaseDone {
			return Token{}, io.EOF
		}
		end, err := d.scan()
		if err == nil && end >= 0 {
			var tok Token
			if tok, err = d.finish(end); err == nil {
				d.shrink()
				return tok, nil
			}
		}
		if err != nil {
			d.err = err
			d.inTok = false
			return Token{}, err
		}
		if rerr := d.fill(); rerr != nil {
			if rerr == io.EOF {
				if d.end > d.start {
					return Token{}, fmt.Errorf("wire: stream ended inside a token: %w", io.ErrUnexpectedEOF)
				}
				return Token{}, io.EOF
			}
			return Token{}, fmt.Errorf("wire: reading stream: %w", rerr)
		}
	}
}

// limit is the size bound of the token being framed.
func (d *Decoder) limit() int {
	if d.kind == tkStanza {
		return d.lim.MaxStanza
	}
	return maxHeader
}

// fill reads more input, making room first: it moves the current token to
// the front of the buffer, or grows the buffer up to the token's limit.
func (d *Decoder) fill() error {
	if d.rerr != nil {
		err := d.rerr
		d.rerr = nil
		return err
	}
	if d.start == d.end {
		d.start, d.pos, d.end = 0, 0, 0
	}
	if d.end == len(d.buf) {
		if d.start > 0 {
			n := copy(d.buf, d.buf[d.start:d.end])
			d.pos -= d.start
			d.start, d.end = 0, n
		} else {
			// The scanner fails a token at its limit before asking for
			// more, so this never grows past max(MaxStanza, maxHeader).
			n := min(2*len(d.buf), d.limit())
			if n <= len(d.buf) {
				n = len(d.buf) + minBuf
			}
			nb := make([]byte, n)
			copy(nb, d.buf[:d.end])
			d.buf = nb
		}
	}
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		if n < 0 || n > len(d.buf)-d.end {
			return fmt.Errorf("wire: reader returned invalid count %d", n)
		}
		d.end += n
		if n > 0 {
			d.rerr = err
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// shrink returns a buffer grown for a large token to the idle size.
func (d *Decoder) shrink() {
	if len(d.buf) <= shrinkAbove || d.end-d.start > minBuf {
		return
	}
	nb := make([]byte, minBuf)
	n := copy(nb, d.buf[d.start:d.end])
	d.buf = nb
	d.start, d.pos, d.end = 0, 0, n
}

// begin classifies a token from the byte after its '<' at d.start.
func (d *Decoder) begin(c byte) *Error {
	d.inTok = true
	d.pos = d.start + 1
	d.depth, d.tagAttrs, d.elems, d.attrs, d.texts, d.pending = 0, 0, 0, 0, 0, false
	d.declOK, d.declEnd, d.hdrTag = false, 0, 0
	fresh := d.fresh
	d.fresh = false
	switch {
	case c == '!':
		d.kind, d.st, d.pos = tkBang, sBang, d.start
	case c == '?':
		if d.phase != phaseInit || !fresh {
			return restricted("processing instruction")
		}
		d.kind, d.st = tkHeader, sDecl
	case c == '/':
		if d.phase != phaseStream {
			return notWellFormed("end tag before the stream header")
		}
		d.kind, d.st, d.pos = tkEnd, sEndTag, d.start+2
	case !nameStartByte(c):
		return notWellFormed("invalid element name")
	case d.phase == phaseInit:
		d.kind, d.st = tkHeader, sTag
	default:
		d.kind, d.st, d.elems = tkStanza, sTag, 1
	}
	return nil
}

// scan advances the framing scanner over the buffered input. It returns the
// end offset of a complete token, or -1 when it needs more input.
func (d *Decoder) scan() (int, *Error) {
	buf := d.buf[:d.end]
	if !d.inTok {
		// Between tokens: whitespace (keepalives) is consumed right away.
		i := d.start
		for i < len(buf) && isSpace(buf[i]) {
			i++
		}
		if i > d.start {
			d.fresh = false
			d.start = i
		}
		d.pos = i
		if i == len(buf) {
			return -1, nil
		}
		if buf[i] != '<' {
			if d.phase == phaseInit {
				return -1, notWellFormed("character data before the stream header")
			}
			return -1, notWellFormed(msgStreamText)
		}
		if i+1 == len(buf) {
			return -1, nil
		}
		if err := d.begin(buf[i+1]); err != nil {
			return -1, err
		}
	}

	lim := d.limit()
	i := d.pos
loop:
	for i < len(buf) {
		switch d.st {
		case sText:
			j := bytes.IndexByte(buf[i:], '<')
			if j != 0 {
				d.pending = true
			}
			if j < 0 {
				i = len(buf)
				break loop
			}
			i += j
			d.st = sMarkup

		case sMarkup:
			if i+1 >= len(buf) {
				break loop
			}
			switch c := buf[i+1]; {
			case c == '/':
				d.textEnds()
				d.st = sEndTag
				i += 2
			case c == '!':
				d.st = sBang
			case c == '?':
				return -1, restricted("processing instruction")
			case !nameStartByte(c):
				return -1, notWellFormed("invalid element name")
			default:
				if d.depth >= d.lim.MaxDepth {
					return -1, policy("elements nested deeper than %d", d.lim.MaxDepth)
				}
				d.textEnds()
				d.elems++
				d.tagAttrs = 0
				d.st = sTag
				i++
			}

		case sBang:
			// i is at '<'; decide between CDATA, comment and declaration.
			n := min(len(buf)-i, len(cdataStart))
			if n < 3 || n < 4 && buf[i+2] == '-' {
				break loop
			}
			if buf[i+2] != '[' {
				return -1, bangError(string(buf[i : i+n]))
			}
			if string(buf[i:i+n]) != cdataStart[:n] {
				return -1, notWellFormed("invalid markup after '<!'")
			}
			if n < len(cdataStart) {
				break loop
			}
			if d.kind != tkStanza {
				return -1, notWellFormed(msgStreamText)
			}
			d.pending = true
			d.st = sCDATA
			i += len(cdataStart)

		case sCDATA:
			j := bytes.Index(buf[i:], []byte("]]>"))
			if j < 0 {
				i = max(i, len(buf)-2) // "]]" may be split across reads
				break loop
			}
			i += j + 3
			d.st = sText

		case sTag:
			for i < len(buf) && !tagStop[buf[i]] {
				i++
			}
			if i == len(buf) {
				break loop
			}
			if c := buf[i]; c != '>' {
				d.tagAttrs++
				d.attrs++
				if d.tagAttrs > d.lim.MaxAttrs {
					return -1, policy("more than %d attributes", d.lim.MaxAttrs)
				}
				d.quote = c
				d.st = sQuote
				i++
				continue
			}
			// Outside quotes, '/' before '>' can only mean an empty element
			// in well-formed input; the parser rejects anything else.
			selfClose := buf[i-1] == '/'
			i++
			if d.kind == tkHeader {
				return d.complete(i, lim)
			}
			if selfClose {
				if d.depth == 0 {
					return d.complete(i, lim)
				}
			} else {
				d.depth++
			}
			d.st = sText
			d.pending = false

		case sQuote:
			j := bytes.IndexByte(buf[i:], d.quote)
			if j < 0 {
				i = len(buf)
				break loop
			}
			i += j + 1
			d.st = sTag

		case sEndTag:
			j := bytes.IndexByte(buf[i:], '>')
			if j < 0 {
				i = len(buf)
				break loop
			}
			i += j + 1
			if d.kind == tkEnd {
				return d.complete(i, lim)
			}
			d.depth--
			if d.depth <= 0 {
				return d.complete(i, lim)
			}
			d.st = sText
			d.pending = false

		case sDecl:
			if !d.declOK {
				const decl = "<?xml"
				n := min(len(buf)-d.start, len(decl)+1)
				if string(buf[d.start:d.start+min(n, len(decl))]) != decl[:min(n, len(decl))] {
					return -1, restricted("processing instruction")
				}
				if n <= len(decl) {
					break loop
				}
				if !isSpace(buf[d.start+len(decl)]) {
					return -1, restricted("processing instruction")
				}
				d.declOK = true
				i = d.start + len(decl) + 1
			}
			j := bytes.Index(buf[i:], []byte("?>"))
			if j < 0 {
				i = max(i, len(buf)-1)
				break loop
			}
			i += j + 2
			d.declEnd = i - d.start
			d.st = sGap

		case sGap:
			for i < len(buf) && isSpace(buf[i]) {
				i++
			}
			if i+1 >= len(buf) {
				break loop
			}
			if buf[i] != '<' {
				return -1, notWellFormed("character data before the stream header")
			}
			switch c := buf[i+1]; {
			case c == '?':
				return -1, restricted("processing instruction")
			case c == '!':
				d.st = sBang
			case !nameStartByte(c):
				return -1, notWellFormed("expected the stream header")
			default:
				d.hdrTag = i - d.start
				d.st = sTag
				i++
			}
		}
	}
	d.pos = i
	if len(buf)-d.start >= lim {
		// The token is unfinished and already at its limit.
		return -1, policy("element larger than %d bytes", lim)
	}
	return -1, nil
}

// textEnds counts a run of character data closed by a tag.
func (d *Decoder) textEnds() {
	if d.pending {
		d.texts++
		d.pending = false
	}
}

func (d *Decoder) complete(end, lim int) (int, *Error) {
	if end-d.start > lim {
		return -1, policy("element larger than %d bytes", lim)
	}
	return end, nil
}

// finish consumes the framed token buf[start:end] and parses it.
func (d *Decoder) finish(end int) (Token, *Error) {
	raw := d.buf[d.start:end]
	d.start, d.pos, d.inTok = end, end, false
	switch d.kind {
	case tkStanza:
		e, err := d.p.stanza(string(raw), d.elems, d.attrs, d.texts)
		if err != nil {
			return Token{}, err
		}
		return Token{Kind: Stanza, Elem: e, Size: len(raw)}, nil

	case tkHeader:
		s := string(raw)
		if d.declEnd > 0 {
			if err := checkDecl(s[:d.declEnd]); err != nil {
				return Token{}, err
			}
		}
		e, err := d.p.header(s[d.hdrTag:])
		if err != nil {
			return Token{}, err
		}
		d.hdr = e
		d.phase = phaseStream
		return Token{Kind: StreamStart, Elem: e, Size: len(raw)}, nil

	case tkEnd:
		name := strings.TrimRight(string(raw[2:len(raw)-1]), " \t\r\n")
		if name != d.hdr.Name {
			return Token{}, notWellFormed("end tag %s does not close %s", short(name), short(d.hdr.Name))
		}
		d.phase = phaseDone
		return Token{Kind: StreamEnd, Size: len(raw)}, nil
	}
	return Token{}, notWellFormed("internal framing error")
}

// checkDecl validates the XML declaration s ("<?xml ... ?>"):
// version 1.0, optional encoding (UTF-8 only), optional standalone.
func checkDecl(s string) *Error {
	rest := s[len("<?xml") : len(s)-len("?>")]
	names := [...]string{"version", "encoding", "standalone"}
	next := 0
	for {
		t := strings.TrimLeft(rest, " \t\r\n")
		if t == "" {
			break
		}
		if len(t) == len(rest) {
			return notWellFormed("malformed XML declaration")
		}
		name, value, r, ok := pseudoAttr(t)
		if !ok {
			return notWellFormed("malformed XML declaration")
		}
		for next < len(names) && names[next] != name && next > 0 {
			next++
		}
		if next == len(names) || names[next] != name {
			return notWellFormed("malformed XML declaration")
		}
		switch name {
		case "version":
			if value != "1.0" {
				return notWellFormed("unsupported XML version %s", short(value))
			}
		case "encoding":
			if !strings.EqualFold(value, "UTF-8") {
				return &Error{Condition: condUnsupportedEncoding, Text: "encoding " + short(value) + " not supported, only UTF-8"}
			}
		case "standalone":
			if value != "yes" && value != "no" {
				return notWellFormed("malformed XML declaration")
			}
		}
		next++
		rest = r
	}
	if next == 0 {
		return notWellFormed("XML declaration without version")
	}
	return nil
}

// pseudoAttr splits `name S? = S? 'value'` off the front of s.
func pseudoAttr(s string) (name, value, rest string, ok bool) {
	i := 0
	for i < len(s) && ('a' <= s[i] && s[i] <= 'z') {
		i++
	}
	name, s = s[:i], strings.TrimLeft(s[i:], " \t\r\n")
	if name == "" || !strings.HasPrefix(s, "=") {
		return "", "", "", false
	}
	s = strings.TrimLeft(s[1:], " \t\r\n")
	if s == "" || s[0] != '\'' && s[0] != '"' {
		return "", "", "", false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", "", false
	}
	return name, s[1 : 1+end], s[2+end:], true
}

// Package format converts text between IRC formatting codes and XEP-0393 message styling.
//
// IRC marks bold, italic, strikethrough and monospace with toggle codes (^B, ^], ^^, ^Q); XMPP
// clients render the plain-text directives *strong*, _emphasis_, ~strike~ and `pre` (XEP-0393).
// Underline, colours and reverse video have no XEP-0393 form and are dropped. Text for XMPP is
// also cleaned of everything XML 1.0 can't carry (other control characters, U+FFFE, U+FFFF,
// invalid UTF-8), which IRC lines may contain.
package format

import (
	"errors"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircfmt"
	"mellium.im/xmpp/styling"
)

// IRC formatting codes.
const (
	bold          = '\x02'
	italic        = '\x1d'
	strikethrough = '\x1e'
	monospace     = '\x11'
)

// MaxInput bounds the text either conversion formats; longer input is only cleaned. IRC lines are
// short, and a message body of this size is far beyond what a bridge relays.
const MaxInput = 64 << 10

// span is the XEP-0393 styling of a run of text, outermost first.
type span struct{ strong, emph, strike, pre bool }

// FromIRC turns an IRC message's text into XMPP body text with XEP-0393 styling.
func FromIRC(text string) string {
	if len(text) > MaxInput {
		return Clean(ircfmt.Strip(text))
	}
	if !strings.ContainsAny(text, "\x02\x03\x0f\x11\x16\x1d\x1e\x1f") {
		return Clean(text)
	}
	var b strings.Builder
	var cur span
	var run strings.Builder
	flush := func() {
		writeSpan(&b, run.String(), cur)
		run.Reset()
	}
	for _, chunk := range ircfmt.Split(text) {
		st := span{strong: chunk.Bold, emph: chunk.Italic, strike: chunk.Strikethrough, pre: chunk.Monospace}
		if st != cur {
			flush()
			cur = st
		}
		run.WriteString(chunk.Content)
	}
	flush()
	return Clean(b.String())
}

// writeSpan writes text with the directives of st around each of its lines' non-blank middles:
// XEP-0393 spans can't cross a line, begin after or end before whitespace, or be empty.
func writeSpan(b *strings.Builder, text string, st span) {
	if st == (span{}) {
		b.WriteString(text)
		return
	}
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		core := strings.TrimFunc(line, unicode.IsSpace)
		if core == "" {
			b.WriteString(line)
			continue
		}
		lead := line[:strings.Index(line, core)]
		trail := line[len(lead)+len(core):]
		open, close := directives(st)
		b.WriteString(lead)
		b.WriteString(open)
		b.WriteString(core)
		b.WriteString(close)
		b.WriteString(trail)
	}
}

// directives returns the opening and closing directives of st, with pre innermost (a pre span
// can hold no other styling).
func directives(st span) (open, close string) {
	var o, c []byte
	for _, d := range []struct {
		on bool
		ch byte
	}{{st.strong, '*'}, {st.emph, '_'}, {st.strike, '~'}, {st.pre, '`'}} {
		if d.on {
			o = append(o, d.ch)
			c = append([]byte{d.ch}, c...)
		}
	}
	return string(o), string(c)
}

// ToIRC turns an XMPP body with XEP-0393 styling into IRC text: span directives become IRC
// codes, preformatted blocks lose their fences and become monospace lines, quotes stay as they
// are. The text may have several lines; splitting them for IRC is the caller's business.
func ToIRC(text string) string {
	text = stripControls(text)
	if len(text) > MaxInput || !strings.ContainsAny(text, "*_~`") {
		return text
	}
	d := styling.NewDecoder(strings.NewReader(text))
	var b strings.Builder
	for d.Next() {
		tok := d.Token()
		st := d.Style()
		switch {
		case st&styling.SpanDirective != 0:
			b.WriteByte(spanCode(st))
		case st&styling.BlockPreDirective != 0:
			// The fence line itself (with its newline) disappears; the block's lines are monospace.
		case st&styling.BlockPre != 0:
			writeMonoLines(&b, string(tok.Data))
		default:
			b.Write(tok.Data)
		}
	}
	if err := d.Err(); err != nil && !errors.Is(err, io.EOF) {
		return text // a token too long for the decoder: send it as written
	}
	return b.String()
}

func spanCode(st styling.Style) byte {
	switch {
	case st&styling.SpanStrongDirective != 0:
		return bold
	case st&styling.SpanEmphDirective != 0:
		return italic
	case st&styling.SpanStrikeDirective != 0:
		return strikethrough
	default:
		return monospace
	}
}

// writeMonoLines writes each non-empty line of s between monospace codes, keeping newlines.
func writeMonoLines(b *strings.Builder, s string) {
	for _, line := range strings.SplitAfter(s, "\n") {
		body := strings.TrimSuffix(line, "\n")
		if body != "" {
			b.WriteByte(monospace)
			b.WriteString(body)
			b.WriteByte(monospace)
		}
		if len(body) < len(line) {
			b.WriteByte('\n')
		}
	}
}

// Clean makes text safe for an XML 1.0 body: invalid UTF-8 becomes U+FFFD, and control
// characters other than tab and newline, U+FFFE and U+FFFF are removed (CR LF becomes LF).
func Clean(text string) string {
	if cleanAlready(text) {
		return text
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if !xmlChar(r) {
			return -1
		}
		return r
	}, text)
}

func cleanAlready(text string) bool {
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && n == 1 || !xmlChar(r) {
			return false
		}
		i += n
	}
	return true
}

// xmlChar reports whether r may appear in a body: XML 1.0's Char production, minus CR (XML
// turns it into LF anyway) and the C0 controls other than tab and LF.
func xmlChar(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return true
	case r < 0x20 || r == '\r':
		return false
	case r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// stripControls removes what an IRC line must not carry from XMPP text before it is styled:
// IRC's own formatting codes (which would toggle styles the sender never chose), CTCP's \x01,
// and NUL; newlines stay for the caller's splitting.
func stripControls(text string) string {
	if !strings.ContainsAny(text, "\x00\x01\x02\x03\x0f\x11\x16\x1d\x1e\x1f") {
		return text
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case 0, 1, 2, 3, 0x0f, 0x11, 0x16, 0x1d, 0x1e, 0x1f:
			return -1
		}
		return r
	}, text)
}

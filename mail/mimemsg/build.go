package mimemsg

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/aldis-im/aldis/mail/siolabel"
)

// Outgoing is a plain-text mail to build. Every string may come from
// XMPP users (subjects, nicknames, bodies): Build keeps each header value
// on its one line whatever it holds.
type Outgoing struct {
	From       Address
	To         []Address
	Cc         []Address
	Subject    string
	Text       string
	MessageID  string // without angle brackets; required
	InReplyTo  string // without angle brackets
	References []string
	Date       time.Time // zero: now
	Label      *siolabel.Label
	Trace      string // this node's name for TraceHeader; "" adds none
	// Extra header fields (name, value), e.g. Auto-Submitted for reports.
	// Names must be tokens; values are cleaned like every other.
	Extra [][2]string
	// Attachments make the mail multipart/mixed: the text, then each file
	// in base64.
	Attachments []Attachment
}

// ErrHeader is returned for a value that cannot be put in a header at
// all: an address that is not an address, a header name that is not a
// token.
var ErrHeader = errors.New("invalid header value")

// Build renders o as an RFC 5322 message in UTF-8 text/plain, quoted-
// printable, with CRLF line ends.
func Build(o Outgoing) ([]byte, error) {
	if o.MessageID == "" {
		return nil, fmt.Errorf("%w: no Message-ID", ErrHeader)
	}
	var b bytes.Buffer
	from, err := FormatAddress(o.From)
	if err != nil {
		return nil, fmt.Errorf("From: %w", err)
	}
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	if o.Trace != "" {
		if !isToken(o.Trace) {
			return nil, fmt.Errorf("%w: trace name %q", ErrHeader, o.Trace)
		}
		writeField(&b, TraceHeader, o.Trace)
	}
	writeField(&b, "Date", date.Format(time.RFC1123Z))
	writeField(&b, "From", from)
	for _, l := range []struct {
		name  string
		addrs []Address
	}{{"To", o.To}, {"Cc", o.Cc}} {
		if len(l.addrs) == 0 {
			continue
		}
		var parts []string
		for _, a := range l.addrs {
			s, err := FormatAddress(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", l.name, err)
			}
			parts = append(parts, s)
		}
		writeField(&b, l.name, strings.Join(parts, ", "))
	}
	if o.Subject != "" {
		writeField(&b, "Subject", mime.QEncoding.Encode("utf-8", clean(o.Subject)))
	}
	id, err := msgID(o.MessageID)
	if err != nil {
		return nil, fmt.Errorf("Message-ID: %w", err)
	}
	writeField(&b, "Message-ID", id)
	if o.InReplyTo != "" {
		id, err := msgID(o.InReplyTo)
		if err != nil {
			return nil, fmt.Errorf("In-Reply-To: %w", err)
		}
		writeField(&b, "In-Reply-To", id)
	}
	if len(o.References) > 0 {
		var ids []string
		for _, r := range o.References {
			id, err := msgID(r)
			if err != nil {
				return nil, fmt.Errorf("References: %w", err)
			}
			ids = append(ids, id)
		}
		writeField(&b, "References", strings.Join(ids, " "))
	}
	if o.Label != nil {
		b.WriteString(o.Label.Format())
		b.WriteString("\r\n")
	}
	for _, f := range o.Extra {
		if !isToken(f[0]) {
			return nil, fmt.Errorf("%w: field name %q", ErrHeader, f[0])
		}
		writeField(&b, f[0], mime.QEncoding.Encode("utf-8", clean(f[1])))
	}
	writeField(&b, "MIME-Version", "1.0")
	if len(o.Attachments) == 0 {
		writeField(&b, "Content-Type", "text/plain; charset=utf-8")
		writeField(&b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		writeQP(&b, o.Text)
		return b.Bytes(), nil
	}
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	boundary := "aldis-" + hex.EncodeToString(rb[:]) // never in base64 or QP output
	writeField(&b, "Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	b.WriteString("\r\n--" + boundary + "\r\n")
	writeField(&b, "Content-Type", "text/plain; charset=utf-8")
	writeField(&b, "Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	writeQP(&b, o.Text)
	for _, a := range o.Attachments {
		ct := "application/octet-stream"
		if mt, params, err := mime.ParseMediaType(a.ContentType); err == nil {
			if f := mime.FormatMediaType(mt, params); f != "" {
				ct = f
			}
		}
		name := clean(a.Filename)
		if name == "" {
			name = "attachment"
		}
		b.WriteString("\r\n--" + boundary + "\r\n")
		writeField(&b, "Content-Type", ct)
		writeField(&b, "Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		writeField(&b, "Content-Transfer-Encoding", "base64")
		b.WriteString("\r\n")
		enc := base64.StdEncoding.EncodeToString(a.Data)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// FormatAddress renders a mailbox with its display name encoded per RFC
// 2047 where needed; ErrHeader if Addr is not a plain addr-spec.
func FormatAddress(a Address) (string, error) {
	if a.Addr == "" || strings.ContainsFunc(a.Addr, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", fmt.Errorf("%w: address %q", ErrHeader, a.Addr)
	}
	// net/mail quotes the local part ("john smith"@example.com) and quotes
	// or encodes the name as needed; what it writes must read back as the
	// same address, which refuses what no quoting carries.
	s := (&mail.Address{Name: clean(a.Name), Address: a.Addr}).String()
	back, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("%w: address %q: %v", ErrHeader, a.Addr, err)
	}
	if back.Address != a.Addr {
		return "", fmt.Errorf("%w: address %q does not survive quoting", ErrHeader, a.Addr)
	}
	return s, nil
}

// msgID renders a message ID in angle brackets; ErrHeader if it holds
// anything but printable ASCII without spaces or brackets.
func msgID(id string) (string, error) {
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if id == "" || len(id) > 250 || strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || r == '<' || r == '>'
	}) {
		return "", fmt.Errorf("%w: message ID %q", ErrHeader, id)
	}
	return "<" + id + ">", nil
}

func isToken(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// writeField writes "Name: value" folded at spaces to lines of at most 78
// characters where it can be. value must already be one line (callers
// pass encoded or cleaned values); any CR or LF left is replaced, as a
// last line of defence against header injection.
func writeField(b *bytes.Buffer, name, value string) {
	value = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, value)
	b.WriteString(name + ":")
	col := len(name) + 1
	for i, w := range strings.Split(value, " ") {
		if i > 0 && col+1+len(w) > 78 && col > 1 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		col += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// writeQP writes text as quoted-printable with CRLF line ends and soft
// breaks at 76 characters.
func writeQP(b *bytes.Buffer, text string) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	const hex = "0123456789ABCDEF"
	for _, line := range strings.Split(text, "\n") {
		col := 0
		for i := 0; i < len(line); i++ {
			c := line[i]
			var enc string
			switch {
			case (c == ' ' || c == '\t') && i == len(line)-1:
				enc = "=" + string(hex[c>>4]) + string(hex[c&15])
			case c == '=' || c < ' ' && c != '\t' || c > '~':
				enc = "=" + string(hex[c>>4]) + string(hex[c&15])
			case c == '.' && col == 0:
				// Not needed for SMTP (which dot-stuffs), but some
				// relays mangle lines that start with a dot.
				enc = "=2E"
			default:
				enc = string(c)
			}
			if col+len(enc) > 75 {
				b.WriteString("=\r\n")
				col = 0
			}
			b.WriteString(enc)
			col += len(enc)
		}
		b.WriteString("\r\n")
	}
}

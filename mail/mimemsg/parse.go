// Package mimemsg reads real-world internet mail into a plain structure and builds outgoing mail that no header value can break.
package mimemsg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decodes non-UTF-8 charsets
	"github.com/emersion/go-message/mail"
	"golang.org/x/net/html"

	"github.com/aldis-im/aldis/mail/siolabel"
)

// TraceHeader is the header field each Aldis node adds to mail it
// handles, naming the node: seeing its own name again means a loop.
const TraceHeader = "X-Aldis-Trace"

// ErrMalformed is returned for mail that cannot be read as MIME.
var ErrMalformed = errors.New("malformed message")

// Limits bound what Parse keeps; zero fields take the defaults.
type Limits struct {
	MaxHeaderBytes  int // the top-level header (default 256 KiB)
	MaxText         int // the body text kept, bytes (default 1 MiB); more is cut
	MaxAttachment   int // one attachment, bytes (default 10 MiB); a larger one is left out with a note
	MaxAttachments  int // attachments kept (default 32)
	MaxParts        int // MIME parts in all (default 256); more is ErrMalformed
	MaxDepth        int // multipart nesting (default 8); deeper is ErrMalformed
	MaxReferences   int // message IDs kept from References (default 50, the most recent)
	MaxHeaderFields int // header fields kept in Header (default 200)
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxHeaderBytes, 256<<10)
	def(&l.MaxText, 1<<20)
	def(&l.MaxAttachment, 10<<20)
	def(&l.MaxAttachments, 32)
	def(&l.MaxParts, 256)
	def(&l.MaxDepth, 8)
	def(&l.MaxReferences, 50)
	def(&l.MaxHeaderFields, 200)
	return l
}

// Address is a mailbox: an address and an optional display name.
type Address struct {
	Name string
	Addr string
}

// Attachment is a part kept as a file.
type Attachment struct {
	Filename    string
	ContentType string
	Data        []byte
}

// Message is what Parse reads from a mail.
type Message struct {
	From       []Address
	Sender     *Address
	To, Cc     []Address
	ReplyTo    []Address
	Subject    string // RFC 2047 decoded
	MessageID  string // without angle brackets
	InReplyTo  []string
	References []string
	Date       time.Time // zero if missing or unreadable
	// Text is the body as UTF-8 text: the first text/plain part (so the
	// plain alternative of multipart/alternative), else text converted
	// from the first text/html part.
	Text        string
	Attachments []Attachment
	// Label is the SIO-Label header field, nil if absent; LabelErr says why
	// a present one could not be read (Label is nil then).
	Label    *siolabel.Label
	LabelErr error
	// Hops counts Received header fields; Trace lists the TraceHeader
	// values, oldest last.
	Hops  int
	Trace []string
	// Header holds the top-level header fields, in order, as (name,
	// raw value) pairs.
	Header [][2]string
	// Notes say what was left out or changed: parts dropped, text cut,
	// charsets unknown.
	Notes []string
}

// Parse reads a mail message. It fails with ErrMalformed only when the
// message cannot be read at all (a broken header, nesting or part count
// over the limits, a broken multipart structure); smaller problems, such
// as an unknown charset, end up in Notes.
func Parse(r io.Reader, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	e, err := message.ReadWithOptions(r, &message.ReadOptions{MaxHeaderBytes: int64(lim.MaxHeaderBytes)})
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	m := &Message{}
	h := mail.Header{Header: e.Header}
	m.readHeader(h, lim)

	var plain, htmlText *string
	parts := 0
	walkErr := e.Walk(func(path []int, p *message.Entity, perr error) error {
		if parts++; parts > lim.MaxParts {
			return fmt.Errorf("%w: more than %d MIME parts", ErrMalformed, lim.MaxParts)
		}
		if len(path) > lim.MaxDepth {
			return fmt.Errorf("%w: multipart nesting deeper than %d", ErrMalformed, lim.MaxDepth)
		}
		if perr != nil {
			m.Notes = append(m.Notes, fmt.Sprintf("part %v: %v (kept undecoded)", path, perr))
		}
		if p.MultipartReader() != nil {
			return nil
		}
		ct, params, _ := p.Header.ContentType()
		disp, dparams, _ := p.Header.ContentDisposition()
		isText := ct == "text/plain" || ct == "text/html" || ct == ""
		if disp != "attachment" && isText && (plain == nil || (ct == "text/html" && htmlText == nil)) {
			b, cut, err := readLimited(p.Body, lim.MaxText)
			if err != nil {
				return fmt.Errorf("%w: part %v: %v", ErrMalformed, path, err)
			}
			if cut {
				m.Notes = append(m.Notes, fmt.Sprintf("text cut at %d bytes", lim.MaxText))
			}
			s := strings.ToValidUTF8(string(b), "\uFFFD")
			if ct == "text/html" {
				if htmlText == nil {
					t := htmlToText(s)
					htmlText = &t
				}
			} else if plain == nil {
				plain = &s
			}
			return nil
		}
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		if ct == "" {
			ct = "text/plain"
		}
		if ct == "message/rfc822" && name == "" {
			name = "message.eml"
		}
		if len(m.Attachments) >= lim.MaxAttachments {
			m.Notes = append(m.Notes, fmt.Sprintf("attachment %q (%s) left out: more than %d attachments", name, ct, lim.MaxAttachments))
			_, _ = io.Copy(io.Discard, p.Body)
			return nil
		}
		b, cut, err := readLimited(p.Body, lim.MaxAttachment)
		if err != nil {
			return fmt.Errorf("%w: part %v: %v", ErrMalformed, path, err)
		}
		if cut {
			m.Notes = append(m.Notes, fmt.Sprintf("attachment %q (%s) left out: larger than %d bytes", name, ct, lim.MaxAttachment))
			_, _ = io.Copy(io.Discard, p.Body)
			return nil
		}
		m.Attachments = append(m.Attachments, Attachment{Filename: cleanFilename(name), ContentType: ct, Data: b})
		return nil
	})
	if walkErr != nil {
		if errors.Is(walkErr, ErrMalformed) {
			return nil, walkErr
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, walkErr)
	}
	switch {
	case plain != nil:
		m.Text = *plain
	case htmlText != nil:
		m.Text = *htmlText
	}
	return m, nil
}

func (m *Message) readHeader(h mail.Header, lim Limits) {
	addrs := func(key string) []Address {
		list, err := h.AddressList(key)
		if err != nil {
			if h.Get(key) != "" {
				m.Notes = append(m.Notes, fmt.Sprintf("%s: unreadable address list", key))
			}
			return nil
		}
		out := make([]Address, 0, len(list))
		for _, a := range list {
			out = append(out, Address{Name: clean(a.Name), Addr: a.Address})
		}
		return out
	}
	m.From = addrs("From")
	if s := addrs("Sender"); len(s) > 0 {
		m.Sender = &s[0]
	}
	m.To = addrs("To")
	m.Cc = addrs("Cc")
	m.ReplyTo = addrs("Reply-To")
	if s, err := h.Subject(); err == nil {
		m.Subject = clean(s)
	} else {
		m.Subject = clean(h.Get("Subject"))
	}
	if id, err := h.MessageID(); err == nil {
		m.MessageID = id
	}
	if ids, err := h.MsgIDList("In-Reply-To"); err == nil {
		m.InReplyTo = ids
	}
	if ids, err := h.MsgIDList("References"); err == nil {
		if len(ids) > lim.MaxReferences {
			ids = ids[len(ids)-lim.MaxReferences:]
		}
		m.References = ids
	}
	if d, err := h.Date(); err == nil {
		m.Date = d
	}
	fields := h.Fields()
	for fields.Next() {
		k := fields.Key()
		switch {
		case strings.EqualFold(k, "Received"):
			m.Hops++
		case strings.EqualFold(k, TraceHeader):
			m.Trace = append(m.Trace, strings.TrimSpace(fields.Value()))
		}
		if len(m.Header) < lim.MaxHeaderFields {
			m.Header = append(m.Header, [2]string{k, fields.Value()})
		}
	}
	if vs := h.Values(siolabel.Header); len(vs) > 1 {
		m.LabelErr = fmt.Errorf("%w: %d header fields, at most one allowed", siolabel.ErrMalformed, len(vs))
	} else if len(vs) == 1 {
		l, err := siolabel.Parse(vs[0])
		if err != nil {
			m.LabelErr = err
		} else {
			m.Label = &l
		}
	}
}

// readLimited reads up to max bytes; cut reports there was more.
func readLimited(r io.Reader, max int) (b []byte, cut bool, err error) {
	b, err = io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, false, err
	}
	if len(b) > max {
		return b[:max], true, nil
	}
	return b, false, nil
}

// clean makes a decoded header value safe to show and to reuse: valid
// UTF-8, no control characters, one line.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' '
	}), " ")
}

// cleanFilename keeps the last path element of a decoded file name.
func cleanFilename(name string) string {
	if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
		name = dec
	}
	name = clean(name)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if name == "" || name == "." || name == ".." {
		return "attachment"
	}
	if len(name) > 200 {
		for !utf8.ValidString(name[:200]) {
			name = name[:len(name)-1]
		}
		name = name[:200]
	}
	return name
}

// htmlToText keeps the text of an HTML document, with line breaks for
// block elements, and drops scripts and styles.
func htmlToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b bytes.Buffer
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return strings.TrimSpace(collapseBlank(b.String()))
		case html.TextToken:
			if t := z.Text(); skip == 0 && len(t) > 0 {
				words := bytes.Fields(t)
				if isSpace(t[0]) && b.Len() > 0 && !isSpace(b.Bytes()[b.Len()-1]) {
					b.WriteByte(' ')
				}
				b.Write(bytes.Join(words, []byte(" ")))
				if len(words) > 0 && isSpace(t[len(t)-1]) {
					b.WriteByte(' ')
				}
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head":
				skip++
			case "br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table":
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head":
				if skip > 0 {
					skip--
				}
			case "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table":
				b.WriteByte('\n')
			}
		}
	}
}

func collapseBlank(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	blank := 0
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			if blank++; blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

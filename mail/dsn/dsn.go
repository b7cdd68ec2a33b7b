// Package dsn builds RFC 3464 delivery status notifications (multipart/report bounces) for mail that could not be delivered.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"regexp"
	"strings"
	"time"

	"github.com/aldis-im/aldis/mail/mimemsg"
)

// Failure describes one recipient's failed delivery.
type Failure struct {
	Recipient string // the original recipient address
	Status    string // enhanced status code, e.g. "5.1.1"; "" derives it from Diagnostic or uses 5.0.0
	// Diagnostic is the remote server's reply or our own reason, one line.
	Diagnostic string
	RemoteMTA  string // the server that answered, if any
	LastTry    time.Time
}

// Report is a bounce to send back to the original sender.
type Report struct {
	ReportingMTA string // our host name
	To           string // the original reverse-path
	Failures     []Failure
	// Original is the undelivered message; only its header is returned.
	Original  []byte
	Arrival   time.Time
	MessageID string // of the report itself, without brackets
	Trace     string // this node's trace name, see mimemsg.TraceHeader
}

var statusRE = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)

// Build renders the report. The envelope sender of a report must be empty
// ("<>"), so that it never bounces in turn.
func Build(r Report) ([]byte, error) {
	boundary := randomBoundary()
	var b bytes.Buffer
	from, err := mimemsg.FormatAddress(mimemsg.Address{Name: "Mail Delivery System", Addr: "MAILER-DAEMON@" + r.ReportingMTA})
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	to, err := mimemsg.FormatAddress(mimemsg.Address{Addr: r.To})
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	field := func(k, v string) { b.WriteString(k + ": " + oneLine(v) + "\r\n") }
	if r.Trace != "" {
		field(mimemsg.TraceHeader, r.Trace)
	}
	field("Date", time.Now().Format(time.RFC1123Z))
	field("From", from)
	field("To", to)
	field("Subject", "Undelivered Mail Returned to Sender")
	field("Message-ID", "<"+r.MessageID+">")
	field("Auto-Submitted", "auto-replied")
	field("MIME-Version", "1.0")
	field("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\n")

	// The human-readable part.
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	fmt.Fprintf(&b, "This is the mail system at host %s.\r\n\r\n", r.ReportingMTA)
	b.WriteString("Your message could not be delivered to one or more recipients.\r\nIt has been returned with this report.\r\n\r\n")
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "<%s>: %s\r\n", oneLine(f.Recipient), oneLine(f.Diagnostic))
	}
	b.WriteString("\r\n")

	// The machine-readable part (RFC 3464 §2).
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/delivery-status\r\n\r\n")
	field("Reporting-MTA", "dns; "+r.ReportingMTA)
	if !r.Arrival.IsZero() {
		field("Arrival-Date", r.Arrival.Format(time.RFC1123Z))
	}
	for _, f := range r.Failures {
		b.WriteString("\r\n")
		field("Final-Recipient", "rfc822; "+f.Recipient)
		field("Action", "failed")
		field("Status", status(f))
		if f.RemoteMTA != "" {
			field("Remote-MTA", "dns; "+f.RemoteMTA)
		}
		if f.Diagnostic != "" {
			field("Diagnostic-Code", "smtp; "+f.Diagnostic)
		}
		if !f.LastTry.IsZero() {
			field("Last-Attempt-Date", f.LastTry.Format(time.RFC1123Z))
		}
	}
	b.WriteString("\r\n")

	// The original header (RFC 3462 text/rfc822-headers).
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/rfc822-headers\r\n\r\n")
	hdr, _, _ := bytes.Cut(r.Original, []byte("\r\n\r\n"))
	if len(hdr) > 64<<10 {
		hdr = hdr[:64<<10]
	}
	b.Write(hdr)
	b.WriteString("\r\n\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// status picks the enhanced status code of a failure.
func status(f Failure) string {
	if f.Status != "" {
		return f.Status
	}
	if m := statusRE.FindString(f.Diagnostic); m != "" && m[0] == '5' {
		return m
	}
	return "5.0.0"
}

// oneLine keeps a value on one header line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 900 {
		s = s[:900]
	}
	if !isASCII(s) {
		return mime.QEncoding.Encode("utf-8", s)
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func randomBoundary() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "=_dsn_" + hex.EncodeToString(b[:])
}

package mimemsg

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
)

// A mail with attachments reads back with its text and files.
func TestBuildAttachments(t *testing.T) {
	data, err := Build(Outgoing{
		From: Address{Addr: "alice@example.org"}, To: []Address{{Addr: "bob@example.com"}},
		Subject: "files", Text: "see the files", MessageID: "x1@example.org",
		Attachments: []Attachment{
			{Filename: "r\u00e9sum\u00e9.pdf", ContentType: "application/pdf", Data: []byte("%PDF-1.4 " + strings.Repeat("x", 200))},
			{Filename: "evil\r\nBcc: x@y", ContentType: "text/plain\r\nBcc: x@y", Data: []byte("hi")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "\r\nBcc:") {
		t.Fatalf("header injected:\n%s", data)
	}
	m, err := Parse(bytes.NewReader(data), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(m.Text) != "see the files" || len(m.Attachments) != 2 {
		t.Fatalf("read back %q with %d attachments", m.Text, len(m.Attachments))
	}
	a := m.Attachments[0]
	if a.Filename != "r\u00e9sum\u00e9.pdf" || a.ContentType != "application/pdf" || !strings.HasPrefix(string(a.Data), "%PDF-1.4 xxx") {
		t.Fatalf("attachment %q %q %q", a.Filename, a.ContentType, a.Data[:12])
	}
	if b := m.Attachments[1]; string(b.Data) != "hi" || b.ContentType != "application/octet-stream" {
		t.Fatalf("second attachment %+v", b)
	}
}

// An address FormatAddress writes stays on one line and reads back as the
// same address: quoting ("john smith"@x, "x@y"@x) never changes it.
func FuzzFormatAddress(f *testing.F) {
	for _, a := range []string{"a@example.org", "john smith@example.org", "x@y@example.org", `q"\@x`, "a\r\nBcc: v@x@y", "élise@x"} {
		f.Add("Name", a)
	}
	f.Fuzz(func(t *testing.T, name, addr string) {
		s, err := FormatAddress(Address{Name: name, Addr: addr})
		if err != nil {
			return
		}
		if strings.ContainsAny(s, "\r\n") {
			t.Fatalf("%q written over lines: %q", addr, s)
		}
		back, err := mail.ParseAddress(s)
		if err != nil || back.Address != addr {
			t.Fatalf("%q written as %q reads back as %v, %v", addr, s, back, err)
		}
	})
}

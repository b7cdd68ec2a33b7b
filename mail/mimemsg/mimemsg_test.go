package mimemsg

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/mail/siolabel"
)

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func TestParseAlternativeQPCharsets(t *testing.T) {
	raw := crlf(`Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000
Received: from c by a; Mon, 1 Jan 2024 00:00:00 +0000
X-Aldis-Trace: node1
From: =?iso-8859-1?q?J=F6rg_M=FCller?= <jorg@example.de>
To: ops@mail.example.org, "Bob" <bob@mail.example.org>
Subject: =?utf-8?B?w4ljaGFuZ2U=?= of =?iso-8859-1?q?r=E9sum=E9?=
Message-ID: <abc@example.de>
In-Reply-To: <root@example.de>
References: <root@example.de> <mid@example.de>
Date: Tue, 2 Jan 2024 10:00:00 +0100
SIO-Label: marking="SECRET"; fgcolor=black; bgcolor=red; type=":ess"; label="MQYCAQQGASk="
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/html; charset=utf-8

<html><head><style>p{}</style></head><body><p>HTML version</p></body></html>
--alt
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe aus M=FCnchen, a long line that is soft=
 broken.
--alt--
--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="../../etc/report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
`)
	m, err := Parse(strings.NewReader(raw), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Grüße aus München, a long line that is soft broken.\r\n" && m.Text != "Grüße aus München, a long line that is soft broken." {
		t.Errorf("Text = %q", m.Text)
	}
	if m.Subject != "Échange of résumé" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if len(m.From) != 1 || m.From[0].Name != "Jörg Müller" || m.From[0].Addr != "jorg@example.de" {
		t.Errorf("From = %+v", m.From)
	}
	if len(m.To) != 2 || m.To[1].Addr != "bob@mail.example.org" {
		t.Errorf("To = %+v", m.To)
	}
	if m.MessageID != "abc@example.de" || len(m.InReplyTo) != 1 || m.InReplyTo[0] != "root@example.de" || len(m.References) != 2 {
		t.Errorf("ids: %q %q %q", m.MessageID, m.InReplyTo, m.References)
	}
	if m.Date.IsZero() || m.Hops != 2 || len(m.Trace) != 1 || m.Trace[0] != "node1" {
		t.Errorf("date %v hops %d trace %q", m.Date, m.Hops, m.Trace)
	}
	if m.Label == nil || m.Label.Marking != "SECRET" || m.Label.Label != "MQYCAQQGASk=" {
		t.Errorf("Label = %+v (%v)", m.Label, m.LabelErr)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "report.pdf" || string(m.Attachments[0].Data) != "%PDF-1.4\n" ||
		m.Attachments[0].ContentType != "application/pdf" {
		t.Errorf("Attachments = %+v", m.Attachments)
	}
}

func TestParseHTMLOnlyAndLimits(t *testing.T) {
	raw := crlf(`From: a@example.org
Subject: x
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/html; charset=utf-8

<p>Hello <b>world</b></p><script>alert(1)</script><p>second</p>
--b
Content-Type: image/png
Content-Disposition: attachment; filename=big.png

` + strings.Repeat("A", 200) + `
--b--
`)
	m, err := Parse(strings.NewReader(raw), Limits{MaxAttachment: 100})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Hello world\n\nsecond" {
		t.Errorf("Text = %q", m.Text)
	}
	if len(m.Attachments) != 0 || len(m.Notes) == 0 || !strings.Contains(m.Notes[0], "big.png") {
		t.Errorf("attachments %v notes %q", m.Attachments, m.Notes)
	}
}

func TestParseUnknownCharsetAndBadLabel(t *testing.T) {
	raw := crlf(`From: a@example.org
SIO-Label: label="x"
Content-Type: text/plain; charset=x-unknown-42

body text
`)
	m, err := Parse(strings.NewReader(raw), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, "body text") {
		t.Errorf("Text = %q", m.Text)
	}
	if m.Label != nil || !errors.Is(m.LabelErr, siolabel.ErrMalformed) {
		t.Errorf("label %v err %v", m.Label, m.LabelErr)
	}
}

func TestParseMalformed(t *testing.T) {
	deep := "Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
	for i := 1; i < 12; i++ {
		deep += "--b" + string(rune('0'+i-1)) + "\r\nContent-Type: multipart/mixed; boundary=b" + string(rune('0'+i)) + "\r\n\r\n"
	}
	for name, raw := range map[string]string{
		"header line without colon": "From a@example.org\r\nnot a header\r\n\r\nbody",
		"too deep":                  deep,
		"header too big":            "X: " + strings.Repeat("a", 300<<10) + "\r\n\r\n",
	} {
		if _, err := Parse(strings.NewReader(raw), Limits{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// TestBuildInjection: values from XMPP users cannot add header fields.
func TestBuildInjection(t *testing.T) {
	out, err := Build(Outgoing{
		From:      Address{Name: "Eve\r\nBcc: victim@example.org", Addr: "eve@example.org"},
		To:        []Address{{Name: "Bob \"the\" Builder", Addr: "bob@example.net"}},
		Subject:   "hi\r\nBcc: victim@example.org\r\n\r\nbody",
		Text:      "line1\n.\nline3 = with equals and ünïcode " + strings.Repeat("x", 100),
		MessageID: "1@aldis",
		InReplyTo: "root@example.net",
		Label:     &siolabel.Label{Marking: "SECRET", Type: siolabel.TypeESS, Label: "MQYCAQQGASk="},
		Trace:     "node1",
		Extra:     [][2]string{{"Auto-Submitted", "auto-replied\r\nX-Evil: 1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	hdr, _, _ := strings.Cut(s, "\r\n\r\n")
	for _, line := range strings.Split(hdr, "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "bcc:") || strings.HasPrefix(line, "X-Evil") {
			t.Errorf("injected header line %q", line)
		}
		if len(line) > 998 {
			t.Errorf("line too long")
		}
	}
	if strings.Contains(s, "\n") && strings.Count(s, "\n") != strings.Count(s, "\r\n") {
		t.Error("bare LF in output")
	}
	m, err := Parse(bytes.NewReader(out), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "hi Bcc: victim@example.org body" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if !strings.HasPrefix(m.Text, "line1\r\n.\r\nline3 = with equals and ünïcode x") {
		t.Errorf("Text = %q", m.Text)
	}
	if m.Label == nil || m.Label.Label != "MQYCAQQGASk=" || len(m.Trace) != 1 || m.InReplyTo[0] != "root@example.net" {
		t.Errorf("label %v trace %v in-reply-to %v", m.Label, m.Trace, m.InReplyTo)
	}
	if len(m.From) != 1 || m.From[0].Addr != "eve@example.org" || len(m.To) != 1 {
		t.Errorf("From %v To %v", m.From, m.To)
	}
	for _, bad := range []Outgoing{
		{From: Address{Addr: "a@b\r\nBcc: x@y"}, MessageID: "1@x"},
		{From: Address{Addr: "a@b"}, MessageID: "1@x>\r\nBcc: <y"},
		{From: Address{Addr: "a@b"}, MessageID: "1@x", Extra: [][2]string{{"Bad: name", "v"}}},
	} {
		if _, err := Build(bad); !errors.Is(err, ErrHeader) {
			t.Errorf("Build(%+v) = %v, want ErrHeader", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: =?utf-8?q?x?=\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n"))
	f.Add([]byte("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n5OQ=\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		m, err := Parse(bytes.NewReader(b), Limits{MaxText: 4096, MaxAttachment: 4096, MaxParts: 64})
		if err != nil {
			return
		}
		if len(m.Text) > 4096*4 || len(m.Attachments) > 32 {
			t.Fatalf("limits not kept: text %d attachments %d", len(m.Text), len(m.Attachments))
		}
		if strings.ContainsAny(m.Subject, "\r\n") {
			t.Fatalf("subject with a line break: %q", m.Subject)
		}
	})
}

func FuzzBuild(f *testing.F) {
	f.Add("Eve", "subject", "text", "id@x")
	f.Fuzz(func(t *testing.T, name, subject, text, id string) {
		out, err := Build(Outgoing{From: Address{Name: name, Addr: "a@example.org"}, To: []Address{{Name: name, Addr: "b@example.net"}},
			Subject: subject, Text: text, MessageID: id})
		if err != nil {
			return
		}
		hdr, _, _ := strings.Cut(string(out), "\r\n\r\n")
		for _, line := range strings.Split(hdr, "\r\n") {
			if line == "" || line[0] == ' ' {
				continue
			}
			k, _, ok := strings.Cut(line, ":")
			switch k {
			case "Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding":
			default:
				t.Fatalf("unexpected header line %q (ok %v)", line, ok)
			}
		}
	})
}

package dsn

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
)

func TestBuild(t *testing.T) {
	orig := []byte("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nsecret body\r\n")
	out, err := Build(Report{
		ReportingMTA: "gw.example.org",
		To:           "alice@example.org",
		Failures: []Failure{{
			Recipient: "bob@example.net", Diagnostic: "550 5.1.1 <bob@example.net>: no such user\r\nInjected: yes",
			RemoteMTA: "mx.example.net", LastTry: time.Now(),
		}},
		Original:  orig,
		Arrival:   time.Now(),
		MessageID: "dsn1@gw.example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := message.Read(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	ct, params, _ := e.Header.ContentType()
	if ct != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Errorf("Content-Type %s %v", ct, params)
	}
	if e.Header.Get("Auto-Submitted") != "auto-replied" || e.Header.Get("Injected") != "" {
		t.Errorf("header %v", e.Header)
	}
	var types []string
	var status string
	mr := e.MultipartReader()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := p.Header.ContentType()
		types = append(types, pt)
		b, _ := io.ReadAll(p.Body)
		if pt == "message/delivery-status" {
			status = string(b)
		}
		if pt == "text/rfc822-headers" && (!strings.Contains(string(b), "Subject: hello") || strings.Contains(string(b), "secret body")) {
			t.Errorf("returned header part %q", b)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Errorf("parts %v", types)
	}
	for _, want := range []string{"Reporting-MTA: dns; gw.example.org", "Final-Recipient: rfc822; bob@example.net",
		"Action: failed", "Status: 5.1.1", "Remote-MTA: dns; mx.example.net", "Diagnostic-Code: smtp; 550 5.1.1"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "\nInjected") {
		t.Error("diagnostic broke out of its field")
	}
}

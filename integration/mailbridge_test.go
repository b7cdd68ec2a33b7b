package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMailBridge: the mail ⇄ XMPP bridge end to end, with labels on under
// the shipped policy. swaks sends mail into aldis; an XMPP user (mellium)
// gets it with subject and thread and answers; the aiosmtpd sink gets the
// answer threaded; mail to a room address becomes groupchat; a message to
// an escaped JID becomes mail with a subject that cannot inject headers;
// labels above a mail domain's clearance are refused both ways with nothing
// sent.
func TestMailBridge(t *testing.T) {
	integration(t)
	requireMailPeers(t)
	sink := startSink(t)
	policy, err := filepath.Abs("../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	domain := "x" + randHex(4) + ".example"
	gw := "mail." + domain
	mapFile := filepath.Join(t.TempDir(), "mail.toml")
	err = os.WriteFile(mapFile, []byte(fmt.Sprintf(`
[[user]]
address = "alice@%[1]s"
jid = "alice@%[2]s"

[[room]]
address = "ops@%[1]s"
room = "ops@conference.%[2]s"
send_to = ["list@relay.example"]

[[domain]]
name = "partner.example"
clearance = "UNCLASSIFIED"

[[domain]]
name = "relay.example"
clearance = "UNCLASSIFIED"
`, gw, domain)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	extra := mailConfig(domain, sink.Addr) + fmt.Sprintf("maps = [%q]\n", mapFile)
	s := startServer(t, serverOpts{Domain: domain, PolicyFile: policy, Extra: extra})
	if out, errOut, code := aldis(t, "", "check", "--config", s.ConfigPath); code != 0 {
		t.Fatalf("aldis check: %d %s %s", code, out, errOut)
	}
	addr := smtpAddr(t, s)
	s.AddUser("alice", "alice-secret")
	if out, errOut, code := s.User("", "clearance", "alice", "SECRET"); code != 0 {
		t.Fatalf("aldis user clearance: %d %s %s", code, out, errOut)
	}
	alice := s.login(t, "alice", "alice-secret")
	alice.Send("<presence/>")
	bob := `bob\40partner.example@` + gw

	// Mail in: a message to alice, with its subject and a thread.
	out, ok := swaks(t, addr, "--from", "bob@partner.example", "--to", "alice@"+gw,
		"--header", "Subject: link status", "--header", "Message-Id: <m1@partner.example>", "--body", "The link is down.")
	if !ok {
		t.Fatalf("swaks:\n%s", out)
	}
	m := alice.Expect("the mail as a message", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("from") == bob && strings.Contains(e.ChildText("", "body"), "The link is down.")
	})
	thread := m.ChildText("", "thread")
	if m.ChildText("", "subject") != "link status" || thread == "" {
		t.Fatalf("message %s", m)
	}
	if m.Child("urn:xmpp:sec-label:0", "securitylabel") == nil {
		t.Errorf("no label stamped: %s", m)
	}

	// Alice answers in the thread: threaded mail reaches the sink.
	alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='r1'><body>Fixing it.</body><thread>%s</thread></message>", bob, thread))
	msgs := sink.WaitCount(t, 1)
	r := msgs[0]
	if r.From != "alice@"+gw || len(r.Rcpts) != 1 || r.Rcpts[0] != "bob@partner.example" {
		t.Errorf("reply envelope %q → %q", r.From, r.Rcpts)
	}
	for _, want := range []string{"In-Reply-To: <m1@partner.example>", "References: <m1@partner.example>", "Subject: Re: link status",
		"X-Aldis-Trace: gw." + domain, "SIO-Label: marking=\"NATO UNCLASSIFIED\""} {
		if !strings.Contains(r.Data, want) {
			t.Errorf("reply lacks %q:\n%s", want, r.Data)
		}
	}

	// Mail to the room's address becomes groupchat in the room.
	room := "ops@conference." + domain
	createRoom(alice, room, "alice")
	out, ok = swaks(t, addr, "--from", "bob@partner.example", "--to", "ops@"+gw,
		"--header", "Subject: for the room", "--header", "Message-Id: <room1@partner.example>", "--body", "Everyone: the link is down.")
	if !ok {
		t.Fatalf("swaks to the room:\n%s", out)
	}
	g := alice.Expect("the mail as groupchat", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "groupchat" && strings.HasPrefix(e.Attr("from"), room+"/") &&
			strings.Contains(e.ChildText("", "body"), "for the room")
	})
	if !strings.Contains(g.ChildText("", "body"), "Everyone: the link is down.") || g.ChildText("", "thread") == "" {
		t.Errorf("groupchat %s", g)
	}
	// Alice answers in the room: the room's list gets it by mail.
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>Noted.</body><thread>%s</thread></message>", room, g.ChildText("", "thread")))
	msgs = sink.WaitCount(t, 2)
	if l := msgs[1]; len(l.Rcpts) != 1 || l.Rcpts[0] != "list@relay.example" || !strings.Contains(l.Data, `"alice (ops)" <ops@`+gw+">") ||
		!strings.Contains(l.Data, "Subject: Re: for the room") {
		t.Errorf("room mail %q:\n%s", l.Rcpts, l.Data)
	}
	// One thread in a mail client's view: the answer refers to the mail,
	// and a reply to the answer comes back into the same room thread.
	if l := msgs[1]; !strings.Contains(l.Data, "In-Reply-To: <room1@partner.example>") || !strings.Contains(l.Data, "References: <room1@partner.example>") {
		t.Errorf("the room's answer is not threaded on the mail:\n%s", l.Data)
	}
	answerID := ""
	for _, line := range strings.Split(msgs[1].Data, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
			answerID = v
		}
	}
	out, ok = swaks(t, addr, "--from", "bob@partner.example", "--to", "ops@"+gw,
		"--header", "Subject: Re: for the room", "--header", "In-Reply-To: "+answerID,
		"--header", "References: <room1@partner.example> "+answerID, "--body", "Fixed now.")
	if !ok || answerID == "" {
		t.Fatalf("swaks reply (answer id %q):\n%s", answerID, out)
	}
	g2 := alice.Expect("the reply as groupchat", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "groupchat" && strings.Contains(e.ChildText("", "body"), "Fixed now.")
	})
	if g2.ChildText("", "thread") != g.ChildText("", "thread") {
		t.Errorf("the reply is in thread %q, want %q", g2.ChildText("", "thread"), g.ChildText("", "thread"))
	}

	// An escaped JID, with a subject trying to inject a header.
	carol := `carol\40relay.example@` + gw
	alice.Send(fmt.Sprintf("<message to='%s' type='normal'><subject>hi&#13;&#10;Bcc: victim@evil.example</subject><body>plain text</body></message>", carol))
	msgs = sink.WaitCount(t, 3)
	c := msgs[2]
	head, _, _ := strings.Cut(c.Data, "\r\n\r\n")
	if len(c.Rcpts) != 1 || c.Rcpts[0] != "carol@relay.example" || strings.Contains(strings.ToLower(head), "\nbcc:") {
		t.Errorf("injection: %q:\n%s", c.Rcpts, c.Data)
	}

	// Labels, mail side: SECRET from a domain cleared for UNCLASSIFIED is
	// refused during the SMTP dialogue.
	out, ok = swaks(t, addr, "--from", "bob@partner.example", "--to", "alice@"+gw,
		"--header", `SIO-Label: marking="NATO SECRET"; type=":ess"; label="MQoCAQQGBSsaAQMB"`, "--body", "secret words")
	if ok || !strings.Contains(out, "550 5.7.1") || strings.Contains(out, "SECRET\r\n<") {
		t.Errorf("SECRET mail: want 550 5.7.1, got:\n%s", out)
	}
	// XMPP side: a SECRET message to that domain is forbidden.
	alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='s1'><body>secret words</body>"+
		"<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQoCAQQGBSsaAQMB</esssecuritylabel></label></securitylabel></message>", bob))
	er := alice.Expect("forbidden", func(e *elem) bool { return e.Attr("id") == "s1" && e.Attr("type") == "error" })
	if er.ErrorCondition() != "forbidden" || strings.Contains(er.String(), "secret words") {
		t.Errorf("refusal %s", er)
	}
	// Unknown addresses on the mail domain are refused at RCPT.
	out, ok = swaks(t, addr, "--from", "bob@partner.example", "--to", "nobody@"+gw)
	if ok || !strings.Contains(out, "550 5.1.1") {
		t.Errorf("unknown recipient: want 550 5.1.1, got:\n%s", out)
	}
	time.Sleep(2 * time.Second)
	if n := len(sink.Messages(t)); n != 3 {
		t.Errorf("the sink has %d messages, want 3", n)
	}
	alice.ExpectNone("the SECRET mail", func(e *elem) bool { return strings.Contains(e.ChildText("", "body"), "secret words") }, 100*time.Millisecond)
}

package integration

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// streamHeader is what a client opens its stream with.
func streamHeader(to string) string {
	return fmt.Sprintf("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "+
		"xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>", to)
}

// rawExchange writes data on a fresh plain TCP connection to addr and reads
// until the server closes it. It returns what was read and whether the
// server closed the connection (rather than leaving it hanging).
func rawExchange(t *testing.T, addr string, data string) (reply string, closed bool) {
	t.Helper()
	c, err := dialTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	b, err := io.ReadAll(c)
	var ne net.Error
	switch {
	case err == nil:
		return string(b), true
	case errors.As(err, &ne) && ne.Timeout():
		return string(b), false
	default:
		// A reset after the server closed with unread input still counts.
		return string(b), true
	}
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

// streamErrorOf parses a server's side of a stream and returns the stream
// error condition in it, or "".
func streamErrorOf(reply string) string {
	d := xml.NewDecoder(strings.NewReader(reply))
	inError := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case se.Name.Space == nsStream && se.Name.Local == "error":
			inError = true
		case inError && se.Name.Space == nsStreams && se.Name.Local != "text":
			return se.Name.Local
		}
	}
}

// TestBadXML sends what broken or hostile clients send and checks that the
// stream ends with the RFC 6120 §4.9.3 condition, while the server keeps
// serving everyone else.
func TestBadXML(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{MaxStanzaSize: 4096})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")

	// Two users chatting all along: they must notice nothing.
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	chat := func(t *testing.T, body string) {
		t.Helper()
		alice.With(t).Send(fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", bob.JID, body))
		bob.With(t).Expect("alice's message "+body, isMessage(alice.JID.String(), body))
	}

	hdr := streamHeader(srv.Domain)
	big := "<message to='bob@" + srv.Domain + "'><body>" + strings.Repeat("x", 5000) + "</body></message>"
	tests := []struct {
		name string
		send string
		want string
	}{
		{"DTD", "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY boom 'boom'>]>" + hdr[len("<?xml version='1.0'?>"):], "restricted-xml"},
		{"Comment", hdr + "<!-- hello -->", "restricted-xml"},
		{"ProcessingInstruction", hdr + "<?evil instruction?>", "restricted-xml"},
		{"UndeclaredEntity", hdr + "<message><body>&boom;</body></message>", "restricted-xml"},
		{"InternalEntityDeclaration", hdr + "<!ENTITY lol 'lol'>", "restricted-xml"},
		{"GarbageInsteadOfStream", "GET / HTTP/1.1\r\nHost: example\r\n\r\n", "not-well-formed"},
		{"MismatchedTags", hdr + "<message><body>x</bodyy></message>", "not-well-formed"},
		{"UnboundPrefix", hdr + "<foo:message/>", "not-well-formed"},
		{"OversizeStanza", hdr + big, "policy-violation"},
		{"WrongContentNamespace", strings.Replace(hdr, "jabber:client", "jabber:server", 1), "invalid-namespace"},
		{"WrongStreamNamespace", strings.Replace(hdr, "http://etherx.jabber.org/streams", "urn:example:streams", 1), "invalid-namespace"},
		{"UnknownHost", streamHeader("elsewhere.example"), "host-unknown"},
		{"UnsupportedVersion", strings.Replace(hdr, "to='"+srv.Domain+"' version='1.0'", "to='"+srv.Domain+"' version='2.0'", 1), "unsupported-version"},
		// RFC 6120 §4.9.3.12: stanzas before authentication.
		{"StanzaBeforeAuth", hdr + "<message to='bob@" + srv.Domain + "'><body>spam</body></message>", "not-authorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, closed := rawExchange(t, srv.Addr, tt.send)
			if got := streamErrorOf(reply); got != tt.want {
				t.Errorf("sent %q\ngot stream error %q, want %q; reply:\n%s", short(tt.send), got, tt.want, reply)
			}
			if !strings.HasSuffix(strings.TrimSpace(reply), "</stream:stream>") {
				t.Errorf("the server did not close its stream after the error; reply:\n%s", reply)
			}
			if !closed {
				t.Errorf("the server left the connection open after the stream error")
			}
			chat(t, "still here after "+tt.name)
		})
	}

	// A password must never cross the network in the clear, whatever the
	// client sends: PLAIN before STARTTLS is refused.
	t.Run("PlainBeforeTLS", func(t *testing.T) {
		// "\x00alice\x00alice-secret" in base64.
		reply, closed := rawExchange(t, srv.Addr, hdr+
			"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXNlY3JldA==</auth>")
		if strings.Contains(reply, "<success") {
			t.Fatalf("the server accepted PLAIN before TLS:\n%s", reply)
		}
		if streamErrorOf(reply) == "" && !strings.Contains(reply, "encryption-required") {
			t.Errorf("no stream error or encryption-required failure for PLAIN before TLS:\n%s", reply)
		}
		if !closed && streamErrorOf(reply) != "" {
			t.Errorf("the server left the connection open after the stream error")
		}
		chat(t, "still here after PlainBeforeTLS")
	})

	// After authentication, with a real client's stream.
	afterAuth := []struct {
		name string
		send string
		want string
	}{
		{"UnknownTopLevelElement", "<foo/>", "unsupported-stanza-type"},
		{"StanzaInWrongNamespace", "<message xmlns='urn:example:other'><body>x</body></message>", "invalid-namespace"},
		{"OversizeStanzaAfterAuth", big, "policy-violation"},
		{"CommentAfterAuth", "<!-- sneaky -->", "restricted-xml"},
	}
	for _, tt := range afterAuth {
		srv.AddUser("mallory-"+strings.ToLower(tt.name), "mallory-secret")
	}
	for _, tt := range afterAuth {
		t.Run(tt.name, func(t *testing.T) {
			m := srv.login(t, "mallory-"+strings.ToLower(tt.name), "mallory-secret")
			m.WriteRaw(tt.send)
			if got := m.StreamError(); got != tt.want {
				t.Errorf("sent %q after login: stream error %q, want %q\nXML exchanged:%s", short(tt.send), got, tt.want, m.wire)
			}
			chat(t, "still here after "+tt.name)
		})
	}

	// And a new user can still log in and talk.
	srv.AddUser("carol", "carol-secret")
	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	carol.Send(fmt.Sprintf("<message to='%s' type='chat'><body>hi from carol</body></message>", alice.JID))
	alice.Expect("carol's message", isMessage(carol.JID.String(), "hi from carol"))
}

// short abbreviates long test input in failure messages.
func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

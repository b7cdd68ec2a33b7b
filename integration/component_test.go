package integration

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// componentAddr is the component listener a server printed.
func componentAddr(t *testing.T, s *server) string {
	t.Helper()
	for _, l := range s.Listening() {
		if a, ok := strings.CutSuffix(l, " (components)"); ok {
			return a
		}
	}
	t.Fatalf("no components listener in %q", s.Listening())
	return ""
}

var streamIDRE = regexp.MustCompile(`id='([^']+)'`)

// rawComponent connects as an XEP-0114 component and returns the
// connection and everything read up to the handshake's answer.
func rawComponent(t *testing.T, addr, domain, secret string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>", domain)
	br := bufio.NewReader(c)
	head, err := br.ReadString('>')
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(head, "<stream:stream") {
		more, err := br.ReadString('>')
		if err != nil {
			t.Fatal(err)
		}
		head += more
	}
	m := streamIDRE.FindStringSubmatch(head)
	if m == nil {
		t.Fatalf("no stream id in %s", head)
	}
	sum := sha1.Sum([]byte(m[1] + secret))
	fmt.Fprintf(c, "<handshake>%s</handshake>", hex.EncodeToString(sum[:]))
	answer, _ := br.ReadString('>')
	return c, br, answer
}

func TestComponentAccept(t *testing.T) {
	integration(t)
	domain := "c" + randHex(3) + ".example"
	comp := "bot." + domain
	s := startServer(t, serverOpts{Domain: domain, Extra: fmt.Sprintf(`
[components]
listen = ["127.0.0.1:0"]

[[components.component]]
domain = %q
secret = "component-secret"
`, comp)})
	s.AddUser("alice", "alice-password")
	addr := componentAddr(t, s)

	c, br, answer := rawComponent(t, addr, comp, "component-secret")
	if answer != "<handshake/>" {
		t.Fatalf("handshake answer %q", answer)
	}
	// A second connection for the same name is refused.
	_, br2, answer2 := rawComponent(t, addr, comp, "component-secret")
	rest, _ := io.ReadAll(br2)
	if !strings.Contains(answer2+string(rest), "conflict") {
		t.Fatalf("duplicate component got %q", answer2+string(rest))
	}

	alice := online(t, s, "alice", "alice-password", loginOpts{})
	alice.Send(fmt.Sprintf("<message to='echo@%s' id='c1'><body>ping</body></message>", comp))
	var got string
	for !strings.Contains(got, "</message>") {
		chunk, err := br.ReadString('>')
		if err != nil {
			t.Fatalf("component read: %v (got %q)", err, got)
		}
		got += chunk
	}
	if !strings.Contains(got, "from='"+alice.JID.String()+"'") || !strings.Contains(got, "<body>ping</body>") {
		t.Fatalf("component got %s", got)
	}
	fmt.Fprintf(c, "<message from='echo@%s' to='%s'><body>pong</body></message>", comp, alice.JID)
	alice.Expect("the component's answer", isMessage("echo@"+comp, "pong"))

	// A component may not speak for another domain.
	fmt.Fprintf(c, "<message from='mallory@%s' to='%s'><body>spoof</body></message>", domain, alice.JID)
	rest, _ = io.ReadAll(br)
	if !strings.Contains(string(rest), "invalid-from") {
		t.Fatalf("spoofing component got %q", rest)
	}
	alice.ExpectNone("the spoofed message", isMessage("mallory@"+domain, "spoof"), 300*time.Millisecond)
	// Gone: messages to it bounce.
	alice.Send(fmt.Sprintf("<message to='echo@%s' id='c2'><body>anyone?</body></message>", comp))
	e := alice.Expect("the bounce", func(e *elem) bool { return e.Attr("id") == "c2" && e.Attr("type") == "error" })
	if cond := e.ErrorCondition(); cond != "service-unavailable" {
		t.Errorf("bounce condition %q", cond)
	}
}

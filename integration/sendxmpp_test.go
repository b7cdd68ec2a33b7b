package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const goSendxmpp = "go-sendxmpp"

// TestGoSendxmpp sends messages with go-sendxmpp (which uses the
// mattn/go-xmpp library) to a user online with mellium.
func TestGoSendxmpp(t *testing.T) {
	integration(t)
	path, err := exec.LookPath(goSendxmpp)
	if err != nil {
		path = goSendxmpp // let requirePeer report it
	}
	requirePeer(t, path, "--version")
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})

	tests := []struct {
		name string
		args []string
	}{
		// The default: STARTTLS on the client port.
		{"STARTTLS", []string{"-j", srv.Addr}},
		// -t: direct TLS (XEP-0368).
		{"DirectTLS", []string{"-j", srv.TLSAddr, "-t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := "hello from go-sendxmpp over " + tt.name
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// -n: the server's certificate is self-signed.
			args := append([]string{"-u", srv.JID("alice"), "-p", "alice-secret", "-n", "--timeout", "10"}, tt.args...)
			args = append(args, bob.JID.Bare().String())
			cmd := exec.CommandContext(ctx, path, args...)
			cmd.Stdin = strings.NewReader(body + "\n")
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user config or cache
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("go-sendxmpp %s: %v\n%s", strings.Join(args, " "), err, out.String())
			}
			m := bob.With(t).Expect("go-sendxmpp's message", func(e *elem) bool {
				return e.XMLName.Local == "message" && strings.TrimSpace(e.ChildText("", "body")) == body
			})
			if !strings.HasPrefix(m.Attr("from"), srv.JID("alice")+"/") {
				t.Errorf("message from %q, want a full JID of alice", m.Attr("from"))
			}
		})
	}
}

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// ircWhoisAccount asks the server who nick is and returns the account it is
// logged in to (330 RPL_WHOISACCOUNT), or "" when it is not logged in.
func ircWhoisAccount(u *irctest.User, nick string) string {
	u.Send("WHOIS " + nick)
	account := ""
	u.Expect(func(l string) bool {
		f := strings.Fields(l)
		if len(f) > 4 && f[1] == "330" && strings.EqualFold(f[3], nick) {
			account = f[4]
		}
		return len(f) > 3 && f[1] == "318" && strings.EqualFold(f[3], nick) // end of WHOIS
	})
	return account
}

// ircWaitLogLine waits until one line of the server's log contains all of parts.
func ircWaitLogLine(t *testing.T, srv *server, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		for l := range strings.Lines(srv.Stderr()) {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line of the server log says all of %q within %v:\n%s", parts, waitTimeout, srv.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIRCBridgeServices: the gateway on InspIRCd with Atheme services. Its
// listener and an XMPP user's connection log in to the network's account with
// SASL PLAIN, with SASL EXTERNAL (a client certificate whose fingerprint the
// account knows, over TLS), and with NickServ IDENTIFY when SASL is not
// configured: IRC users see the account in WHOIS and in the account tag of
// what they say. A wrong password is logged with the reason, and the link
// still works, without an account.
func TestIRCBridgeServices(t *testing.T) {
	integration(t)
	svc := irctest.InspIRCdWithServices(t)
	svc.Register(t, "aldisgw", "gw-secret")
	certFile, keyFile, fp := irctest.ClientCert(t, t.TempDir(), "aldisgw")
	svc.AddCertFP(t, "aldisgw", "gw-secret", fp)

	for _, c := range []struct {
		name, addr, extra string
		account           string   // "" for a refused login
		log               []string // what the aldis log says about the login
	}{
		{"sasl plain", svc.Addr, `sasl_mechanism = "PLAIN"
sasl_login = "aldisgw"
sasl_password = "gw-secret"`, "aldisgw", []string{`msg="irc connected"`, "nick=aldisgw", "account=aldisgw"}},
		{"sasl external", svc.TLSAddr, fmt.Sprintf(`sasl_mechanism = "EXTERNAL"
tls_ca_file = %q
tls_cert_file = %q
tls_key_file = %q`, svc.CAFile, certFile, keyFile), "aldisgw", []string{`msg="irc connected"`, "nick=aldisgw", "account=aldisgw"}},
		{"nickserv", svc.Addr, `nickserv_account = "aldisgw"
nickserv_password = "gw-secret"`, "aldisgw", []string{`msg="irc logged in with NickServ"`, "network=lab addr=", "account=aldisgw"}},
		{"sasl wrong password", svc.Addr, `sasl_mechanism = "PLAIN"
sasl_login = "aldisgw"
sasl_password = "not-the-password"`, "", []string{"irc SASL login failed; carrying on without an account", "login=aldisgw code=904"}},
		{"nickserv wrong password", svc.Addr, `nickserv_account = "aldisgw"
nickserv_password = "not-the-password"`, "", []string{"irc NickServ did not confirm the login", "account=aldisgw", `nickserv="Invalid password for`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			domain := "x" + randHex(4) + ".example"
			room := "lab@conference." + domain
			occ := func(nick string) string { return room + "/" + nick }
			maps := ircMapText(c.addr, c.extra, "lab", "aldisgw", ircLink{room: room, channel: "#lab"})
			if strings.Contains(c.extra, "tls_") {
				maps = strings.Replace(maps, "no_tls = true\n", "", 1)
			}
			path := filepath.Join(t.TempDir(), "irc.toml")
			if err := os.WriteFile(path, []byte(maps), 0o600); err != nil {
				t.Fatal(err)
			}
			srv := ircServer(t, domain, path, "alice")
			bob := svc.ConnectCaps(t, "bob", "account-tag")
			bob.Join("#lab")
			alice := online(t, srv, "alice", "alice-secret", loginOpts{})
			createRoom(alice, room, "alice")
			alice.Expect("bob", isPresence("", occ("bob")))
			ircWaitNames(t, bob, "#lab", "alice")
			ircWaitLogLine(t, srv, c.log...)

			for _, nick := range []string{"aldisgw", "alice"} {
				if got := ircWhoisAccount(bob, nick); got != c.account {
					t.Errorf("%s is logged in to %q, want %q", nick, got, c.account)
				}
			}
			// Messages cross both ways, with the account tag when logged in.
			alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='a1'><body>hello irc</body></message>", room))
			l := bob.Expect(func(l string) bool {
				return strings.Contains(l, ":alice!") && strings.HasSuffix(l, "PRIVMSG #lab :hello irc")
			})
			if tagged := strings.Contains(l, "account=aldisgw"); tagged != (c.account != "") {
				t.Errorf("alice's line %q: account tag %v, want %v", l, tagged, c.account != "")
			}
			bob.Send("PRIVMSG #lab :hello xmpp")
			alice.Expect("bob's message", isMessage(occ("bob"), "hello xmpp"))
		})
	}
}

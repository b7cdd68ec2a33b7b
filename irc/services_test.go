package irc

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// TestServicesLogin: against InspIRCd with Atheme, the client logs in to a NickServ account with
// SASL PLAIN, with SASL EXTERNAL (a client certificate on the TLS port, its fingerprint added to
// the account), and with NickServ IDENTIFY; a wrong password is logged and the connection carries
// on without an account.
func TestServicesLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts InspIRCd and Atheme")
	}
	srv := irctest.InspIRCdWithServices(t)
	srv.Register(t, "gw", "gw-secret")
	certFile, keyFile, fp := irctest.ClientCert(t, t.TempDir(), "gw")
	srv.AddCertFP(t, "gw", "gw-secret", fp)

	login := func(t *testing.T, nick string, mod func(*Config)) (*Client, *syncBuffer) {
		t.Helper()
		var logs syncBuffer
		c := peerClient(t, srv.Server, nick, func(cfg *Config) {
			cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
			cfg.IdentifyTimeout = 3 * time.Second
			mod(cfg)
		})
		return c, &logs
	}
	waitAccount := func(t *testing.T, c *Client, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.State().Account != want {
			if time.Now().After(deadline) {
				t.Fatalf("account %q, want %q", c.State().Account, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("plain", func(t *testing.T) {
		c, _ := login(t, "gwplain", func(cfg *Config) {
			cfg.SASL = SASL{Mechanism: "PLAIN", Login: "gw", Password: "gw-secret", Required: true}
		})
		if st := c.State(); st.Account != "gw" { // 900 came before the end of registration
			t.Fatalf("account %q", st.Account)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		c, logs := login(t, "gwwrong", func(cfg *Config) {
			cfg.SASL = SASL{Mechanism: "PLAIN", Login: "gw", Password: "not-it"}
		})
		waitLog(t, logs, "SASL login failed", "login=gw", "code=904")
		if st := c.State(); !st.Ready || st.Account != "" {
			t.Fatalf("state after a refused login: %+v", st)
		}
	})
	t.Run("external", func(t *testing.T) {
		pem, err := os.ReadFile(srv.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := login(t, "gwcert", func(cfg *Config) {
			cfg.Addr = srv.TLSAddr
			cfg.TLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}
			cfg.SASL = SASL{Mechanism: "EXTERNAL", Required: true}
		})
		if st := c.State(); st.Account != "gw" {
			t.Fatalf("account %q", st.Account)
		}
	})
	t.Run("nickserv", func(t *testing.T) {
		c, logs := login(t, "gwns", func(cfg *Config) { cfg.NickServ, cfg.NickServAccount = "gw-secret", "gw" })
		waitAccount(t, c, "gw")
		waitLog(t, logs, "logged in with NickServ")
	})
	t.Run("nickserv wrong password", func(t *testing.T) {
		c, logs := login(t, "gwnsbad", func(cfg *Config) { cfg.NickServ, cfg.NickServAccount = "not-it", "gw" })
		waitLog(t, logs, "NickServ did not confirm the login", "Invalid password")
		if st := c.State(); !st.Ready || st.Account != "" {
			t.Fatalf("state after a refused IDENTIFY: %+v", st)
		}
		// Still usable.
		other := peerClient(t, srv.Server, "watcher")
		other.Join("#svc", "")
		waitEvent(t, other, Received, func(ev Event) bool { return ev.Msg.Command == "JOIN" && ev.Msg.Nick() == "watcher" })
		c.Join("#svc", "")
		waitEvent(t, other, Received, func(ev Event) bool { return ev.Msg.Command == "JOIN" && ev.Msg.Nick() == "gwnsbad" })
		if err := c.Privmsg("#svc", "still here"); err != nil {
			t.Fatal(err)
		}
		expectMsg(t, other, "gwnsbad", "still here")
	})
}

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
	"mellium.im/sasl"
)

// startProsodyGateway runs Prosody for domain on ip with its MUC service on
// conference.<domain> and a component port (5347) for irc.<domain>.
func startProsodyGateway(t *testing.T, domain, ip, secret string) *prosody {
	t.Helper()
	requireProsody(t)
	pki := newPKI(t)
	dir := t.TempDir()
	p := &prosody{t: t, dir: dir, config: filepath.Join(dir, "prosody.cfg.lua"), peer: fedPeer{domain, ip}}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.issue(t, false, domain, "conference."+domain)
	cfg := fmt.Sprintf(`-- Written by the integration tests.
run_as_root = %t
pidfile = %q
data_path = %q
interfaces = { %q }
c2s_ports = { 5222 }
s2s_ports = { }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
component_ports = { 5347 }
component_interfaces = { %q }
http_ports = { }
https_ports = { }
admin_socket = %q
log = { debug = %q }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "posix" }
modules_disabled = { "offline", "s2s" }
authentication = "internal_hashed"
c2s_require_encryption = true

VirtualHost %q
	ssl = { certificate = %q, key = %q }

Component %q "muc"
	ssl = { certificate = %q, key = %q }

Component %q
	component_secret = %q
`, os.Getuid() == 0, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), ip, ip,
		filepath.Join(dir, "admin.sock"), filepath.Join(dir, "prosody.log"),
		domain, cert, key, "conference."+domain, cert, key, "irc."+domain, secret)
	runProsody(t, p, cfg, ip+":5222", ip+":5347")
	return p
}

// startGateway runs `aldis gateway irc` with the configuration text cfg.
func startGateway(t *testing.T, cfg string) *syncBuffer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(aldisBin, "gateway", "irc", "--config", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("aldis gateway did not stop on SIGTERM")
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("aldis gateway output:\n%s", out)
		}
	})
	return out
}

// TestIRCGatewayComponentProsody: `aldis gateway irc` attached to Prosody
// as an XEP-0114 component links a room of Prosody's MUC service to #lab on
// InspIRCd: the IRC user is an occupant of the Prosody room, the Prosody
// user is on IRC under their nick, and messages cross both ways once.
func TestIRCGatewayComponentProsody(t *testing.T) {
	integration(t)
	requireProsody(t)
	ircd := irctest.InspIRCd(t)
	domain := "p" + randHex(3) + ".example"
	ip := loopbackIP()
	secret := "gw-" + randHex(8)
	p := startProsodyGateway(t, domain, ip, secret)
	p.AddUser("alice", "alice-password")
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }

	s := &server{t: t, Domain: domain, Addr: ip + ":5222"}
	alice := online(t, s, "alice", "alice-password", loginOpts{Mech: sasl.Plain})
	createRoom(alice, room, "alice")
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")

	maps := ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"})
	startGateway(t, fmt.Sprintf(`
[log]
level = "debug"

[irc]
domain = "irc.%s"
maps = [%q]
rejoin_interval = "1s"
linger = "2s"

[gateway]
server = "%s:5347"
secret = %q
`, domain, maps, ip, secret))

	alice.Expect("the gateway in the room", isPresence("", occ("#lab")))
	alice.Expect("bob as an occupant", isPresence("", occ("bob")))
	ircWaitNames(t, bob, "#lab", "alice")

	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='m1'><body>hello from prosody</body></message>", room))
	bob.Expect(ircSaid("alice", "#lab", "hello from prosody"))
	alice.Expect("the reflection", isMessage(occ("alice"), "hello from prosody"))
	bob.Send("PRIVMSG #lab :hello from irc")
	alice.Expect("bob's message", isMessage(occ("bob"), "hello from irc"))
	bob.Send("PRIVMSG #lab :\x01ACTION waves\x01")
	alice.Expect("bob's /me", isMessage(occ("bob"), "/me waves"))

	alice.ExpectNone("a second copy", func(e *elem) bool {
		b := e.ChildText("", "body")
		return e.XMLName.Local == "message" && (b == "hello from irc" || b == "hello from prosody")
	}, time.Second)
	if l, ok := bob.Wait(time.Second, func(l string) bool { return strings.Contains(l, "hello from prosody") }); ok {
		t.Errorf("bob got a second copy: %q", l)
	}
}

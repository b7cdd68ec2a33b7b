package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"
)

// prosodyRoutes is a Prosody plugin giving it static s2s routes: Prosody
// 0.12 resolves peers only through DNS, so it wraps the resolver mod_s2s
// uses (see PEERS.md).
const prosodyRoutes = `
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local routes = module:get_option("static_s2s_routes", {});
local none = { next = function(_, cb) cb(nil); end };
local orig = service.new;
service.new = function(hostname, name, proto, extra)
	local r = routes[hostname];
	if r then
		if name == "xmpps-server" then return setmetatable({}, { __index = none }); end
		return basic.new(r[1], r[2], proto, extra);
	end
	return orig(hostname, name, proto, extra);
end
module:log("info", "static s2s routes loaded");
`

// prosody is a Prosody process started for a test.
type prosody struct {
	t      *testing.T
	dir    string
	config string
	peer   fedPeer
}

// requireProsody skips (or fails on CI) without Prosody installed.
func requireProsody(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("prosody"); err != nil {
		msg := "prosody is not installed; install it with: apt-get install prosody"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// startProsody runs Prosody for self on self.IP (c2s 5222, s2s 5269) with
// a certificate from pki, routing to the aldis servers in others.
func startProsody(t *testing.T, pki *testPKI, self fedPeer, selfSigned bool, others ...fedPeer) *prosody {
	t.Helper()
	return startProsodyModules(t, pki, self, selfSigned, nil, others...)
}

// startProsodyModules is startProsody with further modules enabled.
func startProsodyModules(t *testing.T, pki *testPKI, self fedPeer, selfSigned bool, modules []string, others ...fedPeer) *prosody {
	t.Helper()
	requireProsody(t)
	dir := t.TempDir()
	p := &prosody{t: t, dir: dir, config: filepath.Join(dir, "prosody.cfg.lua"), peer: self}
	for _, d := range []string{"data", "plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins", "mod_static_s2s.lua"), []byte(prosodyRoutes), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.issue(t, selfSigned, self.Domain, "conference."+self.Domain)
	var routes []string
	for _, o := range others {
		for _, d := range []string{o.Domain, "conference." + o.Domain} {
			routes = append(routes, fmt.Sprintf("[%q] = { %q, 5269 }", d, o.IP))
		}
	}
	cfg := fmt.Sprintf(`-- Written by the integration tests.
run_as_root = %t
pidfile = %q
data_path = %q
plugin_paths = { %q }
interfaces = { %q }
c2s_ports = { 5222 }
s2s_ports = { 5269 }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
admin_socket = %q
log = { debug = %q }
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "posix", "static_s2s"%s }
modules_disabled = { "offline" }
authentication = "internal_hashed"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
static_s2s_routes = { %s }
ssl = { cafile = %q }

VirtualHost %q
	ssl = { certificate = %q, key = %q, cafile = %q }

Component %q "muc"
	ssl = { certificate = %q, key = %q, cafile = %q }
`, os.Getuid() == 0, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "plugins"),
		self.IP, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "prosody.log"), luaStrings(modules), strings.Join(routes, ", "), pki.CAFile,
		self.Domain, cert, key, pki.CAFile, "conference."+self.Domain, cert, key, pki.CAFile)
	runProsody(t, p, cfg, self.IP+":5222", self.IP+":5269")
	return p
}

// runProsody writes cfg as p's configuration, starts Prosody in the
// foreground (stopped when the test ends, its log shown if it failed) and
// waits until every address in ready accepts connections.
func runProsody(t *testing.T, p *prosody, cfg string, ready ...string) {
	t.Helper()
	dir := p.dir
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("prosody", "--config", p.config, "-F")
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
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "prosody.log"))
			t.Logf("prosody output:\n%s\nprosody log:\n%s", out, tail(string(log), 150))
		}
	})
	for _, a := range ready {
		waitPort(t, a)
	}
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddUser registers an account with prosodyctl.
func (p *prosody) AddUser(user, password string) {
	p.t.Helper()
	out, err := exec.Command("prosodyctl", "--config", p.config, "register", user, p.peer.Domain, password).CombinedOutput()
	if err != nil {
		p.t.Fatalf("prosodyctl register %s: %v\n%s", user, err, out)
	}
}

// online logs a user in to the peer with the Go test client (PLAIN over TLS).
func peerOnline(t *testing.T, peer fedPeer, user, password string) *client {
	t.Helper()
	s := &server{t: t, Domain: peer.Domain, Addr: peer.IP + ":5222"}
	return online(t, s, user, password, loginOpts{Mech: sasl.Plain})
}

func TestFederationProsody(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pp := fedPeer{"p" + randHex(3) + ".example", loopbackIP()}
	a := startFederated(t, pki, pa, false, pp)
	p := startProsody(t, pki, pp, false, pa)
	a.AddUser("alice", "alice-password")
	p.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := peerOnline(t, pp, "bob", "bob-password")
	exchange(t, alice, bob)

	// A Prosody user in an aldis room.
	room := "room@conference." + pa.Domain
	createRoom(alice, room, "alice")
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob's arrival", isPresence("", room+"/bob"))
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hi from prosody</body></message>", room))
	alice.Expect("bob's groupchat", isMessage(room+"/bob", "hi from prosody"))

	// And the reverse: an aldis user in a Prosody room.
	proom := "lounge@conference." + pp.Domain
	createRoom(bob, proom, "bob")
	enterRoom(alice, proom, "alice", "")
	bob.Expect("alice's arrival in the Prosody room", isPresence("", proom+"/alice"))
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hi from aldis</body></message>", proom))
	bob.Expect("alice's groupchat", isMessage(proom+"/alice", "hi from aldis"))
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>welcome</body></message>", proom))
	alice.Expect("bob's groupchat in his room", isMessage(proom+"/bob", "welcome"))
}

// Prosody with a self-signed certificate: aldis cannot verify it, and
// both sides fall back to dialback.
func TestFederationProsodyDialback(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pp := fedPeer{"p" + randHex(3) + ".example", loopbackIP()}
	a := startFederated(t, pki, pa, false, pp)
	p := startProsody(t, pki, pp, true, pa)
	a.AddUser("alice", "alice-password")
	p.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := peerOnline(t, pp, "bob", "bob-password")
	exchange(t, alice, bob)
	a.WaitLog("method=dialback")
}

// luaStrings writes further elements of a Lua list of strings: ", \"a\", \"b\"".
func luaStrings(l []string) string {
	var b strings.Builder
	for _, v := range l {
		fmt.Fprintf(&b, ", %q", v)
	}
	return b.String()
}

// TestFederationProsodyBidi: with Prosody's mod_s2s_bidi, one connection
// carries both directions (XEP-0288), whichever server connects first.
func TestFederationProsodyBidi(t *testing.T) {
	integration(t)
	for _, first := range []string{"aldis", "prosody"} {
		t.Run(first+" connects", func(t *testing.T) {
			pki := newPKI(t)
			pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
			pp := fedPeer{"p" + randHex(3) + ".example", loopbackIP()}
			a := startFederated(t, pki, pa, false, pp)
			p := startProsodyModules(t, pki, pp, false, []string{"s2s_bidi"}, pa)
			a.AddUser("alice", "alice-password")
			p.AddUser("bob", "bob-password")
			alice := online(t, a, "alice", "alice-password", loginOpts{})
			bob := peerOnline(t, pp, "bob", "bob-password")
			if first == "aldis" {
				exchange(t, alice, bob)
				a.WaitLog("local=" + pa.Domain + " remote=" + pp.Domain + " tls=true peer_verified=true bidi=true")
				if strings.Contains(a.Stderr(), "from="+pp.Domain+" to="+pa.Domain+" method=") {
					t.Error("Prosody opened a second connection")
				}
			} else {
				exchange(t, bob, alice)
				a.WaitLog("incoming stream is bidirectional")
				if strings.Contains(a.Stderr(), `outgoing stream ready" local=`+pa.Domain+" remote="+pp.Domain) {
					t.Error("aldis opened a second connection")
				}
			}
		})
	}
}

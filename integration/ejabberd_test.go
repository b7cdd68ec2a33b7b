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
)

// ejabberd is an ejabberd node started for a test.
type ejabberd struct {
	t    *testing.T
	dir  string
	args []string // ejabberdctl's options for this node
	env  []string
	peer fedPeer
}

func requireEjabberd(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/ejabberdctl", "/usr/bin/erl"} {
		if _, err := os.Stat(bin); err != nil {
			msg := "ejabberd is not installed; install it with: apt-get install ejabberd"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// startEjabberd runs a private ejabberd node for self on self.IP (c2s
// 5222, s2s 5269) with a certificate from pki; the aldis domains in
// others resolve to their addresses (see the mount namespace below).
func startEjabberd(t *testing.T, pki *testPKI, self fedPeer, others ...fedPeer) *ejabberd {
	t.Helper()
	requireEjabberd(t)
	dir := t.TempDir()
	for _, d := range []string{"spool", "logs", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cert, key := pki.issue(t, false, self.Domain)
	pemPath := filepath.Join(dir, "server.pem")
	c, _ := os.ReadFile(cert)
	k, _ := os.ReadFile(key)
	if err := os.WriteFile(pemPath, append(c, k...), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`# Written by the integration tests.
hosts:
  - %q
loglevel: info
log_rotate_count: 0
certfiles:
  - %q
ca_file: %q
s2s_use_starttls: required
listen:
  -
    port: 5222
    ip: %q
    module: ejabberd_c2s
    starttls_required: true
  -
    port: 5269
    ip: %q
    module: ejabberd_s2s_in
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_offline: {}
`, self.Domain, pemPath, pki.CAFile, self.IP, self.IP)
	cfgPath := filepath.Join(dir, "ejabberd.yml")
	ctlPath := filepath.Join(dir, "ejabberdctl.cfg")
	// A private node: its own cookie, a fixed distribution port (no epmd)
	// on 127.0.0.1, where ejabberdctl looks for "localhost", and no su to
	// the ejabberd user.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, distPort, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	ctl := fmt.Sprintf(`EXEC_CMD=as_current_user
ERLANG_NODE=aldisfed%s@localhost
ERL_DIST_PORT=%s
INET_DIST_INTERFACE=127.0.0.1
ERL_OPTIONS="-setcookie %s -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_BYPASS_WARNINGS=true
`, randHex(4), distPort, randHex(16))
	inetrc := `{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost"]}.
`
	for path, data := range map[string]string{cfgPath: yml, ctlPath: ctl, filepath.Join(dir, "inetrc"): inetrc} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := &ejabberd{t: t, dir: dir, peer: self,
		args: []string{"--config-dir", dir, "--config", cfgPath, "--ctl-config", ctlPath,
			"--logs", filepath.Join(dir, "logs"), "--spool", filepath.Join(dir, "spool")},
		env: append(os.Environ(), "HOME="+filepath.Join(dir, "home"))}
	// Outgoing s2s resolves through getaddrinfo only (no inetrc, no static
	// routes), so the node runs in a private mount namespace whose
	// /etc/hosts adds the aldis domains: the machine's file is untouched.
	sysHosts, _ := os.ReadFile("/etc/hosts")
	hostsPath := filepath.Join(dir, "hosts")
	var lines []string
	for _, o := range others {
		lines = append(lines, o.IP+" "+o.Domain+" conference."+o.Domain)
	}
	if err := os.WriteFile(hostsPath, append(sysHosts, []byte("\n"+strings.Join(lines, "\n")+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	unshare := []string{"unshare", "--mount", "--propagation", "private"}
	if os.Getuid() != 0 {
		unshare = []string{"unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"}
	}
	script := `mount --bind "$0" /etc/hosts && exec "$@"`
	cmd := exec.Command(unshare[0], append(append(unshare[1:], "sh", "-c", script, hostsPath, "/usr/sbin/ejabberdctl"),
		append(e.args, "foreground")...)...)
	cmd.Env = e.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The shell, erl and beam.smp: the whole process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "logs", "ejabberd.log"))
			t.Logf("ejabberd output:\n%s\nejabberd log:\n%s", tail(out.String(), 40), tail(string(log), 150))
		}
	})
	ctx := exec.Command("/usr/sbin/ejabberdctl", append(e.args, "started")...)
	ctx.Env = e.env
	if b, err := ctx.CombinedOutput(); err != nil {
		t.Fatalf("ejabberd did not start: %v\n%s\n%s", err, b, out)
	}
	waitPort(t, self.IP+":5222")
	waitPort(t, self.IP+":5269")
	return e
}

// AddUser registers an account with ejabberdctl.
func (e *ejabberd) AddUser(user, password string) {
	e.t.Helper()
	cmd := exec.Command("/usr/sbin/ejabberdctl", append(e.args, "register", user, e.peer.Domain, password)...)
	cmd.Env = e.env
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("ejabberdctl register %s: %v\n%s", user, err, out)
	}
}

func TestFederationEjabberd(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pe := fedPeer{"e" + randHex(3) + ".example", loopbackIP()}
	a := startFederated(t, pki, pa, false, pe)
	e := startEjabberd(t, pki, pe, pa)
	a.AddUser("alice", "alice-password")
	e.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := peerOnline(t, pe, "bob", "bob-password")
	exchange(t, alice, bob)

	// An ejabberd user in an aldis room.
	room := "room@conference." + pa.Domain
	createRoom(alice, room, "alice")
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob's arrival", isPresence("", room+"/bob"))
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hi from ejabberd</body></message>", room))
	alice.Expect("bob's groupchat", isMessage(room+"/bob", "hi from ejabberd"))
}

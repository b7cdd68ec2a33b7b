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

// Postfix in front of aldis, as the relaying MTA of a deployment: swaks
// sends into a private Postfix instance on loopback, which relays mail for
// the gateway domain to aldis's SMTP ingress.

const postfixInstallHint = "apt-get install postfix (debconf postfix/main_mailer_type: No configuration), as root"

// requirePostfix skips (or fails on CI) without postfix or root: its
// master process starts as root and drops to the postfix user.
func requirePostfix(t *testing.T) {
	t.Helper()
	msg := ""
	if _, err := exec.LookPath("postfix"); err != nil {
		if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
			msg = "postfix unavailable; install it with: " + postfixInstallHint
		}
	}
	if msg == "" && os.Geteuid() != 0 {
		msg = "postfix needs root to start its master process; run the test as root"
	}
	if msg != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// postfix is a running private Postfix instance.
type postfix struct {
	Addr string // its smtpd, "127.0.0.1:port"
	dir  string
}

// startPostfix starts Postfix on loopback with its own configuration,
// queue and data directories under a temporary directory. Mail for
// relayDomain goes to relayTo ("host:port"); main.cf lines in extra are
// appended.
func startPostfix(t *testing.T, relayDomain, relayTo, extra string) *postfix {
	t.Helper()
	dir := t.TempDir()
	// The daemons run as the postfix user and must reach the queue.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	etc, spool, data := filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	for _, d := range []string{etc, spool, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", data).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix %s: %v %s", data, err, out)
	}
	port := freePort(t)
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = pf.test
mydomain = pf.test
myorigin = pf.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = %[3]s
transport_maps = inline:{ %[3]s=smtp:[%[4]s]:%[5]s }
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
maillog_file = %[6]s
maillog_file_prefixes = %[7]s
tls_random_source = dev:/dev/urandom
smtp_tls_security_level = may
smtp_tls_loglevel = 1
bounce_queue_lifetime = 0
`, spool, data, relayDomain, hostOf(relayTo), portOf(relayTo), filepath.Join(dir, "maillog"), dir) + extra
	// The services Postfix needs, none chrooted; smtpd on a high port.
	master := "127.0.0.1:" + port + ` inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
tlsmgr unix - - n 1000? 1 tlsmgr
`
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &postfix{Addr: "127.0.0.1:" + port, dir: dir}
	// start-fg keeps the master in the foreground, so the test owns it.
	cmd := exec.Command("postfix", "-c", etc, "start-fg")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = exec.Command("postfix", "-c", etc, "stop").Run()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("postfix output:\n%s\nmaillog:\n%s", out, p.Log())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
			c.Close()
			return p
		}
		select {
		case <-exited:
			t.Fatalf("postfix exited:\n%s\n%s", out, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not listen on %s:\n%s\n%s", p.Addr, out, p.Log())
		}
	}
}

// Log is Postfix's mail log so far.
func (p *postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// WaitLog waits for a line of the mail log holding all of parts.
func (p *postfix) WaitLog(t *testing.T, parts ...string) string {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for _, line := range strings.Split(p.Log(), "\n") {
			all := true
			for _, s := range parts {
				all = all && strings.Contains(line, s)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", parts, p.Log())
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return portOf(l.Addr().String())
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// swaksPlain runs swaks against addr without TLS (the Postfix here has
// no certificate).
func swaksPlain(t *testing.T, addr string, args ...string) (string, bool) {
	t.Helper()
	all := append([]string{"--server", hostOf(addr), "--port", portOf(addr), "--helo", "client.test", "--timeout", "30"}, args...)
	out, err := exec.Command("swaks", all...).CombinedOutput()
	return string(out), err == nil
}

// TestPostfixRelay: Postfix relays mail for the gateway domain to aldis,
// and the XMPP user gets it once. Postfix puts its own
// Authentication-Results on top of each mail (here from a static rule
// standing for an SPF policy service), and aldis trusts the topmost under
// Postfix's authserv-id: a domain that requires SPF gets mail through
// Postfix, and a client's forged result below it is ignored, the mail
// refused by aldis and bounced by Postfix, not lost.
func TestPostfixRelay(t *testing.T) {
	integration(t)
	requireMailPeers(t)
	requirePostfix(t)
	domain := "x" + randHex(4) + ".example"
	gw := "mail." + domain
	mapFile := filepath.Join(t.TempDir(), "mail.toml")
	err := os.WriteFile(mapFile, []byte(fmt.Sprintf(`
[[user]]
address = "alice@%[1]s"
jid = "alice@%[2]s"

[[domain]]
name = "partner.example"

[[domain]]
name = "strict.example"
require_spf = true

[[domain]]
name = "forged.example"
require_spf = true
`, gw, domain)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	sink := startSink(t)
	extra := mailConfig(domain, sink.Addr) + fmt.Sprintf("maps = [%q]\ntrusted_authserv_id = \"pf.test\"\n", mapFile)
	s := startServer(t, serverOpts{Domain: domain, Extra: extra})
	s.AddUser("alice", "alice-secret")
	alice := s.login(t, "alice", "alice-secret")
	alice.Send("<presence/>")

	// Postfix vouches for each sender with its own Authentication-Results
	// on top: a static rule here, standing for an SPF policy service.
	spf := filepath.Join(t.TempDir(), "spf")
	if err := os.WriteFile(spf, []byte("/@strict\\.example$/ PREPEND Authentication-Results: pf.test; spf=pass smtp.mailfrom=strict.example\n"+
		"/./ PREPEND Authentication-Results: pf.test; spf=none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pf := startPostfix(t, gw, smtpAddr(t, s), "smtpd_sender_restrictions = check_sender_access regexp:"+spf+"\n")

	// A plain mail: once, with Postfix's Received field before aldis's.
	out, ok := swaksPlain(t, pf.Addr, "--from", "bob@partner.example", "--to", "alice@"+gw,
		"--header", "Subject: via postfix", "--header", "Message-Id: <pf1@partner.example>", "--body", "Relayed by Postfix.")
	if !ok {
		t.Fatalf("swaks:\n%s", out)
	}
	bob := `bob\40partner.example@` + gw
	m := alice.Expect("the mail relayed by Postfix", func(e *elem) bool {
		return e.XMLName.Local == "message" && strings.Contains(e.ChildText("", "body"), "Relayed by Postfix.")
	})
	if m.Attr("from") != bob || m.ChildText("", "subject") != "via postfix" || m.ChildText("", "thread") == "" {
		t.Errorf("message %s", m)
	}
	pf.WaitLog(t, "to=<alice@"+gw+">", "status=sent", "relay=127.0.0.1")
	// Postfix took aldis's STARTTLS (opportunistic: the certificate is
	// self-signed).
	pf.WaitLog(t, "TLS connection established to 127.0.0.1")

	// A domain that requires SPF: Postfix's result counts.
	out, ok = swaksPlain(t, pf.Addr, "--from", "s@strict.example", "--to", "alice@"+gw,
		"--header", "Subject: vouched", "--body", "SPF passed at Postfix.")
	if !ok {
		t.Fatalf("swaks (strict):\n%s", out)
	}
	v := alice.Expect("the vouched mail", func(e *elem) bool {
		return e.XMLName.Local == "message" && strings.Contains(e.ChildText("", "body"), "SPF passed at Postfix.")
	})
	if v.Attr("from") != `s\40strict.example@`+gw {
		t.Errorf("vouched mail from %s", v.Attr("from"))
	}

	// A client forging Postfix's result: Postfix's own, on top, is the one
	// that counts, so aldis refuses the mail (550 5.7.1) and Postfix
	// bounces it rather than dropping it.
	out, ok = swaksPlain(t, pf.Addr, "--from", "s@forged.example", "--to", "alice@"+gw,
		"--header", "Authentication-Results: pf.test; spf=pass smtp.mailfrom=forged.example",
		"--header", "Subject: forged", "--body", "Forged results.")
	if !ok {
		t.Fatalf("swaks (forged):\n%s", out)
	}
	line := pf.WaitLog(t, "to=<alice@"+gw+">", "status=bounced")
	if !strings.Contains(line, "550 5.7.1") {
		t.Errorf("bounce: %s", line)
	}
	alice.ExpectNone("the forged mail", func(e *elem) bool {
		return strings.Contains(e.ChildText("", "body"), "Forged results.") || strings.Contains(e.ChildText("", "body"), "Relayed by Postfix.")
	}, 2*time.Second)
}

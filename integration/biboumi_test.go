package integration

import (
	"bufio"
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

// requireProgram skips (or fails on CI) when a peer program is not installed.
func requireProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if _, err := os.Stat("/usr/sbin/" + name); err == nil {
		return "/usr/sbin/" + name
	}
	msg := fmt.Sprintf("%s is not installed; install it with: apt-get install --no-install-recommends %s", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// peerProcess runs a peer program until the test ends; its output is
// shown when the test fails.
func peerProcess(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out)
		}
	})
}

// startInspIRCd runs InspIRCd on ip:6667 with a configuration in a
// temporary directory.
func startInspIRCd(t *testing.T, ip string) string {
	t.Helper()
	bin := requireProgram(t, "inspircd", "inspircd")
	dir := t.TempDir()
	motd := filepath.Join(dir, "motd")
	if err := os.WriteFile(motd, []byte("test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(ip, "6667")
	conf := fmt.Sprintf(`<server name="irc.test" description="Aldis tests" network="AldisTest">
<admin name="test" nick="test" email="test@irc.test">
<bind address=%q port="6667" type="clients">
<connect allow="*" timeout="60" fakelag="off" commandrate="100000" localmax="1000" globalmax="1000" useident="no" pingfreq="120" sendq="262144" recvq="8192">
<class name="all" commands="*">
<files motd=%q>
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target=%q>
<dns timeout="1">
<performance clonesonconnect="no">
`, ip, motd, filepath.Join(dir, "ircd.log"))
	cfg := filepath.Join(dir, "inspircd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--nofork", "--nopid"}
	if os.Geteuid() == 0 {
		args = append(args, "--runasroot")
	}
	peerProcess(t, "inspircd", exec.Command(bin, args...))
	waitPort(t, addr)
	return addr
}

// ircClient is a raw IRC connection, as a user of the IRC network.
type ircClient struct {
	t     *testing.T
	conn  net.Conn
	lines chan string
}

func dialIRC(t *testing.T, addr, nick string) *ircClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &ircClient{t: t, conn: conn, lines: make(chan string, 1000)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			line := sc.Text()
			if p, ok := strings.CutPrefix(line, "PING "); ok {
				fmt.Fprintf(conn, "PONG %s\r\n", p)
				continue
			}
			select {
			case c.lines <- line:
			default: // nobody reads: drop rather than block the reader
			}
		}
	}()
	c.send("NICK " + nick)
	c.send("USER " + nick + " 0 * :Aldis test")
	c.expect("welcome (001)", func(l string) bool { return ircCommand(l) == "001" })
	return c
}

func (c *ircClient) send(line string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := fmt.Fprintf(c.conn, "%s\r\n", line); err != nil {
		c.t.Fatalf("IRC write %q: %v", line, err)
	}
}

// expect waits for a line matching match and returns it.
func (c *ircClient) expect(what string, match func(string) bool) string {
	c.t.Helper()
	deadline := time.After(waitTimeout)
	var seen []string
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("IRC connection closed waiting for %s; got:\n%s", what, strings.Join(seen, "\n"))
			}
			if match(l) {
				return l
			}
			seen = append(seen, l)
		case <-deadline:
			c.t.Fatalf("no %s from IRC within %v; got:\n%s", what, waitTimeout, strings.Join(seen, "\n"))
		}
	}
}

// ircCommand returns the command (or numeric) of a line.
func ircCommand(line string) string {
	if strings.HasPrefix(line, ":") {
		_, line, _ = strings.Cut(line, " ")
	}
	cmd, _, _ := strings.Cut(line, " ")
	return cmd
}

// TestBiboumi: Debian's Biboumi (an XMPP⇄IRC gateway) attached to aldis as
// an XEP-0114 component. An XMPP user joins an IRC channel on a local
// InspIRCd through it, and talks with an IRC user both ways.
func TestBiboumi(t *testing.T) {
	integration(t)
	biboumi := requireProgram(t, "biboumi", "biboumi")
	ip := loopbackIP()
	irc := startInspIRCd(t, ip)

	domain := "x" + randHex(4) + ".example"
	gw := "irc." + domain
	const secret = "biboumi-component-secret"
	s := startServer(t, serverOpts{Domain: domain, Extra: fmt.Sprintf(`
[components]
listen = ["%s:5347"]

[[components.component]]
domain = %q
secret = %q
`, ip, gw, secret)})
	s.AddUser("alice", "alice-password")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "biboumi.cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname=%s
password=%s
xmpp_server_ip=%s
port=5347
db_name=%s
identd_port=0
log_level=0
realname_customization=true
realname_from_jid=false
`, gw, secret, ip, filepath.Join(dir, "biboumi.sqlite"))), 0o600); err != nil {
		t.Fatal(err)
	}
	peerProcess(t, "biboumi", exec.Command(biboumi, cfg))
	s.WaitLog("component connected")

	// An IRC user is in the channel first.
	bob := dialIRC(t, irc, "ircbob")
	bob.send("JOIN #aldis")
	bob.expect("bob's JOIN", func(l string) bool { return ircCommand(l) == "JOIN" })

	// alice joins #aldis on that IRC server through the gateway:
	// #channel%ircserver@gateway.
	alice := online(t, s, "alice", "alice-password", loginOpts{})
	room := fmt.Sprintf("#aldis%%%s@%s", ip, gw)
	mucJoin(alice, room+"/alice", "")
	alice.Expect("alice's self-presence in "+room, isSelfPresence("", room+"/alice"))
	alice.Expect("ircbob in the room", isPresence("", room+"/ircbob"))
	bob.expect("alice joining on IRC", func(l string) bool {
		return ircCommand(l) == "JOIN" && strings.HasPrefix(l, ":alice!")
	})

	// XMPP → IRC.
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hello from xmpp</body></message>", room))
	bob.expect("alice's message on IRC", func(l string) bool {
		return strings.HasPrefix(l, ":alice!") && strings.HasSuffix(l, "PRIVMSG #aldis :hello from xmpp")
	})
	alice.Expect("alice's message reflected", isMessage(room+"/alice", "hello from xmpp"))

	// IRC → XMPP.
	bob.send("PRIVMSG #aldis :hello from irc")
	alice.Expect("bob's message over the gateway", isMessage(room+"/ircbob", "hello from irc"))

	// A private message from IRC reaches alice as a private message.
	bob.send("PRIVMSG alice :just you")
	alice.Expect("bob's private message", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.ChildText("", "body") == "just you" &&
			strings.Contains(e.Attr("from"), "ircbob")
	})
}

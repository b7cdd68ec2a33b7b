// Package irctest starts real IRC servers (InspIRCd, ngIRCd, and InspIRCd linked to Atheme
// services) on loopback for tests, and speaks to them as a plain IRC user.
//
// Each server gets its own configuration in the test's temporary directory and a free port; it is
// stopped (by PID) when the test ends. Without the server's binary the test is skipped with an
// install hint, or fails when CI=true, where the binaries must be installed.
package irctest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries, from Debian's packages of the same names.
const (
	InspIRCdBin = "/usr/sbin/inspircd"
	NgIRCdBin   = "/usr/sbin/ngircd"
	AthemeBin   = "/usr/bin/atheme-services"
	installHint = "apt-get install -y --no-install-recommends inspircd ngircd atheme-services"
)

// Server is a running IRC server. Stop and Start let a test kill it and bring it back on the same
// port, as an outage would.
type Server struct {
	t    testing.TB
	Addr string // 127.0.0.1:port
	Name string // "inspircd" or "ngircd"
	dir  string
	args []string
	bin  string
	// ready reports whether a started process is ready; nil: Addr accepts connections.
	ready func() bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// Require skips the test (or fails it on CI) when bin is not installed.
func Require(t testing.TB, bin string) {
	t.Helper()
	if _, err := os.Stat(bin); err == nil {
		return
	}
	msg := fmt.Sprintf("%s is not installed; install it with: %s", bin, installHint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// InspIRCd starts InspIRCd 3 with its IRCv3 modules (cap, server-time, echo-message, msgid,
// batch, labeled-response, account-tag, cap-notify, multi-prefix) and no flood limits, so that
// flood control is the client's own.
func InspIRCd(t testing.TB) *Server {
	t.Helper()
	Require(t, InspIRCdBin)
	s := newServer(t, "inspircd", InspIRCdBin)
	s.configureInspIRCd("not", "")
	s.Start()
	return s
}

// InspIRCdWithHistory is InspIRCd whose channels keep their last 500 lines of the last hour
// (chanhistory, +H on every new channel) and replay them to whoever joins: a test can see what a
// channel was told before the test's user could join it, as after a restart.
func InspIRCdWithHistory(t testing.TB) *Server {
	t.Helper()
	Require(t, InspIRCdBin)
	s := newServer(t, "inspircd", InspIRCdBin)
	s.configureInspIRCd("notH 500:1h", `<module name="chanhistory">
<chanhistory maxlines="500" notice="no" prefixmsg="no" bots="yes">
`)
	s.Start()
	return s
}

// configureInspIRCd writes the server's configuration: new channels get defaultModes ("o": their
// creator is an operator), and extra tags are appended.
func (s *Server) configureInspIRCd(defaultModes, extra string) {
	t := s.t
	motd := filepath.Join(s.dir, "motd")
	write(t, motd, "Aldis test server\n")
	conf := fmt.Sprintf(`<config format="xml">
<server name="irc.test" description="Aldis test server" network="AldisTest">
<admin name="Admin" nick="admin" email="admin@irc.test">
<bind address="127.0.0.1" port="%[1]s" type="clients">
<connect name="main" allow="*" maxchans="1000" timeout="30" pingfreq="120" hardsendq="1048576" softsendq="65536" recvq="65536" threshold="1000000" commandrate="100000" fakelag="off" localmax="1000" globalmax="1000" useident="no" limit="10000" resolvehostnames="no">
<class name="all" commands="*" privs="*" usermodes="*" chanmodes="*">
<files motd="%[2]s">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="%[3]s">
<dns server="127.0.0.1" timeout="1">
<options defaultmodes="%[4]s">
<module name="cap">
<module name="ircv3">
<module name="ircv3_servertime">
<module name="ircv3_echomessage">
<module name="ircv3_msgid">
<module name="ircv3_batch">
<module name="ircv3_labeledresponse">
<module name="ircv3_accounttag">
<module name="ircv3_capnotify">
<module name="ircv3_ctctags">
<module name="namesx">
<module name="services_account">
`, s.port(), motd, filepath.Join(s.dir, "ircd.log"), defaultModes)
	path := filepath.Join(s.dir, "inspircd.conf")
	write(t, path, conf+extra)
	s.args = []string{"--config", path, "--nofork", "--nopid"}
	if os.Geteuid() == 0 {
		s.args = append(s.args, "--runasroot")
	}
}

// NgIRCd starts ngIRCd, a plain RFC 2812 server (it offers only the multi-prefix capability),
// without DNS or ident look-ups and without connection limits.
func NgIRCd(t testing.TB) *Server {
	t.Helper()
	Require(t, NgIRCdBin)
	s := newServer(t, "ngircd", NgIRCdBin)
	motd := filepath.Join(s.dir, "motd")
	write(t, motd, "Aldis test server\n")
	conf := fmt.Sprintf(`[Global]
Name = irc.ng.test
Info = Aldis test server
Listen = 127.0.0.1
Ports = %s
MotdFile = %s
PidFile = %s
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
PingTimeout = 120
PongTimeout = 20
[Options]
DNS = no
Ident = no
PAM = no
SyslogFacility = local7
[Channel]
Name = #ngtest
Topic = test
`, s.port(), motd, filepath.Join(s.dir, "ngircd.pid"))
	path := filepath.Join(s.dir, "ngircd.conf")
	write(t, path, conf)
	s.args = []string{"-n", "-f", path}
	s.Start()
	return s
}

func newServer(t testing.TB, name, bin string) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &Server{t: t, Addr: addr, Name: name, dir: t.TempDir(), bin: bin}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) port() string {
	_, p, _ := net.SplitHostPort(s.Addr)
	return p
}

// Start runs the server and waits until it accepts connections (up to 20 s).
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, s.Name+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("starting %s: %v", s.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.log, s.exited = cmd, logf, exited
	ready := s.ready
	if ready == nil {
		ready = func() bool {
			c, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ready() {
			return
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logf.Name())
			s.t.Fatalf("%s exited at start:\n%s", s.Name, out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logf.Name())
			s.t.Fatalf("%s was not ready within 20s:\n%s", s.Name, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is the running server's process id, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop kills the server (SIGKILL, as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // its process group: it may have children
	s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("%s (pid %d) did not exit after SIGKILL", s.Name, s.cmd.Process.Pid)
	}
	s.log.Close()
	s.cmd = nil
}

// User is a raw IRC client for tests: what a person on the IRC side does and sees.
type User struct {
	t     testing.TB
	Nick  string
	conn  net.Conn
	lines chan string
}

// Connect registers nick on the server (without CAP) and waits for the end of the MOTD.
func (s *Server) Connect(t testing.TB, nick string) *User {
	t.Helper()
	return s.ConnectCaps(t, nick)
}

// ConnectCaps is Connect asking for IRCv3 capabilities first (e.g. "account-tag"); the server
// must have them.
func (s *Server) ConnectCaps(t testing.TB, nick string, caps ...string) *User {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to %s: %v", s.Name, err)
	}
	u := &User{t: t, Nick: nick, conn: c, lines: make(chan string, 4096)}
	t.Cleanup(func() { c.Close() })
	go func() {
		defer close(u.lines)
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 16384), 16384)
		for sc.Scan() {
			l := strings.TrimRight(sc.Text(), "\r")
			if rest, ok := strings.CutPrefix(l, "PING "); ok {
				fmt.Fprintf(c, "PONG %s\r\n", rest)
				continue
			}
			u.lines <- l
		}
	}()
	if len(caps) > 0 {
		u.Send("CAP LS 302")
	}
	u.Send("NICK " + nick)
	u.Send("USER " + nick + " 0 * :" + nick)
	if len(caps) > 0 {
		u.Send("CAP REQ :" + strings.Join(caps, " "))
		if l := u.Expect(func(l string) bool {
			return strings.Contains(l, " CAP ") && (strings.Contains(l, " ACK ") || strings.Contains(l, " NAK "))
		}); strings.Contains(l, " NAK ") {
			t.Fatalf("%s refused capabilities %v: %q", s.Name, caps, l)
		}
		u.Send("CAP END")
	}
	u.Expect(func(l string) bool { return hasCode(l, "376") || hasCode(l, "422") })
	return u
}

// Send writes one line.
func (u *User) Send(line string) {
	u.t.Helper()
	u.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(u.conn, "%s\r\n", line); err != nil {
		u.t.Fatalf("%s sending %q: %v", u.Nick, line, err)
	}
}

// Join joins channel and waits for the end of its NAMES list.
func (u *User) Join(channel string) {
	u.t.Helper()
	u.Send("JOIN " + channel)
	u.Expect(func(l string) bool { return hasCode(l, "366") })
}

// Expect waits up to 15 s for a line for which match is true, and returns it.
func (u *User) Expect(match func(string) bool) string {
	u.t.Helper()
	l, ok := u.Wait(15*time.Second, match)
	if !ok {
		u.t.Fatalf("%s: no expected line within 15s", u.Nick)
	}
	return l
}

// ExpectContains waits for a line containing sub.
func (u *User) ExpectContains(sub string) string {
	u.t.Helper()
	l, ok := u.Wait(15*time.Second, func(l string) bool { return strings.Contains(l, sub) })
	if !ok {
		u.t.Fatalf("%s: no line containing %q within 15s", u.Nick, sub)
	}
	return l
}

// Wait is Expect with a timeout and no failure.
func (u *User) Wait(d time.Duration, match func(string) bool) (string, bool) {
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-u.lines:
			if !ok {
				return "", false
			}
			if match(l) {
				return l, true
			}
		case <-deadline:
			return "", false
		}
	}
}

// hasCode reports whether line is the numeric reply code.
func hasCode(line, code string) bool {
	f := strings.Fields(line)
	return len(f) > 1 && f[1] == code
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The mail relay end to end: swaks (a real SMTP client) sends into aldis's
// SMTP ingress, and an aiosmtpd sink, standing for the smarthost, receives
// what aldis relays.

const mailInstallHint = "apt-get install swaks python3-aiosmtpd"

// requireMailPeers skips (or fails on CI) without swaks and aiosmtpd.
func requireMailPeers(t *testing.T) {
	t.Helper()
	for _, c := range [][]string{{"swaks", "--version"}, {"/usr/bin/python3", "-c", "import aiosmtpd"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			msg := fmt.Sprintf("%s unavailable (%v: %s); install it with: %s", c[0], err, strings.TrimSpace(string(out)), mailInstallHint)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// smtpSink is a running aiosmtpd that writes each message to a file.
type smtpSink struct {
	Addr string
	dir  string
}

func startSink(t *testing.T) *smtpSink { return startSinkOn(t, "0") }

// startSinkOn starts the sink on a given loopback port ("0": any).
func startSinkOn(t *testing.T, port string) *smtpSink {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("/usr/bin/python3", "testdata/smtp_sink.py", dir, port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("smtp sink stderr:\n%s", stderr)
		}
	})
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				got <- p
			}
		}
	}()
	select {
	case p := <-got:
		return &smtpSink{Addr: "127.0.0.1:" + p, dir: dir}
	case <-time.After(30 * time.Second):
		t.Fatalf("the smtp sink did not start; stderr:\n%s", stderr)
		return nil
	}
}

// sinkMessage is one message the sink received.
type sinkMessage struct {
	From  string
	Rcpts []string
	Data  string
}

func (k *smtpSink) Messages(t *testing.T) []sinkMessage {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(k.dir, "*.eml"))
	slices.Sort(files)
	var out []sinkMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env, data, _ := strings.Cut(string(b), "\r\n\r\n")
		m := sinkMessage{Data: data}
		for _, line := range strings.Split(env, "\r\n") {
			if v, ok := strings.CutPrefix(line, "MAIL FROM:"); ok {
				m.From = strings.Trim(v, "<>")
			} else if v, ok := strings.CutPrefix(line, "RCPT TO:"); ok {
				m.Rcpts = append(m.Rcpts, strings.Trim(v, "<>"))
			}
		}
		out = append(out, m)
	}
	return out
}

// WaitCount waits until the sink has n messages.
func (k *smtpSink) WaitCount(t *testing.T, n int) []sinkMessage {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		msgs := k.Messages(t)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink has %d messages after 60s, want %d", len(msgs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mailConfig is the [mail] table of the tests: mail for relay.example goes
// to smarthost, retried every second or two.
func mailConfig(domain, smarthost string) string {
	return fmt.Sprintf(`
[mail]
enabled = true
listen = ["127.0.0.1:0"]
hostname = "gw.%s"
relay_domains = ["relay.example"]
smarthost = %q
max_message_size = 20000
messages_per_minute = 10000
retry_min = "1s"
retry_max = "2s"
`, domain, smarthost)
}

// smtpAddr returns the server's SMTP listener.
func smtpAddr(t *testing.T, s *server) string {
	t.Helper()
	for _, l := range s.Listening() {
		if a, ok := strings.CutSuffix(l, " (smtp, STARTTLS)"); ok {
			return a
		}
	}
	t.Fatalf("no smtp listener in %q", s.Listening())
	return ""
}

// swaks runs swaks against addr with STARTTLS and returns its transcript
// and whether it exited 0.
func swaks(t *testing.T, addr string, args ...string) (string, bool) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"--server", host, "--port", port, "--tls", "--helo", "client.test", "--timeout", "30"}, args...)
	out, err := exec.Command("swaks", all...).CombinedOutput()
	return string(out), err == nil
}

// deadAddr is a loopback address with nothing listening (for now).
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestMailRelay(t *testing.T) {
	integration(t)
	requireMailPeers(t)
	sink := startSink(t)
	domain := "x" + randHex(4) + ".example"
	s := startServer(t, serverOpts{Domain: domain, Extra: mailConfig(domain, sink.Addr)})
	addr := smtpAddr(t, s)
	gw := "gw." + s.Domain

	// A message over STARTTLS is accepted, relayed with our trace and
	// Received fields, and arrives once.
	out, ok := swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@relay.example",
		"--header", "Subject: hello relay", "--body", "Grüße over SMTP")
	if !ok || !strings.Contains(out, "250 2.0.0 OK") && !strings.Contains(out, "<~  250") {
		t.Fatalf("swaks failed:\n%s", out)
	}
	if !strings.Contains(out, "STARTTLS") {
		t.Errorf("no STARTTLS in the transcript:\n%s", out)
	}
	msgs := sink.WaitCount(t, 1)
	m := msgs[0]
	if m.From != "alice@sender.example" || len(m.Rcpts) != 1 || m.Rcpts[0] != "bob@relay.example" {
		t.Errorf("envelope %q → %q", m.From, m.Rcpts)
	}
	for _, want := range []string{"X-Aldis-Trace: " + gw, "by " + gw + " with ESMTPS", "Subject: hello relay"} {
		if !strings.Contains(m.Data, want) {
			t.Errorf("relayed message lacks %q:\n%s", want, m.Data)
		}
	}

	// Refused at RCPT: a domain not served here. Nothing is accepted.
	out, ok = swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@elsewhere.example")
	if ok || !strings.Contains(out, "550 5.7.1") {
		t.Errorf("unknown recipient: want 550 5.7.1, got:\n%s", out)
	}
	// Oversize: refused with 552 during DATA.
	out, ok = swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@relay.example",
		"--body", strings.Repeat("0123456789 0123456789 0123456789 0123456789 0123456789 0123456789\n", 400))
	if ok || !strings.Contains(out, "552 5.3.4") {
		t.Errorf("oversize: want 552 5.3.4, got:\n%s", out)
	}
	// Malformed MIME: a clear 554 5.6.0.
	bad := filepath.Join(t.TempDir(), "bad.eml")
	os.WriteFile(bad, []byte("From alice without a colon\r\nthis is not a header\r\n\r\nbody\r\n"), 0o600)
	out, ok = swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@relay.example", "--data", bad)
	if ok || !strings.Contains(out, "554 5.6.0") {
		t.Errorf("malformed MIME: want 554 5.6.0, got:\n%s", out)
	}
	// A message that has been through us already: a loop, 554 5.4.6.
	out, ok = swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@relay.example",
		"--header", "X-Aldis-Trace: "+gw)
	if ok || !strings.Contains(out, "554 5.4.6") {
		t.Errorf("loop: want 554 5.4.6, got:\n%s", out)
	}
	// Header injection through swaks's own header is the client's choice;
	// a label header that is malformed is refused.
	out, ok = swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@relay.example",
		"--header", `SIO-Label: label="MQYCAQQGASk="`)
	if ok || !strings.Contains(out, "554 5.7.1") {
		t.Errorf("malformed SIO-Label: want 554 5.7.1, got:\n%s", out)
	}

	// Refused for good by the next hop: a DSN goes back to the sender,
	// from the null reverse-path.
	out, ok = swaks(t, addr, "--from", "alice@sender.example", "--to", "reject-me@relay.example",
		"--header", "Subject: doomed")
	if !ok {
		t.Fatalf("swaks failed:\n%s", out)
	}
	msgs = sink.WaitCount(t, 2)
	dsn := msgs[1]
	if dsn.From != "" || len(dsn.Rcpts) != 1 || dsn.Rcpts[0] != "alice@sender.example" {
		t.Errorf("bounce envelope %q → %q", dsn.From, dsn.Rcpts)
	}
	for _, want := range []string{"multipart/report", "report-type=delivery-status", "Final-Recipient: rfc822; reject-me@relay.example",
		"Action: failed", "Status: 5.1.1", "Subject: doomed", "Auto-Submitted: auto-replied"} {
		if !strings.Contains(dsn.Data, want) {
			t.Errorf("bounce lacks %q:\n%s", want, dsn.Data)
		}
	}
	time.Sleep(time.Second)
	if n := len(sink.Messages(t)); n != 2 {
		t.Errorf("the sink has %d messages, want 2 (one relayed, one bounce)", n)
	}
}

// TestMailKillQueued: mail accepted while the smarthost is down is queued;
// aldis is killed with SIGKILL, the smarthost comes up, aldis restarts, and
// every accepted message is delivered exactly once.
func TestMailKillQueued(t *testing.T) {
	integration(t)
	requireMailPeers(t)
	opts := serverOpts{Domain: "x" + randHex(4) + ".example"}
	opts.Extra = mailConfig(opts.Domain, deadAddr(t))
	s := startServer(t, opts)
	addr := smtpAddr(t, s)
	const n = 5
	for i := range n {
		out, ok := swaks(t, addr, "--from", "alice@sender.example", "--to", fmt.Sprintf("bob%d@relay.example", i),
			"--header", fmt.Sprintf("Subject: queued %d", i))
		if !ok {
			t.Fatalf("message %d not accepted:\n%s", i, out)
		}
	}
	s.WaitLog("delivery failed, will retry")

	s.Signal(syscall.SIGKILL)
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	<-exited

	sink := startSink(t)
	opts.Extra = mailConfig(opts.Domain, sink.Addr)
	s.WriteConfig(opts)
	s.start()
	s.WaitLog("mail queue resumed")

	msgs := sink.WaitCount(t, n)
	time.Sleep(3 * time.Second) // any duplicate would arrive by now
	msgs = sink.Messages(t)
	seen := map[string]int{}
	for _, m := range msgs {
		if len(m.Rcpts) == 1 {
			seen[m.Rcpts[0]]++
		}
	}
	for i := range n {
		rcpt := fmt.Sprintf("bob%d@relay.example", i)
		if seen[rcpt] != 1 {
			t.Errorf("%s received %d times, want exactly 1", rcpt, seen[rcpt])
		}
	}
	if len(msgs) != n {
		t.Errorf("the sink has %d messages, want %d", len(msgs), n)
	}
}

// TestMailSmarthostDown: the smarthost is down for a while as aldis runs;
// the queued mail is retried and, once it is up, delivered exactly once.
func TestMailSmarthostDown(t *testing.T) {
	integration(t)
	requireMailPeers(t)
	dead := deadAddr(t)
	opts := serverOpts{Domain: "x" + randHex(4) + ".example"}
	opts.Extra = mailConfig(opts.Domain, dead)
	s := startServer(t, opts)
	addr := smtpAddr(t, s)
	const n = 3
	for i := range n {
		if out, ok := swaks(t, addr, "--from", "alice@sender.example", "--to", fmt.Sprintf("carol%d@relay.example", i),
			"--header", fmt.Sprintf("Subject: while down %d", i)); !ok {
			t.Fatalf("message %d not accepted:\n%s", i, out)
		}
	}
	// Several attempts fail while the smarthost is down.
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(s.Stderr(), "delivery failed, will retry") < 2*n {
		if time.Now().After(deadline) {
			t.Fatalf("no retries within 30s:\n%s", s.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, port, _ := net.SplitHostPort(dead)
	sink := startSinkOn(t, port)
	sink.WaitCount(t, n)
	time.Sleep(3 * time.Second) // a duplicate would arrive by now
	seen := map[string]int{}
	for _, m := range sink.Messages(t) {
		for _, r := range m.Rcpts {
			seen[r]++
		}
	}
	for i := range n {
		if r := fmt.Sprintf("carol%d@relay.example", i); seen[r] != 1 {
			t.Errorf("%s received %d times, want 1", r, seen[r])
		}
	}
}

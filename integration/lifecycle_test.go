package integration

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdown: on SIGTERM every client is told the server is shutting down
// and the process exits 0 promptly.
func TestShutdown(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	direct := srv.login(t, "alice", "alice-secret", loginOpts{DirectTLS: true})

	// A client still in the middle of negotiating (stream open, no TLS yet).
	pending, err := dialTCP(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	if _, err := io.WriteString(pending, streamHeader(srv.Domain)); err != nil {
		t.Fatal(err)
	}
	pending.SetReadDeadline(time.Now().Add(waitTimeout))
	var seen bytes.Buffer
	for !strings.Contains(seen.String(), "</stream:features>") {
		var b [512]byte
		n, err := pending.Read(b[:])
		if err != nil {
			t.Fatalf("negotiating client: no stream features (%v): %q", err, seen.String())
		}
		seen.Write(b[:n])
	}

	code, took := srv.stop()
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	for _, c := range []*client{alice, direct} {
		if cond := c.StreamError(); cond != "system-shutdown" {
			t.Errorf("%s: stream ended with %q, want system-shutdown", c.JID, cond)
		}
	}
	rest, err := io.ReadAll(pending)
	if err != nil {
		t.Errorf("negotiating client: %v after shutdown, want the connection closed", err)
	}
	if got := streamErrorOf(seen.String() + string(rest)); got != "system-shutdown" {
		t.Errorf("negotiating client: stream error %q, want system-shutdown; reply:\n%s%s", got, seen.String(), rest)
	}
	if log := srv.Stderr(); !strings.Contains(log, "shutting down") {
		t.Errorf("the log does not say it is shutting down:\n%s", log)
	}
}

// TestCheckConfig runs `aldis check` on a good and a bad configuration.
func TestCheckConfig(t *testing.T) {
	integration(t)
	dir := t.TempDir()

	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte(`[server]
domain = "chat.example"
data_dir = "/var/lib/aldis"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := aldis(t, "", "check", "--config", good)
	if code != 0 || out != good+": ok\n" {
		t.Errorf("check good config: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, good+": ok\n")
	}

	// The repository's example configuration must be valid as shipped.
	out, errOut, code = aldis(t, "", "check", "--config", "../aldis.toml")
	if code != 0 {
		t.Errorf("check ../aldis.toml: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(`# line 1
[server]
domain = "Chat.Example"
data_dir = "/var/lib/aldis"

[c2s]
max_stanza_size = 10
listen = ["127.0.0.1:5222", "nonsense"]
colour = "blue"

[log]
level = "loud"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = aldis(t, "", "check", "--config", bad)
	if code != 1 {
		t.Errorf("check bad config: exit %d, want 1", code)
	}
	if out != "" {
		t.Errorf("check bad config printed %q on stdout, want nothing", out)
	}
	// Every problem, in file order, as FILE:LINE: KEY: message.
	want := []string{
		bad + ":3: server.domain: ",
		bad + ":7: c2s.max_stanza_size: ",
		bad + ":8: c2s.listen[1]: ",
		bad + ":9: c2s.colour: ",
		bad + ":12: log.level: ",
	}
	got := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("check bad config printed %d lines, want %d:\n%s", len(got), len(want), errOut)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to start with %q", i+1, got[i], want[i])
		}
	}
	// The messages say what is wrong.
	for _, frag := range []string{"lowercase", "between 1024 and 16777216", "nonsense", "unknown key", `"loud"`} {
		if !strings.Contains(errOut, frag) {
			t.Errorf("check output does not mention %q:\n%s", frag, errOut)
		}
	}

	// serve refuses the same file the same way, and does not start.
	_, errOut, code = aldis(t, "", "serve", "--config", bad)
	if code != 1 || !strings.Contains(errOut, bad+":3: server.domain: ") {
		t.Errorf("serve with a bad config: exit %d, stderr %q; want exit 1 and the same report", code, errOut)
	}
}

// TestUserCommands manages accounts with `aldis user` while the server runs.
func TestUserCommands(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})

	out, errOut, code := srv.User("first-password\n", "add", "carol")
	if code != 0 || !strings.Contains(out, "created "+srv.JID("carol")) {
		t.Fatalf("user add: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A bare JID of the served domain works as well.
	if _, errOut, code := srv.User("dave-password\n", "add", srv.JID("dave")); code != 0 {
		t.Fatalf("user add %s: exit %d, stderr %q", srv.JID("dave"), code, errOut)
	}
	// Adding twice is refused.
	if _, errOut, code := srv.User("other-password\n", "add", "carol"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("second user add: exit %d, stderr %q, want 1 and 'already exists'", code, errOut)
	}
	// Another domain is refused.
	if _, errOut, code := srv.User("other-password\n", "add", "eve@elsewhere.example"); code != 1 {
		t.Errorf("user add in another domain: exit %d, stderr %q, want 1", code, errOut)
	}

	out, _, code = srv.User("", "list")
	if code != 0 || !containsLine(out, srv.JID("carol")) || !containsLine(out, srv.JID("dave")) {
		t.Errorf("user list: exit %d, stdout %q, want carol and dave", code, out)
	}

	// The running server sees the new account at once.
	carol := srv.login(t, "carol", "first-password")
	carol.Close()

	if out, errOut, code := srv.User("second-password\n", "passwd", "carol"); code != 0 {
		t.Fatalf("user passwd: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := srv.connect(t, "carol", "first-password", loginOpts{}); saslCondition(err) != "not-authorized" {
		t.Errorf("login with the old password after passwd: %v, want not-authorized", err)
	}
	srv.login(t, "carol", "second-password").Close()

	if out, errOut, code := srv.User("", "del", "carol"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("user del: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := srv.connect(t, "carol", "second-password", loginOpts{}); saslCondition(err) != "not-authorized" {
		t.Errorf("login after del: %v, want not-authorized", err)
	}
	out, _, _ = srv.User("", "list")
	if containsLine(out, srv.JID("carol")) || !containsLine(out, srv.JID("dave")) {
		t.Errorf("user list after del: %q, want dave only", out)
	}
	if _, errOut, code := srv.User("", "del", "carol"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("deleting a deleted user: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := srv.User("x-password\n", "passwd", "nobody"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("passwd of an unknown user: exit %d, stderr %q", code, errOut)
	}
	// Too short a password is refused rather than stored.
	if _, _, code := srv.User("abc\n", "add", "frank"); code != 1 {
		t.Errorf("user add with a 3-character password: exit %d, want 1", code)
	}
}

func containsLine(s, line string) bool {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if sc.Text() == line {
			return true
		}
	}
	return false
}

// TestAdminEndpoints scrapes /metrics and /healthz as monitoring would.
func TestAdminEndpoints(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	base := "http://" + srv.AdminAddr
	hc := &http.Client{Timeout: 5 * time.Second}

	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}

	scrape := func() map[string]float64 {
		t.Helper()
		resp, err := hc.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %d", resp.StatusCode)
		}
		m := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				m[line[:i]] = v
			}
		}
		return m
	}

	const (
		logins   = `aldis_auth_total{result="success"}`
		failures = `aldis_auth_total{result="failure"}`
		messages = `aldis_stanzas_in_total{type="message"}`
	)
	before := scrape()
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	if _, err := srv.connect(t, "bob", "wrong", loginOpts{}); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>counted</body></message>", bob.JID))
	bob.Expect("alice's message", isMessage(alice.JID.String(), "counted"))
	after := scrape()

	for _, c := range []struct {
		name string
		want float64
	}{{logins, 2}, {failures, 1}, {messages, 1}} {
		if got := after[c.name] - before[c.name]; got != c.want {
			t.Errorf("%s went from %v to %v, want +%v", c.name, before[c.name], after[c.name], c.want)
		}
	}
	if after["aldis_c2s_connections"] < 2 || after["aldis_sessions"] != 2 {
		t.Errorf("aldis_c2s_connections %v, aldis_sessions %v with two users online, want >= 2 and 2",
			after["aldis_c2s_connections"], after["aldis_sessions"])
	}
	if _, ok := after["go_goroutines"]; !ok {
		t.Errorf("/metrics lacks the Go runtime metrics")
	}
}

// writeCert writes a self-signed certificate for domain with the given
// serial number, as an operator renewing a certificate would.
func writeCert(t *testing.T, certFile, keyFile, domain string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial is the serial number of the certificate a new direct TLS
// connection gets.
func servedSerial(t *testing.T, srv *server) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.TLSAddr,
		&tls.Config{ServerName: srv.Domain, InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestReload: SIGHUP applies a new log level and renewed certificate files
// without dropping anyone, and a broken configuration is refused.
func TestReload(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	opts := serverOpts{LogLevel: "info", CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	opts.Domain = "x" + randHex(4) + ".example"
	writeCert(t, opts.CertFile, opts.KeyFile, opts.Domain, 1001)
	srv := startServer(t, opts)
	srv.AddUser("alice", "alice-secret")

	alice := srv.login(t, "alice", "alice-secret")
	const debugLine = `msg="session bound"` // logged at debug level only
	if strings.Contains(srv.Stderr(), debugLine) {
		t.Fatalf("debug line logged at level info:\n%s", srv.Stderr())
	}
	if got := servedSerial(t, srv); got != 1001 {
		t.Fatalf("served certificate serial %d, want the configured 1001", got)
	}

	// The operator renews the certificate and turns on debug logging.
	writeCert(t, opts.CertFile, opts.KeyFile, opts.Domain, 2002)
	opts.LogLevel = "debug"
	srv.WriteConfig(opts)
	srv.Signal(syscall.SIGHUP)
	srv.WaitLog("reloaded log level")

	if got := servedSerial(t, srv); got != 2002 {
		t.Errorf("after SIGHUP new connections get certificate serial %d, want the renewed 2002", got)
	}
	srv.login(t, "alice", "alice-secret").Close()
	srv.WaitLog(debugLine)
	// The existing session did not notice.
	alice.IQResult("get", srv.Domain, pingPayload)

	// A broken file is refused and the running configuration kept.
	if err := os.WriteFile(srv.ConfigPath, []byte("[log]\nlevel = \"loud\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Signal(syscall.SIGHUP)
	srv.WaitLog("keeping the running one")
	alice.IQResult("get", srv.Domain, pingPayload)
	srv.login(t, "alice", "alice-secret").Close()
	if got := servedSerial(t, srv); got != 2002 {
		t.Errorf("after a refused reload the certificate serial is %d, want 2002", got)
	}
}

// TestIdleClient: a quiet but healthy client is pinged (XEP-0199) rather
// than cut off, and keeps receiving messages.
func TestIdleClient(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{IdleTimeout: "10s"})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})

	// bob says nothing; the server asks whether he is still there. (mellium
	// answers with an error, which proves he is just as well.)
	ping, ok := bob.wait(func(e *elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("type") == "get" && e.Child("urn:xmpp:ping", "ping") != nil
	}, 15*time.Second)
	if !ok {
		t.Fatalf("no ping within 15s of silence with idle_timeout 10s; session ended: %s", bob.ended())
	}
	if from := ping.Attr("from"); from != srv.Domain {
		t.Errorf("idle ping from %q, want the server %s", from, srv.Domain)
	}
	alice := srv.login(t, "alice", "alice-secret")
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>still there?</body></message>", bob.JID))
	bob.Expect("a message after the idle ping", isMessage(alice.JID.String(), "still there?"))
}

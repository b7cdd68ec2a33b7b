package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// aldisBin is the binary built once by TestMain and shared by every test.
var aldisBin string

const (
	startTimeout = 30 * time.Second // from exec to the "Add a user with" line
	stopTimeout  = 15 * time.Second // from SIGTERM to exit
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Nothing to build: every test skips itself in -short mode.
		os.Exit(m.Run())
	}
	// Only under go test's default timeout: whoever sets -timeout (to
	// debug, say) gets exactly that.
	if f := flag.Lookup("test.timeout"); f != nil && f.Value.String() == "10m0s" {
		watchdog()
	}
	if bin := os.Getenv("ALDIS_TEST_BIN"); bin != "" {
		// A binary built elsewhere, e.g. from a branch under investigation.
		aldisBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "aldis-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aldisBin = filepath.Join(dir, "aldis")
	build := exec.Command("go", "build", "-o", aldisBin, "./cmd/aldis")
	build.Dir = ".." // the module root; tests run in integration/
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building aldis: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// suiteLimit is far above the suite's normal run time (seconds): a wedged
// server or client is reported with every goroutine's stack long before
// go test's own 10-minute timeout.
const suiteLimit = 5 * time.Minute

func watchdog() {
	time.AfterFunc(suiteLimit, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("integration tests still running after %v; something is stuck", suiteLimit))
	})
}

// integration marks a test as an end-to-end test: skipped with -short,
// run in parallel with the others (each has its own server).
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts the aldis binary")
	}
	t.Parallel()
}

// serverOpts are the settings a test cares about; zero values take the
// harness defaults.
type serverOpts struct {
	Domain                string
	Registration          bool
	MaxFailuresPerIP      int
	MaxFailuresPerAccount int
	MaxStanzaSize         int
	OfflineMax            int // 0: the default (1000); noOffline: 0, storage off
	LogLevel              string
	CertFile, KeyFile     string   // empty: the server generates a self-signed certificate
	IdleTimeout           string   // c2s.idle_timeout; empty: the default
	PolicyFile            string   // labels.policy_file; empty: labels off
	AuditLog              string   // labels.audit_log
	Extra                 string   // TOML appended to the configuration, e.g. an [s2s] table
	Unthrottled           bool     // c2s.rate_bytes = 0: no per-client byte rate (measurements)
	Domains               []string // server.domains: further virtual hosts
}

// noOffline asks for offline.max_per_user = 0 (zero means "default" in serverOpts).
const noOffline = -1

// server is a running (or stopped) aldis process and its configuration.
type server struct {
	t          *testing.T
	Domain     string
	DataDir    string
	ConfigPath string
	Addr       string // STARTTLS listener
	TLSAddr    string // direct TLS listener
	AdminAddr  string
	opts       serverOpts

	mu       sync.Mutex
	cmd      *exec.Cmd
	stderr   *syncBuffer
	exited   chan struct{}
	exitErr  error
	listened []string // "listening on" lines of the current run
}

// startServer writes a configuration for opts into a temporary directory,
// starts `aldis serve` and waits until it is ready. The server is stopped
// with SIGTERM when the test ends; a non-zero exit or a slow shutdown fails
// the test.
func startServer(t *testing.T, opts serverOpts) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:          t,
		Domain:     opts.Domain,
		DataDir:    filepath.Join(dir, "data"),
		ConfigPath: filepath.Join(dir, "aldis.toml"),
		// Port 0: the server picks free ports and prints them, which start
		// reads. Picking ports here and releasing them for the server raced
		// with the other tests running in parallel (the kernel handed the
		// same port out twice).
		Addr:      "127.0.0.1:0",
		TLSAddr:   "127.0.0.1:0",
		AdminAddr: "127.0.0.1:0",
		opts:      opts,
	}
	if s.Domain == "" {
		s.Domain = "x" + randHex(4) + ".example"
	}
	s.WriteConfig(opts)
	s.start()
	t.Cleanup(func() {
		if s.running() {
			code, took := s.stop()
			if code != 0 {
				t.Errorf("aldis serve exited with code %d after SIGTERM", code)
			}
			if took > stopTimeout {
				t.Errorf("aldis serve took %v to stop after SIGTERM (limit %v)", took, stopTimeout)
			}
		}
		if t.Failed() {
			t.Logf("aldis serve stderr:\n%s", s.Stderr())
		}
	})
	return s
}

// WriteConfig (re)writes the configuration file for opts, keeping the
// domain, directories and addresses; a running server reads it on SIGHUP.
func (s *server) WriteConfig(opts serverOpts) {
	s.t.Helper()
	s.opts = opts
	if err := os.WriteFile(s.ConfigPath, []byte(s.config(opts)), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) config(o serverOpts) string {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	level := o.LogLevel
	if level == "" {
		level = "debug" // the log is only shown when a test fails
	}
	return fmt.Sprintf(`# Written by the integration tests.
[server]
domain = %q
data_dir = %q
domains = [%s]
shutdown_timeout = "5s"

[log]
level = %q

[c2s]
listen = [%q]
listen_tls = [%q]
max_stanza_size = %d
rate_burst = %d
rate_bytes = %d
handshake_timeout = "20s"
idle_timeout = %q

[auth]
registration = %t
max_failures_per_ip = %d
max_failures_per_account = %d
failure_window = "10m"

[offline]
max_per_user = %d

[admin]
listen = %q

[tls]
cert_file = %q
key_file = %q

[labels]
policy_file = %q
audit_log = %q
`, s.Domain, s.DataDir, tomlStrings(o.Domains), level, s.Addr, s.TLSAddr,
		or(o.MaxStanzaSize, 262144), max(or(o.MaxStanzaSize, 262144), 524288), rateBytes(o), cmp.Or(o.IdleTimeout, "10m"),
		o.Registration, or(o.MaxFailuresPerIP, 100), or(o.MaxFailuresPerAccount, 100),
		max(or(o.OfflineMax, 1000), 0), s.AdminAddr, o.CertFile, o.KeyFile, o.PolicyFile, o.AuditLog) + o.Extra
}

// tomlStrings writes the elements of a TOML array of strings.
func tomlStrings(l []string) string {
	q := make([]string, len(l))
	for i, v := range l {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// rateBytes is c2s.rate_bytes for o: the default unless Unthrottled.
func rateBytes(o serverOpts) int {
	if o.Unthrottled {
		return 0
	}
	return 128 << 10
}

// start runs `aldis serve` and waits for its "listening" lines.
func (s *server) start() {
	t := s.t
	t.Helper()
	cmd := exec.Command(aldisBin, "serve", "--config", s.ConfigPath)
	// No server outlives a test binary that crashed or timed out.
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
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.stderr, s.exited, s.exitErr, s.listened = cmd, stderr, exited, nil, nil
	s.mu.Unlock()

	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on "); ok {
				s.mu.Lock()
				s.listened = append(s.listened, a)
				s.mu.Unlock()
			}
			if strings.HasPrefix(line, "Add a user with:") && !signalled {
				signalled = true
				close(ready)
			}
		}
		// The pipe must be drained before Wait, which closes it.
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("aldis serve exited before it was ready (%v); stderr:\n%s", s.exitError(), stderr)
	case <-time.After(startTimeout):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("aldis serve was not ready after %v; stderr:\n%s", startTimeout, stderr)
	}
	// One listener of each kind, where it was told to listen; the lines say
	// which ports port 0 became.
	lines := s.Listening()
	for _, l := range []struct {
		addr           *string
		prefix, suffix string
	}{
		{&s.Addr, "", " (c2s, STARTTLS)"},
		{&s.TLSAddr, "", " (c2s, direct TLS)"},
		{&s.AdminAddr, "http://", "/metrics and /healthz (admin)"},
	} {
		var got []string
		for _, line := range lines {
			if a, ok := strings.CutSuffix(line, l.suffix); ok && strings.HasPrefix(a, l.prefix) {
				got = append(got, strings.TrimPrefix(a, l.prefix))
			}
		}
		host, port, _ := net.SplitHostPort(*l.addr)
		if len(got) != 1 || !strings.HasPrefix(got[0], host+":") || (port != "0" && got[0] != *l.addr) {
			t.Fatalf("aldis serve printed listening lines %q, want one %q line for %s", lines, l.suffix, *l.addr)
		}
		*l.addr = got[0]
	}
}

// exitError is what Wait returned, once the process has exited.
func (s *server) exitError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitErr
}

// Listening returns the "listening on" lines of the current run.
func (s *server) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.listened...)
}

func (s *server) running() bool {
	s.mu.Lock()
	ch := s.exited
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// Signal sends sig to the running server.
func (s *server) Signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	p := s.cmd.Process
	s.mu.Unlock()
	if err := p.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// WaitLog waits until the server's log contains text.
func (s *server) WaitLog(text string) {
	s.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(s.Stderr(), text) {
		if time.Now().After(deadline) {
			s.t.Fatalf("the server log does not say %q within %v:\n%s", text, waitTimeout, s.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; it returns the exit code (-1 when the
// process had to be killed) and how long the shutdown took.
func (s *server) stop() (code int, took time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	begin := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-exited
		return -1, time.Since(begin)
	}
	took = time.Since(begin)
	err := s.exitError()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, took
	case errors.As(err, &ee):
		return ee.ExitCode(), took
	default:
		return -1, took
	}
}

// restart stops the server (requiring a clean exit) and starts it again
// with the same configuration, data and addresses.
func (s *server) restart() {
	t := s.t
	t.Helper()
	if code, took := s.stop(); code != 0 {
		t.Fatalf("aldis serve exited with code %d after SIGTERM (took %v); stderr:\n%s", code, took, s.Stderr())
	}
	// Clients come back to the same ports.
	s.WriteConfig(s.opts)
	s.start()
}

// Stderr is the server's log so far (of the current run).
func (s *server) Stderr() string {
	s.mu.Lock()
	b := s.stderr
	s.mu.Unlock()
	return b.String()
}

// PID is the process id of the running server.
func (s *server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// aldis runs an aldis subcommand with stdin and returns its output and exit code.
func aldis(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, aldisBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("aldis %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// User runs `aldis user SUB --config FILE args...` with stdin.
func (s *server) User(stdin, sub string, args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	return aldis(s.t, stdin, append([]string{"user", sub, "--config", s.ConfigPath}, args...)...)
}

// AddUser creates an account with `aldis user add`, the password on stdin.
func (s *server) AddUser(name, password string) {
	s.t.Helper()
	out, errOut, code := s.User(password+"\n", "add", name)
	if code != 0 {
		s.t.Fatalf("aldis user add %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
	}
}

// JID is the bare JID of a local user.
func (s *server) JID(user string) string { return user + "@" + s.Domain }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine of exec and
// readers in the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const peerInstallHint = "apt-get install python3-slixmpp go-sendxmpp prosody ejabberd biboumi inspircd"

// requirePeer checks that a peer program works (by running it with args);
// without it the test is skipped, or fails on CI where it must be installed.
func requirePeer(t *testing.T, path string, args ...string) {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s %s unavailable (%v: %s); install it with: %s",
		path, strings.Join(args, " "), err, bytes.TrimSpace(out), peerInstallHint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

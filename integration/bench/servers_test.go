package bench

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // Biboumi's database
)

// The configurations below aim at a fair comparison of the c2s message
// path. Common to all three servers:
//
//   - one virtual host, benchDomain, listening only on 127.0.0.1, on ports
//     picked free for this run; no s2s, no HTTP, no admin listeners;
//   - the same certificate: an ECDSA P-256 self-signed one for benchDomain
//     (the kind Aldis generates for itself), made once per test run;
//   - STARTTLS offered but not required, and SASL PLAIN allowed without
//     TLS, so that the same running configuration serves both the STARTTLS
//     and the plain-TCP runs (in STARTTLS mode the generator always
//     upgrades before authenticating);
//   - passwords stored as salted SCRAM-SHA-1 hashes with 4096 PBKDF2
//     iterations, so a PLAIN login costs each server the same key
//     derivation (Aldis also stores SCRAM-SHA-256 keys with the same count);
//   - no traffic shaping or rate limiting anywhere on the c2s path, and no
//     limits on authentication failures or registrations from loopback;
//   - in-band registration (XEP-0077) enabled, used once to create the
//     accounts before the measured runs;
//   - logging at warning level to a file in the temporary directory;
//   - a minimal module set: roster, disco, ping, registration and offline
//     storage where it is a module; no MAM, carbons, stream management,
//     CSI or PEP, none of which the generator uses;
//   - for the "muc" mode only, each server's own MUC service on mucDomain
//     with its default options (rooms created by any local user, history
//     kept but not requested: the generator joins with maxstanzas='0'),
//     except for the occupant limit, which is raised to 2000 so that the
//     big room (1,000 occupants by default) fits: ejabberd's and Aldis's
//     default limit is 200 per room; Prosody has none;
//   - for the "irc" mode only, an IRC gateway between a room and a channel
//     of one InspIRCd (irc/irctest: fakelag off, no flood limits), with
//     the gateway's own flood control out of the way: Aldis its built-in
//     gateway ([irc] with flood_interval = "1us", flood_burst = 1000, its
//     MUC service with defaults), ejabberd and Prosody Debian's Biboumi as
//     an XEP-0114 component on biboumiDomain, with its per-user throttle
//     (10 lines, then one a second) switched off, once with its defaults
//     otherwise and once without recording history (see startBiboumi).

const (
	benchDomain   = "bench.test"
	benchPassword = "bench-password-1"
	mucDomain     = "conference." + benchDomain
	mucMaxUsers   = 2000
	biboumiDomain = "biboumi." + benchDomain
	biboumiSecret = "bench-component-secret"
)

// serverDef describes how to run one server implementation.
type serverDef struct {
	name string
	// missing returns "" when the server can run here, else why not and
	// how to install it.
	missing func(b *bench) string
	// version describes the implementation for the results header.
	version func(b *bench) string
	// configure writes the configuration into dir and returns how to start it.
	configure func(t *testing.T, b *bench, dir string) *serverConf
}

// serverConf is a configured server, ready to be started (repeatedly).
type serverConf struct {
	name     string
	dir      string
	addr     string // c2s listener, STARTTLS offered and plain allowed
	cmd      func() *exec.Cmd
	measure  string   // command name of the process to measure and signal; "" = the started one
	logs     []string // server log files worth showing
	outFile  string   // stdout and stderr of the started process
	startMax time.Duration
	// metricsURL, when set, serves Prometheus text with the server's own
	// message counters (Aldis only).
	metricsURL string
	// mucCmd starts the server for the "muc" mode when that needs another
	// configuration; nil: cmd.
	mucCmd func() *exec.Cmd
	// For the "irc" mode: ircCmd starts the server with its gateway when
	// that needs another configuration (nil: cmd); ircRoom is the room
	// linked to ircChannel; compAddr, when set, is the component port
	// Biboumi connects to.
	ircCmd              func() *exec.Cmd
	ircRoom, ircChannel string
	compAddr            string
}

var serverDefs = []serverDef{aldisDef, ejabberdDef, prosodyDef}

// ---------------------------------------------------------------- Aldis

var aldisDef = serverDef{
	name:    "aldis",
	missing: func(*bench) string { return "" },
	version: func(b *bench) string {
		out, err := exec.Command(b.aldisBin, "version").Output()
		if err != nil {
			return "aldis (unknown version)"
		}
		return strings.TrimSpace(string(out))
	},
	configure: func(t *testing.T, b *bench, dir string) *serverConf {
		addr, adminAddr := freeAddr(t), freeAddr(t)
		cfgPath := filepath.Join(dir, "aldis.toml")
		// Aldis choices:
		//  - [c2s] rate_bytes = 0: the per-connection "karma" byte rate
		//    limiter is off (the default, 128 KiB/s per connection, would
		//    throttle the saturating phase);
		//  - require_tls = false + allow_plain_without_tls = true: allows
		//    the plain-TCP run; STARTTLS is still offered;
		//  - listen_tls = []: no direct-TLS listener (not measured);
		//  - [auth] max_failures_per_ip/_account raised to the maximum:
		//    they also count registrations, and 200+ registrations from
		//    127.0.0.1 would otherwise be refused;
		//  - scram_iterations = 4096 (the default, stated for the record);
		//  - [admin] listen on loopback: the test reads the server's own
		//    counters from /metrics before and after each run (not during
		//    it) and logs them next to the generator's: messages in, routed
		//    and written, offline storage, send-queue overflows, stream
		//    errors;
		//  - send_queue, max_stanza_size, offline: defaults.
		conf := fmt.Sprintf(`# Written by integration/bench (TestSideBySide).
[server]
domain = %q
data_dir = %q
shutdown_timeout = "5s"

[log]
level = "warn"

[tls]
cert_file = %q
key_file = %q

[c2s]
listen = [%q]
listen_tls = []
require_tls = false
allow_plain_without_tls = true
rate_bytes = 0

[auth]
scram_iterations = 4096
max_failures_per_ip = 1000000
max_failures_per_account = 1000000
registration = true

[admin]
listen = %q
`, benchDomain, filepath.Join(dir, "data"), b.certFile, b.keyFile, addr, adminAddr)
		writeFile(t, cfgPath, conf)
		// The MUC run gets its own file with a [muc] section, so that the
		// 1:1 runs still work with a build that rejects it. Defaults
		// (enabled, history 20, creators "local") except the occupant
		// limit, which the big room needs raised.
		mucPath := filepath.Join(dir, "aldis-muc.toml")
		writeFile(t, mucPath, conf+fmt.Sprintf(`
[muc]
enabled = true
domain = %q
max_occupants = %d
`, mucDomain, mucMaxUsers))
		// The IRC run: the built-in gateway links a room of the MUC
		// service (defaults) to the channel; its flood control is out of
		// the way, and it joins the room a second after the first user
		// created it (rejoin_interval; 30s by default).
		channel := "#bench-aldis"
		room := "bench@" + mucDomain
		ircPath := filepath.Join(dir, "aldis-irc.toml")
		mapPath := filepath.Join(dir, "irc-map.toml")
		if b.ircd != nil {
			writeFile(t, mapPath, fmt.Sprintf(`# Written by integration/bench (TestSideBySide).
[[network]]
name = "bench"
servers = [%q]
no_tls = true
nick = "aldisgw"
flood_interval = "1us"
flood_burst = 1000

[[link]]
room = %q
network = "bench"
channel = %q
`, b.ircd.Addr, room, channel))
			writeFile(t, ircPath, conf+fmt.Sprintf(`
[muc]
enabled = true
domain = %q

[irc]
maps = [%q]
rejoin_interval = "1s"
`, mucDomain, mapPath))
		}
		return &serverConf{
			name:    "aldis",
			dir:     dir,
			addr:    addr,
			outFile: filepath.Join(dir, "aldis.log"),
			cmd: func() *exec.Cmd {
				return exec.Command(b.aldisBin, "serve", "--config", cfgPath)
			},
			mucCmd: func() *exec.Cmd {
				return exec.Command(b.aldisBin, "serve", "--config", mucPath)
			},
			ircCmd: func() *exec.Cmd {
				return exec.Command(b.aldisBin, "serve", "--config", ircPath)
			},
			ircRoom:    room,
			ircChannel: channel,
			startMax:   30 * time.Second,
			metricsURL: "http://" + adminAddr + "/metrics",
		}
	},
}

// ------------------------------------------------------------- ejabberd

var ejabberdDef = serverDef{
	name: "ejabberd",
	missing: func(*bench) string {
		for _, bin := range []string{"/usr/sbin/ejabberdctl", "/usr/bin/erl"} {
			if _, err := os.Stat(bin); err != nil {
				return "ejabberd is not installed: apt-get update && apt-get install -y --no-install-recommends ejabberd"
			}
		}
		return ""
	},
	version: func(*bench) string { return "ejabberd " + debVersion("ejabberd") },
	configure: func(t *testing.T, b *bench, dir string) *serverConf {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		distAddr := freeAddr(t)
		_, distPort, _ := net.SplitHostPort(distAddr)
		for _, d := range []string{"spool", "logs", "home"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// ejabberd reads one PEM file holding both certificate and key.
		pemPath := filepath.Join(dir, "server.pem")
		writeFile(t, pemPath, string(readFile(t, b.certFile))+string(readFile(t, b.keyFile)))
		// ejabberd choices:
		//  - listener shaper: none, and shaper_rules c2s_shaper: none: no
		//    traffic shaping before or after authentication (the Debian
		//    default shapes every user to 3000 B/s);
		//  - backlog: 1024: ejabberd's default listen backlog is 5, so 16
		//    parallel connects overflow it and the dropped SYNs are only
		//    retried after a second (measured: 19 logins/s at 16 in
		//    parallel against 120/s one at a time); Go listens with the
		//    kernel's somaxconn (4096 here), Prosody with 128;
		//  - starttls: true, starttls_required: false: STARTTLS offered,
		//    plain TCP (and PLAIN over it) allowed;
		//  - auth_password_format: scram, auth_scram_hash: sha: SCRAM-SHA-1
		//    hashes with ejabberd's fixed 4096 iterations;
		//  - registration_timeout: infinity: no one-registration-per-IP-per-
		//    10-minutes throttle; mod_register open to all for the setup;
		//  - max_user_sessions: 10, offline storage 5000 (irrelevant here:
		//    one session per account, all online);
		//  - loglevel: warning; no s2s, HTTP, STUN or MQTT listeners;
		//  - default Mnesia storage in the private spool directory;
		//  - "muc" mode: mod_muc on conference.@HOST@ (the default host)
		//    with default options but max_users (the service's limit) and
		//    default_room_options max_users raised for the big room; room
		//    creation is open to all by default (access_create: all);
		//  - "irc" mode: an ejabberd_service listener for Biboumi on
		//    loopback, without a shaper (shaper_rule: none).
		muc := ""
		if b.muc {
			muc = fmt.Sprintf(`  mod_muc:
    host: %q
    max_users: %d
    default_room_options:
      max_users: %d
`, mucDomain, mucMaxUsers, mucMaxUsers)
		}
		component, compAddr := "", ""
		if b.ircd != nil {
			compAddr = freeAddr(t)
			_, compPort, _ := net.SplitHostPort(compAddr)
			component = fmt.Sprintf(`  -
    port: %s
    ip: "127.0.0.1"
    module: ejabberd_service
    shaper_rule: none
    hosts:
      %q:
        password: %q
`, compPort, biboumiDomain, biboumiSecret)
		}
		yml := fmt.Sprintf(`# Written by integration/bench (TestSideBySide).
hosts:
  - %q
loglevel: warning
log_rotate_count: 0
certfiles:
  - %q
listen:
  -
    port: %s
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    starttls_required: false
    shaper: none
    access: c2s
    backlog: 1024
    max_stanza_size: 262144
%sauth_method: internal
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_disco: {}
  mod_offline: {}
  mod_ping: {}
  mod_register:
    access: register
    ip_access: all
  mod_roster: {}
%s`, benchDomain, pemPath, port, component, muc)
		cfgPath := filepath.Join(dir, "ejabberd.yml")
		writeFile(t, cfgPath, yml)
		// ejabberdctl settings: a private node with its own cookie that
		// needs no epmd (ERL_DIST_PORT: fixed distribution port on
		// loopback), and no su to the ejabberd user when run as root
		// (EXEC_CMD is chosen before this file is sourced, so it can be
		// overridden here): the files live in our temporary directory.
		node := "aldisbench" + randHex(4) + "@localhost"
		ctl := fmt.Sprintf(`# Written by integration/bench (TestSideBySide).
EXEC_CMD=as_current_user
ERLANG_NODE=%s
ERL_DIST_PORT=%s
INET_DIST_INTERFACE=127.0.0.1
ERL_OPTIONS="-setcookie %s -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_BYPASS_WARNINGS=true
`, node, distPort, randHex(16))
		ctlPath := filepath.Join(dir, "ejabberdctl.cfg")
		writeFile(t, ctlPath, ctl)
		writeFile(t, filepath.Join(dir, "inetrc"), `{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost"]}.
{file, resolv, "/etc/resolv.conf"}.
`)
		return &serverConf{
			name:    "ejabberd",
			dir:     dir,
			addr:    addr,
			outFile: filepath.Join(dir, "ejabberd.out"),
			logs:    []string{filepath.Join(dir, "logs", "ejabberd.log"), filepath.Join(dir, "logs", "error.log")},
			cmd: func() *exec.Cmd {
				cmd := exec.Command("/usr/sbin/ejabberdctl",
					"--config-dir", dir, "--config", cfgPath, "--ctl-config", ctlPath,
					"--logs", filepath.Join(dir, "logs"), "--spool", filepath.Join(dir, "spool"),
					"foreground")
				// HOME: Erlang would otherwise look for (and create)
				// ~/.erlang.cookie in the real home directory.
				cmd.Env = append(os.Environ(), "HOME="+filepath.Join(dir, "home"))
				return cmd
			},
			// ejabberdctl runs erl as a child of its shell; the server is
			// the beam.smp process below it.
			measure:    "beam.smp",
			startMax:   90 * time.Second,
			compAddr:   compAddr,
			ircChannel: "#bench-ejabberd",
			ircRoom:    biboumiRoom("#bench-ejabberd", b),
		}
	},
}

// -------------------------------------------------------------- Prosody

var prosodyDef = serverDef{
	name: "prosody",
	missing: func(*bench) string {
		if _, err := os.Stat("/usr/bin/prosody"); err != nil {
			return "Prosody is not installed: apt-get update && apt-get install -y --no-install-recommends prosody"
		}
		return ""
	},
	version: func(*bench) string { return "Prosody " + debVersion("prosody") },
	configure: func(t *testing.T, b *bench, dir string) *serverConf {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		s2sAddr := freeAddr(t)
		_, s2sPort, _ := net.SplitHostPort(s2sAddr)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		// Prosody choices:
		//  - mod_limits is not loaded: no c2s byte-rate limits (the Debian
		//    default config loads it with 10 kb/s per c2s connection);
		//  - c2s_require_encryption = false + allow_unencrypted_plain_auth
		//    = true: STARTTLS offered, plain TCP (and PLAIN over it)
		//    allowed;
		//  - authentication internal_hashed with default_iteration_count =
		//    4096 (Prosody's default is 10000): the same PBKDF2 cost per
		//    PLAIN login as the other two;
		//  - network_backend = "epoll" (the 0.12 default, stated);
		//  - mod_register for the setup; 127.0.0.1 is on the registration
		//    allowlist, so mod_register_limits does not throttle it;
		//  - "s2s" disabled, no HTTP; offline storage is auto-loaded;
		//  - run_as_root so it can run as root in a container, and -F
		//    (foreground) without mod_posix;
		//  - log level warn, to a file;
		//  - "muc" mode: the muc component on mucDomain with
		//    restrict_room_creation = false (any user may create rooms) and
		//    otherwise default options (rooms locked until configured,
		//    no occupant limit);
		//  - "irc" mode: a component port on loopback for Biboumi.
		muc := ""
		if b.muc {
			muc = fmt.Sprintf(`
Component %q "muc"
    restrict_room_creation = false
`, mucDomain)
		}
		compAddr, compPorts := "", "{ }"
		if b.ircd != nil {
			compAddr = freeAddr(t)
			_, compPort, _ := net.SplitHostPort(compAddr)
			compPorts = "{ " + compPort + " }"
			muc += fmt.Sprintf(`
Component %q
    component_secret = %q
`, biboumiDomain, biboumiSecret)
		}
		lua := fmt.Sprintf(`-- Written by integration/bench (TestSideBySide).
run_as_root = true
pidfile = %q
data_path = %q
admin_socket = %q
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %s }
c2s_direct_tls_ports = { }
s2s_ports = { %s }
component_ports = %s
component_interfaces = { "127.0.0.1" }
network_backend = "epoll"
log = { warn = %q }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "register" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
registration_allowlist = { "127.0.0.1", "::1" }
ssl = { certificate = %q, key = %q }

VirtualHost %q
%s`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "prosody.sock"),
			port, s2sPort, compPorts, filepath.Join(dir, "prosody.log"), b.certFile, b.keyFile, benchDomain, muc)
		cfgPath := filepath.Join(dir, "prosody.cfg.lua")
		writeFile(t, cfgPath, lua)
		return &serverConf{
			name:    "prosody",
			dir:     dir,
			addr:    addr,
			outFile: filepath.Join(dir, "prosody.out"),
			logs:    []string{filepath.Join(dir, "prosody.log")},
			cmd: func() *exec.Cmd {
				// /usr/bin/prosody is "#!/usr/bin/env lua5.4": env execs
				// the interpreter, so the started PID is the server.
				return exec.Command("/usr/bin/prosody", "--config", cfgPath, "-F")
			},
			startMax:   30 * time.Second,
			compAddr:   compAddr,
			ircChannel: "#bench-prosody",
			ircRoom:    biboumiRoom("#bench-prosody", b),
		}
	},
}

// ------------------------------------------------------------ processes

// proc is a running server.
type proc struct {
	conf   *serverConf
	cmd    *exec.Cmd
	pid    int // the server process proper: measured and sent SIGTERM
	exited chan struct{}
	err    error // from Wait, valid once exited is closed
	out    *os.File
}

// startServer starts sc (pinned to cpus when set) and waits until its c2s
// port accepts connections.
func startServer(sc *serverConf, cpus string) (*proc, error) {
	cmd := sc.cmd()
	if cpus != "" {
		// taskset execs the command: the PID stays the server's.
		cmd = exec.Command("taskset", append([]string{"-c", cpus}, cmd.Args...)...)
		cmd.Env = sc.cmd().Env
	}
	cmd.Dir = sc.dir
	// Its own process group, so that a server that ignores SIGTERM can be
	// killed together with its children (ejabberd: shell, beam.smp,
	// erl_child_setup).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.OpenFile(sc.outFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", sc.name, err)
	}
	p := &proc{conf: sc, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), out: out}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(sc.startMax)
	for {
		select {
		case <-p.exited:
			out.Close()
			return nil, fmt.Errorf("%s exited during startup (%v); output:\n%s", sc.name, p.err, p.logTail(4000))
		default:
		}
		if c, err := net.DialTimeout("tcp", sc.addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			p.kill()
			out.Close()
			return nil, fmt.Errorf("%s not listening on %s after %v; output:\n%s", sc.name, sc.addr, sc.startMax, p.logTail(4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sc.measure != "" {
		pid, err := findDescendant(cmd.Process.Pid, sc.measure)
		if err != nil {
			p.kill()
			out.Close()
			return nil, err
		}
		p.pid = pid
	}
	return p, nil
}

// stop sends SIGTERM to the server process and waits for the started
// process to exit; after 30s it kills the process group.
func (p *proc) stop() error {
	defer p.out.Close()
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
		p.kill()
		return fmt.Errorf("%s did not exit within 30s of SIGTERM; killed", p.conf.name)
	}
}

// kill ends the process group started for this server.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logTail returns the last n bytes of the server's output and log files.
func (p *proc) logTail(n int) string {
	var b strings.Builder
	for _, f := range append([]string{p.conf.outFile}, p.conf.logs...) {
		data, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > n {
			data = append([]byte("..."), data[len(data)-n:]...)
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), bytes.TrimRight(data, "\n"))
	}
	if b.Len() == 0 {
		return "(no output)"
	}
	return b.String()
}

// logSizes records the current sizes of the output and log files, so the
// lines a run added can be shown.
func (p *proc) logSizes() map[string]int64 {
	m := map[string]int64{}
	for _, f := range append([]string{p.conf.outFile}, p.conf.logs...) {
		if fi, err := os.Stat(f); err == nil {
			m[f] = fi.Size()
		}
	}
	return m
}

// logsSince returns what was appended to the output and log files since
// sizes were taken, at most max bytes per file.
func (p *proc) logsSince(sizes map[string]int64, max int) string {
	var b strings.Builder
	for _, f := range append([]string{p.conf.outFile}, p.conf.logs...) {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if off := sizes[f]; off <= int64(len(data)) {
			data = data[off:]
		}
		data = bytes.TrimSpace(data)
		if len(data) == 0 {
			continue
		}
		more := ""
		if len(data) > max {
			more = fmt.Sprintf("\n... (%d more bytes)", len(data)-max)
			data = data[:max]
		}
		fmt.Fprintf(&b, "--- %s\n%s%s\n", filepath.Base(f), data, more)
	}
	return b.String()
}

// findDescendant waits up to 10s for a process named comm below root.
func findDescendant(root int, comm string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := descendant(root, comm); pid > 0 {
			return pid, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no %s process below PID %d", comm, root)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func descendant(root int, comm string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	name := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		f := bytes.Fields(b[j+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(string(f[1]))
		parent[pid], name[pid] = ppid, string(b[i+1:j])
	}
	for pid, n := range name {
		if n != comm {
			continue
		}
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				return pid
			}
		}
	}
	return 0
}

// procName is the command name of pid, for the log.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// ------------------------------------------------------------- helpers

// makeCert writes a self-signed ECDSA P-256 certificate for benchDomain
// and its PKCS#8 key into dir.
func makeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: benchDomain},
		DNSNames:              []string{benchDomain},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})))
	return certFile, keyFile
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// debVersion is the installed Debian package version of pkg.
func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "(version unknown)"
	}
	return strings.TrimSpace(string(out))
}

// ------------------------------------------------------------- Biboumi

// biboumiRoom is the JID of channel on the bench's InspIRCd through
// Biboumi: #channel%irc-server@biboumi-domain.
func biboumiRoom(channel string, b *bench) string {
	if b.ircd == nil {
		return ""
	}
	host, _, _ := net.SplitHostPort(b.ircd.Addr)
	return channel + "%" + host + "@" + biboumiDomain
}

// gatewayProc is a running Biboumi.
type gatewayProc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	outFile string
}

// startBiboumi runs Debian's Biboumi as the component biboumiDomain of
// the server sc, and waits until it has authenticated.
//
// Biboumi keeps per-user settings for each IRC server in its database,
// which users change with an ad-hoc command. Two of them are written there
// before it starts, for the accounts the scenario logs in: the IRC port
// (Biboumi dials 6667 and first tries TLS on 6697 and 6670; the bench's
// InspIRCd listens elsewhere, in plain TCP), and the throttle limit, set
// to -1 ("off"): by default Biboumi sends 10 lines to an IRC server
// without delay and then one a second, its own flood control, which the
// scenario leaves to the IRC server (as Aldis's gateway has its own set
// out of the way). Without history, a third: the users' "Record history"
// option, on by default, is off; with it Biboumi writes every message it
// relays into its SQLite database once per XMPP user, which costs it far
// more than relaying (Aldis keeps a temporary room's history in memory).
// Everything else keeps Biboumi's defaults.
func startBiboumi(t *testing.T, b *bench, sc *serverConf, users int, history bool) (*gatewayProc, error) {
	dir := filepath.Join(sc.dir, "biboumi")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	host, ircPort, _ := net.SplitHostPort(b.ircd.Addr)
	_, compPort, _ := net.SplitHostPort(sc.compAddr)
	dbPath := filepath.Join(dir, "biboumi.sqlite")
	os.Remove(dbPath) // a fresh database per run
	if err := biboumiOptions(dbPath, host, ircPort, users, history); err != nil {
		return nil, fmt.Errorf("biboumi database: %w", err)
	}
	cfgPath := filepath.Join(dir, "biboumi.cfg")
	// log_level 1 (info): the line saying it authenticated is info;
	// nothing is logged per message at that level.
	writeFile(t, cfgPath, fmt.Sprintf(`hostname=%s
password=%s
xmpp_server_ip=127.0.0.1
port=%s
db_name=%s
identd_port=0
log_level=1
realname_customization=true
realname_from_jid=false
`, biboumiDomain, biboumiSecret, compPort, dbPath))
	g := &gatewayProc{outFile: filepath.Join(dir, "biboumi.out"), exited: make(chan struct{})}
	out, err := os.OpenFile(g.outFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	g.cmd = exec.Command("/usr/bin/biboumi", cfgPath)
	g.cmd.Dir = dir
	g.cmd.Stdout, g.cmd.Stderr = out, out
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start biboumi: %w", err)
	}
	go func() { g.cmd.Wait(); close(g.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(g.outFile)
		if bytes.Contains(data, []byte("Authenticated with the XMPP server")) {
			return g, nil
		}
		select {
		case <-g.exited:
			return nil, fmt.Errorf("biboumi exited at start; output:\n%s", data)
		default:
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("biboumi not connected to %s after 30s; output:\n%s", sc.compAddr, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// biboumiOptions writes the IRC server options of accounts 0 … users−1
// for the server host into Biboumi's database, and without history their
// global options, in the tables Biboumi 9 creates (it creates the others,
// and the columns it misses, itself).
func biboumiOptions(path, host, port string, users int, history bool) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS ircserveroptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,
		owner_ TEXT, server_ TEXT, pass_ TEXT, tlsports_ TEXT, ports_ TEXT, username_ TEXT, realname_ TEXT,
		verifycert_ INTEGER, trustedfingerprint_ TEXT, encodingout_ TEXT, encodingin_ TEXT, maxhistorylength_ INTEGER,
		address_ TEXT, nick_ TEXT, saslpassword_ TEXT, throttlelimit_ INTEGER)`); err != nil {
		return err
	}
	if !history {
		if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS globaloptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,
			owner_ TEXT, maxhistorylength_ INTEGER, recordhistory_ INTEGER, persistent_ INTEGER)`); err != nil {
			return err
		}
	}
	for i := range users {
		if !history {
			if _, err := db.Exec(`INSERT INTO globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_)
				VALUES (?, 20, 0, 0)`, fmt.Sprintf("bench%d@%s", i, benchDomain)); err != nil {
				return err
			}
		}
		owner := fmt.Sprintf("bench%d@%s", i, benchDomain)
		if _, err := db.Exec(`INSERT INTO ircserveroptions_ (owner_, server_, pass_, tlsports_, ports_, username_, realname_,
			verifycert_, trustedfingerprint_, encodingout_, encodingin_, maxhistorylength_, address_, nick_, saslpassword_,
			throttlelimit_) VALUES (?, ?, '', '', ?, '', '', 1, '', 'ISO-8859-1', 'ISO-8859-1', 20, '', '', '', -1)`,
			owner, host, port); err != nil {
			return err
		}
	}
	return nil
}

func (g *gatewayProc) pid() int { return g.cmd.Process.Pid }

// stop sends SIGTERM (Biboumi then quits its IRC connections) and kills
// its process group after 10s.
func (g *gatewayProc) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.exited
	}
}

func (g *gatewayProc) output(n int) string {
	data, err := os.ReadFile(g.outFile)
	if err != nil {
		return err.Error()
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

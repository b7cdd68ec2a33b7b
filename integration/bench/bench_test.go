package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/ircbench"
	"github.com/aldis-im/aldis/irc/irctest"
	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

// bench is the state shared by the runs of one TestSideBySide.
type bench struct {
	aldisBin          string
	certFile, keyFile string
	users, rate       int
	duration          time.Duration
	cpus              string // taskset CPU list for the server, "" = none

	// Multi-user chat, when ALDIS_BENCH_MODES includes "muc".
	muc                       bool
	mucMode                   mode // connection mode of the MUC run
	rooms, occupants, mucRate int
	bigRoom, bigRoomRate      int

	// The IRC gateway, when ALDIS_BENCH_MODES includes "irc": one InspIRCd
	// for every server's run, each in its own channel.
	ircd                            *irctest.Server
	ircLatency, ircBurst, ircWindow int
	biboumiHistory                  []bool // the Biboumi runs: with history recorded, without
}

// ircXMPPUsers and ircIRCUsers are the users on each side of the gateway
// in the "irc" mode (the scenario).
const (
	ircXMPPUsers = 3
	ircIRCUsers  = 2
)

// accounts is how many accounts the selected runs need.
func (b *bench) accounts() int {
	n := b.users
	if b.muc {
		n = max(n, b.rooms*b.occupants, b.bigRoom)
	}
	if b.ircd != nil {
		n = max(n, ircXMPPUsers)
	}
	return n
}

// mode is a connection mode the generator logs in with.
type mode struct {
	key, name, tls string
}

var allModes = []mode{
	{"starttls", "STARTTLS", loadgen.TLSStartTLS},
	{"plain", "plain TCP", loadgen.TLSNone},
}

// row is one line of the results table: a server in a mode.
type row struct {
	server, mode string
	res          loadgen.Result
	err          error
	srv          map[string]float64 // deltas of the server's own counters over the run (Aldis), or nil
}

// ircRow is the IRC gateway run of one server.
type ircRow struct {
	server, gateway string
	res             ircbench.Result
	err             error
}

// ircSystem names the server and its gateway in the results.
func (r ircRow) system() string {
	if r.gateway == "" {
		return r.server + " (built-in gateway)"
	}
	return r.server + " + " + r.gateway
}

// mucRow is the multi-user chat run of one server.
type mucRow struct {
	server string
	res    loadgen.Result
	err    error
	skip   string // why the server was not measured (Aldis without a working MUC service)
}

func TestSideBySide(t *testing.T) {
	if os.Getenv("ALDIS_BENCH") != "1" {
		t.Skip("side-by-side benchmark of Aldis, ejabberd and Prosody (minutes; needs the prosody and ejabberd packages); " +
			"run it with: ALDIS_BENCH=1 go test -run TestSideBySide -v -timeout 20m ./integration/bench/  " +
			"(optional: ALDIS_BENCH_USERS=200 ALDIS_BENCH_RATE=5000 ALDIS_BENCH_DURATION=10s ALDIS_BENCH_SERVERS=aldis,ejabberd,prosody " +
			"ALDIS_BENCH_MODES=starttls,plain,muc,irc ALDIS_BENCH_CPUS= ALDIS_BENCH_OUT=results.md; see doc.go for the MUC and IRC settings)")
	}
	b := &bench{
		users:       envInt(t, "ALDIS_BENCH_USERS", 200),
		rate:        envInt(t, "ALDIS_BENCH_RATE", 5000),
		duration:    envDuration(t, "ALDIS_BENCH_DURATION", 10*time.Second),
		cpus:        os.Getenv("ALDIS_BENCH_CPUS"),
		rooms:       envInt(t, "ALDIS_BENCH_ROOMS", 10),
		occupants:   envInt(t, "ALDIS_BENCH_OCCUPANTS", 20),
		mucRate:     envInt(t, "ALDIS_BENCH_MUC_RATE", 600),
		bigRoom:     envIntOrZero(t, "ALDIS_BENCH_BIG_ROOM", 1000),
		bigRoomRate: envInt(t, "ALDIS_BENCH_BIG_ROOM_RATE", 2),
		ircLatency:  envInt(t, "ALDIS_BENCH_IRC_LATENCY", 300),
		ircBurst:    envInt(t, "ALDIS_BENCH_IRC_BURST", 2000),
		ircWindow:   envInt(t, "ALDIS_BENCH_IRC_WINDOW", 100),
	}
	mucTLS := envList("ALDIS_BENCH_MUC_TLS", "starttls")
	if len(mucTLS) != 1 || !slices.ContainsFunc(allModes, func(x mode) bool { return x.key == mucTLS[0] }) {
		t.Fatalf("ALDIS_BENCH_MUC_TLS=%q: want starttls or plain", os.Getenv("ALDIS_BENCH_MUC_TLS"))
	}
	b.mucMode = allModes[slices.IndexFunc(allModes, func(x mode) bool { return x.key == mucTLS[0] })]
	if b.cpus != "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			t.Fatal("ALDIS_BENCH_CPUS needs taskset (util-linux)")
		}
	}
	servers := envList("ALDIS_BENCH_SERVERS", "aldis,ejabberd,prosody")
	modes := envList("ALDIS_BENCH_MODES", "starttls,plain")
	for _, s := range servers {
		if !slices.ContainsFunc(serverDefs, func(d serverDef) bool { return d.name == s }) {
			t.Fatalf("ALDIS_BENCH_SERVERS: unknown server %q (known: aldis, ejabberd, prosody)", s)
		}
	}
	ircMode := false
	for _, m := range modes {
		switch m {
		case "muc":
			b.muc = true
			continue
		case "irc":
			ircMode = true
			continue
		}
		if !slices.ContainsFunc(allModes, func(x mode) bool { return x.key == m }) {
			t.Fatalf("ALDIS_BENCH_MODES: unknown mode %q (known: starttls, plain, muc, irc)", m)
		}
	}
	if ircMode {
		for _, h := range envList("ALDIS_BENCH_BIBOUMI_HISTORY", "on,off") {
			if h != "on" && h != "off" {
				t.Fatalf("ALDIS_BENCH_BIBOUMI_HISTORY: %q is neither on nor off", h)
			}
			b.biboumiHistory = append(b.biboumiHistory, h == "on")
		}
		// Before the servers are configured: their gateways need its address.
		b.ircd = irctest.InspIRCd(t)
	}

	tmp := t.TempDir()
	b.aldisBin = os.Getenv("ALDIS_BENCH_BIN")
	if b.aldisBin == "" {
		b.aldisBin = filepath.Join(tmp, "aldis")
		build := exec.Command("go", "build", "-o", b.aldisBin, "./cmd/aldis")
		build.Dir = filepath.Join("..", "..") // the module root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building aldis: %v\n%s", err, out)
		}
	}
	b.certFile, b.keyFile = makeCert(t, tmp)

	var rows []row
	var mucRows []mucRow
	var ircRows []ircRow
	var versions []string
	for _, name := range servers {
		def := serverDefs[slices.IndexFunc(serverDefs, func(d serverDef) bool { return d.name == name })]
		t.Run(name, func(t *testing.T) {
			if hint := def.missing(b); hint != "" {
				t.Skip(hint)
			}
			versions = append(versions, def.version(b))
			got, mr, ir := b.runServer(t, def, modes)
			if b.muc {
				if mr == nil {
					mr = &mucRow{server: name, err: fmt.Errorf("not run: setup failed (see the log)")}
				}
				mucRows = append(mucRows, *mr)
			}
			if b.ircd != nil {
				if ir == nil {
					ir = []ircRow{{server: name, err: fmt.Errorf("not run: setup failed (see the log)")}}
				}
				ircRows = append(ircRows, ir...)
			}
			// Every selected mode gets a row, failed ones too.
			for _, m := range allModes {
				if !slices.Contains(modes, m.key) {
					continue
				}
				r, ok := got[m.name]
				if !ok {
					r = row{server: name, mode: m.name, err: fmt.Errorf("not run: setup failed (see the log)")}
				}
				rows = append(rows, r)
			}
		})
	}

	if b.ircd != nil {
		versions = append(versions, "InspIRCd "+debVersion("inspircd"))
		if slices.Contains(servers, "ejabberd") || slices.Contains(servers, "prosody") {
			versions = append(versions, "Biboumi "+debVersion("biboumi"))
		}
	}
	table := b.table(rows, mucRows, ircRows, versions)
	fmt.Printf("\n%s\n", table)
	if out := os.Getenv("ALDIS_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Errorf("writing ALDIS_BENCH_OUT: %v", err)
		} else {
			t.Logf("results written to %s", out)
		}
	}
}

// runServer configures one server, creates the accounts, then runs each
// mode against a freshly started instance, so every mode's memory and
// login figures start from the same state. It returns the rows by mode name,
// and the multi-user chat and IRC gateway runs when selected (nil if setup
// failed).
func (b *bench) runServer(t *testing.T, def serverDef, modes []string) (map[string]row, *mucRow, []ircRow) {
	dir := t.TempDir()
	sc := def.configure(t, b, dir)
	t.Logf("%s: c2s on %s, files in %s", def.name, sc.addr, dir)
	got := map[string]row{}

	// Setup: create the accounts by in-band registration.
	p := b.start(t, sc)
	if p == nil {
		return got, nil, nil
	}
	begin := time.Now()
	regCfg := loadgen.Config{
		Addr: sc.addr, Domain: benchDomain, Password: benchPassword,
		TLS: loadgen.TLSStartTLS, InsecureSkipVerify: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	accounts := b.accounts()
	err := loadgen.Register(ctx, regCfg, accounts)
	if err != nil {
		// ejabberd may accept connections a moment before every module
		// is up; accounts already made count as created on a retry.
		t.Logf("%s: registration: %v; retrying once", def.name, err)
		time.Sleep(2 * time.Second)
		err = loadgen.Register(ctx, regCfg, accounts)
	}
	cancel()
	if err != nil {
		t.Errorf("%s: registering %d accounts: %v\nserver output:\n%s", def.name, accounts, err, p.logTail(4000))
		b.stop(t, p)
		return got, nil, nil
	}
	t.Logf("%s: %d accounts registered in %v", def.name, accounts, time.Since(begin).Round(time.Millisecond))
	b.stop(t, p)

	for _, m := range allModes {
		if !slices.Contains(modes, m.key) {
			continue
		}
		got[m.name] = b.runMode(t, sc, m)
	}
	var mr *mucRow
	if b.muc {
		r := b.runMUC(t, sc)
		mr = &r
	}
	var ir []ircRow
	switch {
	case b.ircd == nil:
	case sc.compAddr == "":
		ir = append(ir, b.runIRC(t, sc, false))
	default:
		for _, h := range b.biboumiHistory {
			ir = append(ir, b.runIRC(t, sc, h))
		}
	}
	return got, mr, ir
}

// runIRC measures the IRC gateway with `aldis bench --irc`'s scenario
// (package ircbench) against a freshly started instance configured for it:
// Aldis with its built-in gateway, the others with Biboumi, recording
// history or not. The CPU of the server, of Biboumi and of InspIRCd is
// measured.
func (b *bench) runIRC(t *testing.T, sc *serverConf, history bool) ircRow {
	r := ircRow{server: sc.name}
	label := sc.name + "/irc"
	if sc.compAddr != "" && !history {
		label += " (Biboumi without history)"
	}
	isc := *sc
	if sc.ircCmd != nil {
		isc.cmd = sc.ircCmd
	}
	begin := time.Now()
	p, err := startServer(&isc, b.cpus)
	if err != nil {
		r.err = err
		t.Errorf("%v", err)
		return r
	}
	defer b.stop(t, p)
	t.Logf("%s: listening after %v; server PID %d (%s); load average %s", label, time.Since(begin).Round(time.Millisecond),
		p.pid, procName(p.pid), loadAvg())
	procs := []ircbench.Process{{Name: sc.name, PID: p.pid}}
	if sc.compAddr != "" {
		r.gateway = "Biboumi"
		if !history {
			r.gateway += " (history off)"
		}
		if _, err := os.Stat("/usr/bin/biboumi"); err != nil {
			r.err = fmt.Errorf("Biboumi is not installed: apt-get install -y --no-install-recommends biboumi")
			t.Errorf("%s: %v", label, r.err)
			return r
		}
		g, err := startBiboumi(t, b, sc, ircXMPPUsers, history)
		if err != nil {
			r.err = err
			t.Errorf("%s: %v\nserver output:\n%s", label, err, p.logTail(4000))
			return r
		}
		defer func() {
			g.stop()
			if r.err != nil {
				t.Logf("%s: Biboumi output:\n%s", label, g.output(8000))
			}
		}()
		procs = append(procs, ircbench.Process{Name: "biboumi", PID: g.pid()})
	}
	procs = append(procs, ircbench.Process{Name: "inspircd", PID: b.ircd.PID()})
	sizes := p.logSizes()

	lw := &lineLogger{t: t, prefix: label + " "}
	cfg := ircbench.Config{
		XMPP: loadgen.Config{
			Addr: sc.addr, Domain: benchDomain, Password: benchPassword, Users: ircXMPPUsers,
			TLS: loadgen.TLSStartTLS, InsecureSkipVerify: true, Mech: "PLAIN",
		},
		Room:            sc.ircRoom,
		IRCAddr:         b.ircd.Addr,
		Channel:         sc.ircChannel,
		IRCUsers:        ircIRCUsers,
		LatencyMessages: b.ircLatency,
		Burst:           b.ircBurst,
		Window:          b.ircWindow,
		Processes:       procs,
		Log:             lw,
	}
	var cmd []string
	for _, pr := range procs {
		cmd = append(cmd, fmt.Sprintf("--pid %s=%d", pr.Name, pr.PID))
	}
	t.Logf("%s: the scenario of aldis bench --addr %s --domain %s --tls starttls --insecure --users %d --irc %s --irc-channel '%s' "+
		"--room '%s' --irc-users %d --irc-latency %d --irc-burst %d --window %d %s", label, sc.addr, benchDomain, ircXMPPUsers,
		b.ircd.Addr, sc.ircChannel, sc.ircRoom, ircIRCUsers, b.ircLatency, b.ircBurst, b.ircWindow, strings.Join(cmd, " "))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	begin = time.Now()
	res, err := ircbench.Run(ctx, cfg)
	lw.flush()
	r.res, r.err = res, err
	t.Logf("%s: run took %v\n%s", label, time.Since(begin).Round(time.Millisecond), res.Table())
	if logs := p.logsSince(sizes, 8000); logs != "" {
		t.Logf("%s: server output during the run:\n%s", label, logs)
	}
	if err != nil {
		t.Errorf("%s: %v", label, err)
	}
	return r
}

// runMUC measures multi-user chat against a freshly started instance with
// its MUC service configured. Aldis is skipped, not failed, when its build
// has no working MUC service yet.
func (b *bench) runMUC(t *testing.T, sc *serverConf) mucRow {
	r := mucRow{server: sc.name}
	msc := *sc
	if sc.mucCmd != nil {
		msc.cmd = sc.mucCmd
	}
	begin := time.Now()
	p, err := startServer(&msc, b.cpus)
	if err != nil {
		if sc.name == "aldis" {
			r.skip = "aldis serve did not start with a [muc] section (a build without MUC configuration?)"
			t.Logf("aldis/muc: SKIPPED: %s: %v", r.skip, err)
			return r
		}
		r.err = err
		t.Errorf("%v", err)
		return r
	}
	t.Logf("%s/muc: listening after %v", sc.name, time.Since(begin).Round(time.Millisecond))
	defer b.stop(t, p)
	sizes := p.logSizes()
	t.Logf("%s/muc: server PID %d (%s); load average %s", sc.name, p.pid, procName(p.pid), loadAvg())

	// The same unmeasured warm-up as the 1:1 runs.
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	_, err = loadgen.Run(wctx, loadgen.Config{
		Addr: sc.addr, Domain: benchDomain, Password: benchPassword,
		Users: min(4, b.users), TLS: b.mucMode.tls, InsecureSkipVerify: true,
		Rate: 200, Duration: time.Second,
	})
	wcancel()
	if err != nil {
		r.err = fmt.Errorf("warm-up: %w", err)
		t.Errorf("%s/muc: %v\nserver output:\n%s", sc.name, r.err, p.logsSince(sizes, 8000))
		return r
	}
	time.Sleep(time.Second)
	before, merr := scrape(sc.metricsURL)
	if merr != nil {
		t.Logf("%s/muc: reading server metrics: %v", sc.name, merr)
	}

	lw := &lineLogger{t: t, prefix: sc.name + "/muc "}
	cfg := loadgen.Config{
		Addr:               sc.addr,
		Domain:             benchDomain,
		Password:           benchPassword,
		TLS:                b.mucMode.tls,
		InsecureSkipVerify: true,
		Mech:               "PLAIN",
		Duration:           b.duration,
		Saturate:           true,
		Window:             1,
		ServerPID:          p.pid,
		Log:                lw,
		Rooms:              b.rooms,
		Occupants:          b.occupants,
		MUCDomain:          mucDomain,
		MUCRate:            b.mucRate,
		BigRoom:            b.bigRoom,
		BigRoomRate:        b.bigRoomRate,
	}
	// Logins, joins (a big room's join storm can take minutes at a slow
	// server), three phases with drains of up to a minute each.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute+3*b.duration)
	defer cancel()
	begin = time.Now()
	res, err := loadgen.RunMUC(ctx, cfg)
	lw.flush()
	r.res, r.err = res, err
	t.Logf("%s/muc: run took %v\n%s", sc.name, time.Since(begin).Round(time.Millisecond), res.Table())
	// Every occupant leaving is broadcast to those still in the room: a
	// big room's departures keep a slow server busy for a while, during
	// which it may not act on SIGTERM. Let it finish first.
	idle := time.Now()
	if err := waitIdle(p.pid, 5*time.Minute); err != nil {
		t.Logf("%s/muc: %v", sc.name, err)
	} else {
		t.Logf("%s/muc: idle %v after the sessions closed", sc.name, time.Since(idle).Round(100*time.Millisecond))
	}
	if sc.name == "aldis" && errors.Is(err, loadgen.ErrNoMUC) {
		r.skip = "Aldis's MUC service does not answer in this build (xmppcore/muc not wired into the server yet?)"
		r.err = nil
		t.Logf("aldis/muc: SKIPPED: %s: %v", r.skip, err)
		return r
	}
	if before != nil && p.running() {
		time.Sleep(500 * time.Millisecond)
		if after, merr := scrape(sc.metricsURL); merr != nil {
			t.Logf("%s/muc: reading server metrics: %v", sc.name, merr)
		} else {
			t.Logf("%s/muc: server counters over the run: messages in %.0f, stanzas routed %.0f, written %.0f, "+
				"send-queue overflows %.0f, stream errors %.0f", sc.name, after[mIn]-before[mIn], after[mDelivered]-before[mDelivered],
				after[mOut]-before[mOut], after[mOverflows]-before[mOverflows], after[mStreamErrs]-before[mStreamErrs])
		}
	}

	var problems []string
	if err != nil {
		problems = append(problems, fmt.Sprintf("loadgen: %v", err))
	}
	if res.LoginErrors > 0 {
		problems = append(problems, fmt.Sprintf("%d logins failed", res.LoginErrors))
	}
	for _, s := range res.RoomSets {
		if s.NotJoined > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d of %d sessions did not join", s.Name, s.NotJoined, s.Sessions))
		}
	}
	for _, ph := range res.Phases {
		if ph.Lost() != 0 || ph.Errors != 0 {
			problems = append(problems, fmt.Sprintf("phase %q: sent %d, deliveries %d of %d, bounced %d",
				ph.Name, ph.Sent, ph.Delivered, ph.Expected, ph.Errors))
		}
	}
	if !p.running() {
		problems = append(problems, fmt.Sprintf("server exited during the run: %v", p.err))
	}
	if len(problems) > 0 {
		t.Logf("%s/muc: PROBLEMS:\n  %s", sc.name, strings.Join(problems, "\n  "))
	}
	if logs := p.logsSince(sizes, 8000); logs != "" {
		t.Logf("%s/muc: server output during the run:\n%s", sc.name, logs)
	}
	if err != nil {
		t.Errorf("%s/muc: %v", sc.name, err)
	}
	return r
}

func (b *bench) runMode(t *testing.T, sc *serverConf, m mode) row {
	r := row{server: sc.name, mode: m.name}
	p := b.start(t, sc)
	if p == nil {
		r.err = fmt.Errorf("server did not start")
		return r
	}
	defer b.stop(t, p)
	sizes := p.logSizes()
	t.Logf("%s/%s: server PID %d (%s); load average %s", sc.name, m.key, p.pid, procName(p.pid), loadAvg())

	// Warm-up: a few logins and a second of light traffic, unmeasured, so
	// one-time costs (Erlang code loading, first TLS handshakes, allocator
	// and cache set-up) are not billed to the measured logins and to the
	// memory per connection.
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	_, err := loadgen.Run(wctx, loadgen.Config{
		Addr: sc.addr, Domain: benchDomain, Password: benchPassword,
		Users: min(4, b.users), TLS: m.tls, InsecureSkipVerify: true,
		Rate: 200, Duration: time.Second,
	})
	wcancel()
	if err != nil {
		r.err = fmt.Errorf("warm-up: %w", err)
		t.Errorf("%s/%s: %v\nserver output:\n%s", sc.name, m.key, r.err, p.logsSince(sizes, 8000))
		return r
	}
	time.Sleep(time.Second) // let the server finish closing the warm-up sessions

	before, merr := scrape(sc.metricsURL)
	if merr != nil {
		t.Logf("%s/%s: reading server metrics: %v", sc.name, m.key, merr)
	}

	lw := &lineLogger{t: t, prefix: sc.name + "/" + m.key + " "}
	cfg := loadgen.Config{
		Addr:               sc.addr,
		Domain:             benchDomain,
		Password:           benchPassword,
		Users:              b.users,
		TLS:                m.tls,
		InsecureSkipVerify: true,
		Mech:               "PLAIN",
		Rate:               b.rate,
		Duration:           b.duration,
		Saturate:           true,
		ServerPID:          p.pid,
		Log:                lw,
	}
	// Logins (up to 30s each), settling (up to 15s), two phases with
	// their drains (up to 10s each), with a wide margin.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+4*b.duration)
	defer cancel()
	begin := time.Now()
	res, err := loadgen.Run(ctx, cfg)
	lw.flush()
	r.res, r.err = res, err
	t.Logf("%s/%s: run took %v\n%s", sc.name, m.key, time.Since(begin).Round(time.Millisecond), res.Table())
	if before != nil && p.running() {
		time.Sleep(500 * time.Millisecond) // the generator has closed its sessions
		after, merr := scrape(sc.metricsURL)
		if merr != nil {
			t.Logf("%s/%s: reading server metrics: %v", sc.name, m.key, merr)
		} else {
			r.srv = map[string]float64{}
			for k, v := range after {
				r.srv[k] = v - before[k]
			}
			sent := 0
			for _, ph := range res.Phases {
				sent += ph.Sent
			}
			t.Logf("%s/%s: server counters over the run: messages in %.0f (generator sent %d), stanzas routed %.0f, written %.0f, "+
				"stored offline %.0f, send-queue overflows %.0f, stream errors %.0f",
				sc.name, m.key, r.srv[mIn], sent, r.srv[mDelivered], r.srv[mOut], r.srv[mOffline], r.srv[mOverflows], r.srv[mStreamErrs])
		}
	}

	// Everything that looks wrong is reported with the server's own
	// account of the run.
	var problems []string
	if err != nil {
		problems = append(problems, fmt.Sprintf("loadgen: %v", err))
	}
	if res.LoginErrors > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d logins failed", res.LoginErrors, b.users))
	}
	for _, ph := range res.Phases {
		if lost := ph.Sent - ph.Delivered - ph.Errors; lost != 0 || ph.Errors != 0 {
			problems = append(problems, fmt.Sprintf("phase %q: sent %d, delivered %d, bounced %d, lost %d",
				ph.Name, ph.Sent, ph.Delivered, ph.Errors, lost))
		}
	}
	if r.srv != nil && len(problems) > 0 {
		if serverClean(r) {
			// Seen with Aldis: the generator wrote the missing messages,
			// they never reached the receiving socket, yet the server
			// counts them as written. The counters cannot settle whose
			// fault a shortfall is; they show the server did not notice.
			problems = append(problems, "the server's counters account for every message as received, routed and written "+
				"(no offline storage, overflows or stream errors), so the server did not notice the shortfall")
		} else {
			problems = append(problems, "the server's own counters show losses or errors (see above)")
		}
	}
	if !p.running() {
		problems = append(problems, fmt.Sprintf("server exited during the run: %v", p.err))
	}
	logs := p.logsSince(sizes, 8000)
	if len(problems) > 0 {
		t.Logf("%s/%s: PROBLEMS:\n  %s", sc.name, m.key, strings.Join(problems, "\n  "))
	}
	if logs != "" {
		t.Logf("%s/%s: server output during the run:\n%s", sc.name, m.key, logs)
	}
	if err != nil {
		t.Errorf("%s/%s: %v", sc.name, m.key, err)
	}
	return r
}

func (b *bench) start(t *testing.T, sc *serverConf) *proc {
	t.Helper()
	begin := time.Now()
	p, err := startServer(sc, b.cpus)
	if err != nil {
		t.Errorf("%v", err)
		return nil
	}
	t.Logf("%s: listening after %v", sc.name, time.Since(begin).Round(time.Millisecond))
	return p
}

func (b *bench) stop(t *testing.T, p *proc) {
	t.Helper()
	if !p.running() {
		t.Errorf("%s had already exited (%v); output:\n%s", p.conf.name, p.err, p.logTail(4000))
		return
	}
	begin := time.Now()
	if err := p.stop(); err != nil {
		t.Errorf("%v", err)
	}
	t.Logf("%s: stopped in %v", p.conf.name, time.Since(begin).Round(time.Millisecond))
}

// table renders the results as markdown.
func (b *bench) table(rows []row, mucRows []mucRow, ircRows []ircRow, versions []string) string {
	var s strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&s, "### XMPP c2s side by side (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	online := "?"
	if c, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		online = strings.TrimSpace(string(c))
	}
	fmt.Fprintf(&s, "%s; %s/%s, host %s, CPUs %s online, %d usable by the generator", strings.Join(versions, ", "),
		runtime.GOOS, runtime.GOARCH, host, online, runtime.NumCPU())
	if b.cpus != "" {
		fmt.Fprintf(&s, ", server pinned to CPUs %s", b.cpus)
	}
	fmt.Fprintf(&s, ", load average at the end %s.\n", loadAvg())
	if len(rows) > 0 {
		b.chatTable(&s, rows)
	}
	if len(mucRows) > 0 {
		b.mucTable(&s, mucRows)
	}
	if len(ircRows) > 0 {
		b.ircTable(&s, ircRows)
	}
	return s.String()
}

func (b *bench) ircTable(s *strings.Builder, rows []ircRow) {
	fmt.Fprintf(s, "\nIRC gateway (the scenario of `aldis bench --irc`): %d XMPP users (STARTTLS, SASL PLAIN) in a room linked to a "+
		"channel of InspIRCd (fakelag off) with %d IRC users, 100-byte messages. Latency: %d messages each way, one at a time, "+
		"from the sender's write to each receiver's read. Throughput: %d messages each way with at most %d in flight; "+
		"messages/s received per user on the other side. CPU: user+system time per 1,000 messages sent (throughput phase; "+
		"the latency phase's total in the last column), read from /proc in 10 ms ticks.\n\n",
		ircXMPPUsers, ircIRCUsers, b.ircLatency, b.ircBurst, b.ircWindow)
	s.WriteString("| system | direction | latency p50 / p99 | msg/s | throughput p50 / p99 | CPU ms/1k: XMPP server | gateway | " +
		"InspIRCd | total | latency phase: total CPU ms/1k | failures |\n")
	s.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		system := r.system()
		for _, dir := range []ircbench.Direction{ircbench.IRCToXMPP, ircbench.XMPPToIRC} {
			var lat, thr *ircbench.Phase
			for i := range r.res.Phases {
				ph := &r.res.Phases[i]
				if ph.Direction != dir {
					continue
				}
				if ph.Name == "latency" {
					lat = ph
				} else {
					thr = ph
				}
			}
			cells := []string{system, dir.String()}
			if lat != nil {
				cells = append(cells, fmt.Sprintf("%s / %s", fmtDur(lat.P50), fmtDur(lat.P99)))
			} else {
				cells = append(cells, "–")
			}
			if thr != nil {
				cells = append(cells, fmt.Sprintf("%.0f", thr.MessagesPerSec), fmt.Sprintf("%s / %s", fmtDur(thr.P50), fmtDur(thr.P99)))
				cpu := map[string]time.Duration{}
				for i, name := range r.res.Processes {
					if i < len(thr.CPUPer1000) {
						cpu[name] = thr.CPUPer1000[i]
					}
				}
				gw := "(in " + r.server + ")"
				if c, ok := cpu["biboumi"]; ok {
					gw = cpuMs(c)
				}
				cells = append(cells, cpuMs(cpu[r.server]), gw, cpuMs(cpu["inspircd"]), cpuMs(thr.CPUTotalPer1000()))
			} else {
				cells = append(cells, "–", "–", "–", "–", "–", "–")
			}
			if lat != nil {
				cells = append(cells, cpuMs(lat.CPUTotalPer1000()))
			} else {
				cells = append(cells, "–")
			}
			cells = append(cells, ircFailures(r, lat, thr))
			s.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
	}
}

// cpuMs renders a measured CPU time in milliseconds: 0 is a figure (no
// 10 ms tick fell in the phase), not a missing one.
func cpuMs(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

// ircFailures summarises what went wrong in one direction of an IRC run.
func ircFailures(r ircRow, phases ...*ircbench.Phase) string {
	var f []string
	for _, ph := range phases {
		if ph == nil {
			continue
		}
		if ph.Lost() > 0 || ph.Duplicates > 0 || ph.Errors > 0 {
			f = append(f, fmt.Sprintf("%s: %d of %d lost, %d duplicates, %d bounced", ph.Name, ph.Lost(), ph.Expected, ph.Duplicates, ph.Errors))
		}
	}
	return failureCell(f, r.err, 160)
}

func (b *bench) chatTable(s *strings.Builder, rows []row) {
	fmt.Fprintf(s, "\n%d sessions (SASL PLAIN, 16 parallel logins), 1:1 chat messages of 100-byte bodies between session pairs; "+
		"fixed phase offers %d msg/s, saturating phase keeps 10 messages in flight per sender; %v per phase; "+
		"each server freshly started per mode and warmed up with 4 sessions. "+
		"Latency is from (scheduled) send to receipt. CPU is the server's user+system time per 1,000 delivered messages; "+
		"memory is the server's RSS growth per idle session.\n\n", b.users, b.rate, b.duration)
	s.WriteString("| server | mode | logins/s | fixed: delivered/s | fixed: p50 / p99 | fixed: CPU ms/1k | saturating: delivered/s | saturating: p50 / p99 | saturating: CPU ms/1k | KiB / idle conn | failures |\n")
	s.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		var fixed, sat *loadgen.Phase
		for i := range r.res.Phases {
			if strings.HasPrefix(r.res.Phases[i].Name, "fixed") {
				fixed = &r.res.Phases[i]
			} else {
				sat = &r.res.Phases[i]
			}
		}
		cells := []string{r.server, r.mode}
		if r.res.Logins > 0 {
			cells = append(cells, fmt.Sprintf("%.0f", r.res.LoginsPerSec))
		} else {
			cells = append(cells, "–")
		}
		for _, ph := range []*loadgen.Phase{fixed, sat} {
			if ph == nil {
				cells = append(cells, "–", "–", "–")
				continue
			}
			cells = append(cells,
				fmt.Sprintf("%.0f", ph.DeliveredPerSec),
				fmt.Sprintf("%s / %s", fmtDur(ph.P50), fmtDur(ph.P99)),
				fmtMs(ph.CPUPer1000))
		}
		if r.res.Logins > 0 {
			cells = append(cells, fmt.Sprintf("%.1f", r.res.MemPerConnKiB))
		} else {
			cells = append(cells, "–")
		}
		cells = append(cells, failures(r))
		s.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

func (b *bench) mucTable(s *strings.Builder, rows []mucRow) {
	fmt.Fprintf(s, "\nMulti-user chat (XEP-0045), %s: %d rooms × %d occupants (one session each, SASL PLAIN), joined with "+
		"history maxstanzas='0'; each new room created by its first joiner (and unlocked with an instant configuration when "+
		"created locked). Fixed phase offers %d room messages/s (100-byte bodies) spread over rooms and senders, which is "+
		"%d deliveries/s since every occupant receives each message, the sender's echo included; the saturating phase keeps "+
		"one message in flight per occupant (refilled on its echo); %v per phase. ",
		b.mucMode.name, b.rooms, b.occupants, b.mucRate, b.mucRate*b.occupants, b.duration)
	if b.bigRoom > 0 {
		fmt.Fprintf(s, "Big room: one room of %d occupants offered %d messages/s (%d deliveries/s) for %v. ",
			b.bigRoom, b.bigRoomRate, b.bigRoom*b.bigRoomRate, b.duration)
	}
	s.WriteString("Latency runs from the scheduled send to receipt at each occupant; CPU is the server's user+system time per " +
		"1,000 deliveries, the generator's own likewise. Join time is from the first join sent to the last self-presence.\n\n")
	s.WriteString("| server | joined (time) | fixed: deliveries/s | fixed: p50 / p99 | fixed: CPU ms/1k | saturating: deliveries/s | " +
		"saturating: p50 / p99 | saturating: CPU ms/1k | big room: joined (time) | big room: p50 / p99 | big room: CPU ms/1k | " +
		"generator CPU ms/1k (fixed) | failures |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		var fixed, sat, big *loadgen.Phase
		for i := range r.res.Phases {
			ph := &r.res.Phases[i]
			switch {
			case strings.HasPrefix(ph.Name, "big room"):
				big = ph
			case ph.Saturating:
				sat = ph
			default:
				fixed = ph
			}
		}
		var rooms, bigSet *loadgen.RoomSet
		for i := range r.res.RoomSets {
			if strings.HasPrefix(r.res.RoomSets[i].Name, "big room") {
				bigSet = &r.res.RoomSets[i]
			} else {
				rooms = &r.res.RoomSets[i]
			}
		}
		joined := func(set *loadgen.RoomSet) string {
			if set == nil || set.Joined == 0 {
				return "–"
			}
			return fmt.Sprintf("%d (%s)", set.Joined, fmtDur(set.JoinTime))
		}
		cells := []string{r.server, joined(rooms)}
		for _, ph := range []*loadgen.Phase{fixed, sat} {
			if ph == nil {
				cells = append(cells, "–", "–", "–")
				continue
			}
			cells = append(cells, fmt.Sprintf("%.0f", ph.DeliveredPerSec),
				fmt.Sprintf("%s / %s", fmtDur(ph.P50), fmtDur(ph.P99)), fmtMs(ph.CPUPer1000))
		}
		cells = append(cells, joined(bigSet))
		if big == nil {
			cells = append(cells, "–", "–")
		} else {
			cells = append(cells, fmt.Sprintf("%s / %s", fmtDur(big.P50), fmtDur(big.P99)), fmtMs(big.CPUPer1000))
		}
		if fixed == nil {
			cells = append(cells, "–")
		} else {
			cells = append(cells, fmtMs(fixed.LoadgenPer1000))
		}
		cells = append(cells, mucFailures(r))
		s.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

// mucFailures summarises what went wrong in a MUC run.
func mucFailures(r mucRow) string {
	if r.skip != "" {
		return "skipped: " + r.skip
	}
	var f []string
	if r.res.LoginErrors > 0 {
		f = append(f, fmt.Sprintf("%d logins failed", r.res.LoginErrors))
	}
	for _, set := range r.res.RoomSets {
		if set.NotJoined > 0 {
			f = append(f, fmt.Sprintf("%s: %d not joined", set.Name, set.NotJoined))
		}
	}
	for _, ph := range r.res.Phases {
		if ph.Errors > 0 {
			f = append(f, fmt.Sprintf("%s: %d bounced", ph.Name, ph.Errors))
		}
		if lost := ph.Lost(); lost != 0 {
			f = append(f, fmt.Sprintf("%s: %d of %d deliveries not received", ph.Name, lost, ph.Expected))
		}
	}
	return failureCell(f, r.err, 160)
}

// failures summarises what went wrong in a run: login failures, bounced
// and lost messages per phase, or the error that ended it.
func failures(r row) string {
	var f []string
	if r.res.LoginErrors > 0 {
		f = append(f, fmt.Sprintf("%d logins failed", r.res.LoginErrors))
	}
	for _, ph := range r.res.Phases {
		short := "fixed"
		if !strings.HasPrefix(ph.Name, "fixed") {
			short = "sat."
		}
		if ph.Errors > 0 {
			f = append(f, fmt.Sprintf("%s: %d bounced", short, ph.Errors))
		}
		if lost := ph.Sent - ph.Delivered - ph.Errors; lost != 0 {
			f = append(f, fmt.Sprintf("%s: %d of %d not received", short, lost, ph.Sent))
		}
	}
	if len(f) > 0 && r.srv != nil {
		if serverClean(r) {
			f = append(f, "server counters claim all were written")
		} else {
			f = append(f, fmt.Sprintf("server counters: %.0f offline, %.0f overflows, %.0f stream errors",
				r.srv[mOffline], r.srv[mOverflows], r.srv[mStreamErrs]))
		}
	}
	return failureCell(f, r.err, 120)
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func fmtMs(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

// lineLogger passes the generator's progress lines to t.Log.
type lineLogger struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}

func envInt(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

// envIntOrZero is envInt that also accepts 0 (to switch something off).
func envIntOrZero(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", key, v)
	}
	return n
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 10s", key, v)
	}
	return d
}

func envList(key, def string) []string {
	v := os.Getenv(key)
	if v == "" {
		v = def
	}
	var l []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(strings.ToLower(f)); f != "" {
			l = append(l, f)
		}
	}
	return l
}

// Aldis's counters (core/obs, xmppcore/c2s, xmppcore/router).
const (
	mIn         = `aldis_stanzas_in_total{type="message"}`
	mDelivered  = `aldis_stanzas_delivered_total`
	mOut        = `aldis_stanzas_out_total`
	mOffline    = `aldis_offline_stored_total`
	mOverflows  = `aldis_send_queue_overflows_total`
	mStreamErrs = `aldis_stream_errors_total`
)

// scrape reads the Prometheus text at url into name → value; a nil map
// and no error when url is "".
func scrape(url string) (map[string]float64, error) {
	if url == "" {
		return nil, nil
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

// serverClean reports whether the server's counters account for every
// message the generator sent: all received, none stored offline, no
// overflow or stream error, and at least as many stanzas routed.
func serverClean(r row) bool {
	sent := 0
	for _, ph := range r.res.Phases {
		sent += ph.Sent
	}
	return r.srv[mIn] == float64(sent) && r.srv[mOffline] == 0 && r.srv[mOverflows] == 0 &&
		r.srv[mStreamErrs] == 0 && r.srv[mDelivered] >= float64(sent) && r.srv[mOut] >= float64(sent)
}

// waitIdle waits until process pid uses less than a tenth of a core over
// a second, for at most limit.
func waitIdle(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	prev, err := cpuTime(pid)
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		cur, err := cpuTime(pid)
		if err != nil {
			return err
		}
		if cur-prev < 100*time.Millisecond {
			return nil
		}
		prev = cur
	}
	return fmt.Errorf("still busy %v after the run", limit)
}

// cpuTime is the user+system CPU time of pid from /proc (USER_HZ = 100).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: utime/stime", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// loadAvg is the first three fields of /proc/loadavg: other work on the
// machine skews every figure.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// failureCell is a table cell listing a run's failures f and its error
// (cut at limit bytes, with the table's separators escaped), or "none".
func failureCell(f []string, err error, limit int) string {
	if err != nil {
		msg := err.Error()
		if len(msg) > limit {
			msg = msg[:limit] + "…"
		}
		f = append(f, "error: "+strings.ReplaceAll(msg, "|", "\\|"))
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, "; ")
}

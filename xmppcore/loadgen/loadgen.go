// Package loadgen is an XMPP load generator that measures any c2s server (Aldis, ejabberd, Prosody) the same way.
package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLS modes for Config.TLS.
const (
	TLSNone     = "none"
	TLSStartTLS = "starttls"
	TLSDirect   = "direct" // XEP-0368 direct TLS
)

// Config describes one benchmark run. Zero fields take the defaults noted.
type Config struct {
	Addr               string        // host:port of the c2s listener
	Domain             string        // XMPP domain (also the TLS server name)
	UserPattern        string        // fmt pattern for account names; default "bench%d"
	Password           string        // shared by all accounts
	Users              int           // sessions to open; default 100; accounts must exist (see Register)
	TLS                string        // TLSNone, TLSStartTLS (default) or TLSDirect
	InsecureSkipVerify bool          // accept self-signed test certificates
	Mech               string        // "PLAIN" (default), "SCRAM-SHA-1" or "SCRAM-SHA-256"
	Concurrency        int           // parallel logins; default 16
	Rate               int           // offered 1:1 messages/s in the fixed-load phase; 0 skips it
	Duration           time.Duration // length of each message phase; default 10s
	Saturate           bool          // also run a saturating phase
	Window             int           // in-flight messages per sender when saturating; default 10
	ServerPID          int           // > 0: sample the server's CPU and RSS from /proc
	BodySize           int           // message body bytes; default 100
	Log                io.Writer     // progress lines; may be nil

	// Multi-user chat (XEP-0045), for RunMUC only. Run ignores them.
	Rooms       int    // rooms of Occupants sessions each; 0 skips the rooms phases
	Occupants   int    // occupants per room, each message's sender included; default 20
	MUCDomain   string // the MUC service's domain; default "conference." + Domain
	MUCRate     int    // offered room messages/s over all rooms in the fixed phase (each reaches every occupant); 0 skips it
	BigRoom     int    // occupants of the big-room probe; 0 skips it
	BigRoomRate int    // offered messages/s in the big room; default 2
}

// Result summarises a run.
type Result struct {
	Logins        int
	LoginsPerSec  float64
	LoginErrors   int
	MemPerConnKiB float64 // (server RSS with all sessions idle − RSS before) / sessions; 0 without ServerPID
	Phases        []Phase
	// RoomSets are the groups of rooms RunMUC joined, in order.
	RoomSets []RoomSet
}

// Phase is the outcome of one message phase. For room messages every
// count of deliveries is per occupant: a message to a room of K occupants
// is expected K times, the echo to its sender included.
type Phase struct {
	Name            string // "fixed 5000/s", "saturating", "rooms fixed 600/s", "big room fixed 2/s"
	Rooms           string // RoomSet.Name the phase ran in; "" for 1:1 chat
	Saturating      bool
	Sent            int // messages written to the server
	Delivered       int // deliveries received, including the drain after the phase
	Expected        int // deliveries the messages sent should have produced (bounced ones none)
	Errors          int // messages bounced with type='error'
	DeliveredPerSec float64
	P50, P99        time.Duration // from scheduled send time (fixed) or actual send time (saturating) to receipt
	CPUPer1000      time.Duration // server CPU per 1,000 deliveries; 0 without ServerPID
	LoadgenPer1000  time.Duration // the generator's own CPU per 1,000 deliveries
}

// Lost is how many expected deliveries never arrived (within the drain).
func (p Phase) Lost() int { return p.Expected - p.Delivered }

const (
	loginTimeout  = 30 * time.Second
	quietFor      = time.Second      // no inbound stanza for this long counts as idle
	maxSettle     = 15 * time.Second // bound on waiting for the server to go idle
	maxQueueBytes = 1 << 20          // per-sender backlog cap when the server stops reading
	maxLoggedErrs = 5

	// A room phase's drain waits while deliveries keep arriving, up to
	// mucDrainMax: a saturated server may deliver its backlog for many
	// seconds, and those deliveries are late, not lost.
	mucDrainQuiet = 3 * time.Second
	mucDrainMax   = 60 * time.Second
)

func (c *Config) setDefaults() error {
	if c.Addr == "" || c.Domain == "" {
		return errors.New("loadgen: Addr and Domain are required")
	}
	if c.UserPattern == "" {
		c.UserPattern = "bench%d"
	}
	if !strings.Contains(c.UserPattern, "%") {
		return fmt.Errorf("loadgen: UserPattern %q has no %%d verb", c.UserPattern)
	}
	if c.Users <= 0 {
		c.Users = 100
	}
	c.TLS = strings.ToLower(c.TLS)
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSNone, TLSStartTLS, TLSDirect:
	default:
		return fmt.Errorf("loadgen: unknown TLS mode %q", c.TLS)
	}
	c.Mech = strings.ToUpper(c.Mech)
	switch c.Mech {
	case "":
		c.Mech = "PLAIN"
	case "PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256":
	default:
		return fmt.Errorf("loadgen: unsupported SASL mechanism %q", c.Mech)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 10
	}
	if c.BodySize <= 0 {
		c.BodySize = 100
	}
	return nil
}

func (c *Config) tlsConfig(alpn []string) *tls.Config {
	return &tls.Config{
		ServerName:         c.Domain,
		InsecureSkipVerify: c.InsecureSkipVerify,
		NextProtos:         alpn,
		MinVersion:         tls.VersionTLS12,
	}
}

func (c *Config) user(i int) string { return fmt.Sprintf(c.UserPattern, i) }

// runner holds the state of one Run.
type runner struct {
	cfg   Config
	base  time.Time // monotonic origin of all timestamps in message bodies
	run   string    // random per-run tag: stale messages from earlier runs never count
	pad   []byte    // body padding
	phase atomic.Pointer[phaseState]

	errs   atomic.Int64
	logMu  sync.Mutex
	wg     sync.WaitGroup // session reader and writer goroutines
	closed atomic.Bool    // set while shutting down: I/O errors are expected

	recv func(Received) // Sessions' callback for every message; nil in Run and RunMUC
}

// phaseState is shared between the phase driver, writers and readers.
type phaseState struct {
	token     []byte
	saturate  bool
	muc       bool // room messages: a sender's window refills on its own echo
	active    atomic.Bool
	sent      atomic.Int64
	expected  atomic.Int64 // deliveries due: sent × the senders' fan-out, minus bounces
	delivered atomic.Int64
	errors    atomic.Int64
	hist      histogram
}

// now is the monotonic time since the run started, in nanoseconds.
func (r *runner) now() int64 { return int64(time.Since(r.base)) }

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log == nil {
		return
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.cfg.Log, "loadgen: "+format+"\n", args...)
}

// logErr logs only the first few errors, so a broken setup is visible
// without thousands of sessions flooding the output.
func (r *runner) logErr(format string, args ...any) {
	if n := r.errs.Add(1); n <= maxLoggedErrs {
		r.logf(format, args...)
	} else if n == maxLoggedErrs+1 {
		r.logf("further errors not shown")
	}
}

// Run logs in cfg.Users sessions, measures login rate, idle memory per
// connection and the configured message phases, then closes the sessions.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	r := newRunner(cfg)
	var res Result

	var rss0 int64
	if cfg.ServerPID > 0 {
		v, err := procRSS(cfg.ServerPID)
		if err != nil {
			return res, err
		}
		rss0 = v
	}

	sessions, _ := r.loginRange(ctx, 0, cfg.Users, &res) // failures are counted in res
	defer r.closeAll(sessions)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: logins: %w", err)
	}
	if len(sessions) == 0 {
		return res, fmt.Errorf("loadgen: all %d logins failed", cfg.Users)
	}

	// Let roster, presence and offline-message traffic die down so RSS and
	// the first phase see an idle server.
	if err := r.settle(ctx, sessions); err != nil {
		return res, err
	}
	if cfg.ServerPID > 0 {
		rss1, err := procRSS(cfg.ServerPID)
		if err != nil {
			return res, err
		}
		res.MemPerConnKiB = float64(rss1-rss0) / 1024 / float64(len(sessions))
		r.logf("server RSS %.1f MiB before, %.1f MiB with %d idle sessions: %.1f KiB/session",
			float64(rss0)/(1<<20), float64(rss1)/(1<<20), len(sessions), res.MemPerConnKiB)
	}

	pair(sessions)
	if cfg.Rate > 0 {
		p, err := r.runPhase(ctx, phaseSpec{name: fmt.Sprintf("fixed %d/s", cfg.Rate), rate: cfg.Rate}, sessions, len(res.Phases)+1)
		if err != nil {
			return res, err
		}
		res.Phases = append(res.Phases, p)
	}
	if cfg.Saturate {
		p, err := r.runPhase(ctx, phaseSpec{name: "saturating", saturate: true}, sessions, len(res.Phases)+1)
		if err != nil {
			return res, err
		}
		res.Phases = append(res.Phases, p)
	}
	return res, nil
}

func newRunner(cfg Config) *runner {
	var tag [4]byte
	rand.Read(tag[:])
	return &runner{
		cfg:  cfg,
		base: time.Now(),
		run:  "lg" + hex.EncodeToString(tag[:]),
		pad:  []byte(strings.Repeat("x", cfg.BodySize)),
	}
}

// loginRange opens the sessions of users lo..hi-1 with cfg.Concurrency in
// parallel, adds them to res's login figures and returns the ones that
// succeeded, in user order, with the first login error (nil if none).
func (r *runner) loginRange(ctx context.Context, lo, hi int, res *Result) ([]*session, error) {
	cfg := &r.cfg
	n := hi - lo
	if n <= 0 {
		return nil, nil
	}
	all := make([]*session, n)
	var next, done, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= n {
					return
				}
				i := lo + j
				s, err := r.login(ctx, i)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = fmt.Errorf("login %s: %w", cfg.user(i), err) })
					if ctx.Err() == nil {
						r.logErr("login %s: %v", cfg.user(i), err)
					}
				} else {
					all[j] = s
				}
				if d := done.Add(1); d%max(int64(n)/10, 1) == 0 {
					r.logf("logins %d/%d (%d failed)", d, n, failed.Load())
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var ok []*session
	for _, s := range all {
		if s != nil {
			ok = append(ok, s)
		}
	}
	rate := float64(len(ok)) / elapsed.Seconds()
	if res.Logins == 0 {
		// The first batch sets the login rate; later batches (the big
		// room's extra sessions) only add to the counts.
		res.LoginsPerSec = rate
	}
	res.Logins += len(ok)
	res.LoginErrors += int(failed.Load())
	r.logf("%d sessions logged in in %v (%.1f/s), %d failed", len(ok), elapsed.Round(time.Millisecond), rate, failed.Load())
	return ok, firstErr
}

func (r *runner) closeAll(sessions []*session) {
	r.closed.Store(true)
	// One shared deadline: a server that stopped reading costs a second
	// in total, not a second per session.
	deadline := time.Now().Add(time.Second)
	for _, s := range sessions {
		s.close(deadline)
	}
	r.wg.Wait()
}

// settle waits until no session has received anything for quietFor, and
// the server's RSS (when sampled) has stopped moving, within maxSettle.
func (r *runner) settle(ctx context.Context, sessions []*session) error {
	deadline := time.Now().Add(maxSettle)
	var lastIn int64 = -1
	lastChange := time.Now()
	var lastRSS int64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: settling: %w", ctx.Err())
		case <-tick.C:
		}
		var in int64
		for _, s := range sessions {
			in += s.inbound.Load()
		}
		if in != lastIn {
			lastIn, lastChange = in, time.Now()
		}
		stable := true
		if r.cfg.ServerPID > 0 {
			rss, err := procRSS(r.cfg.ServerPID)
			if err != nil {
				return err
			}
			// Within 1% of the previous sample counts as settled.
			stable = lastRSS > 0 && abs(rss-lastRSS)*100 <= lastRSS
			lastRSS = rss
		}
		if time.Since(lastChange) >= quietFor && stable {
			return nil
		}
		if time.Now().After(deadline) {
			r.logf("server not idle after %v; measuring anyway", maxSettle)
			return nil
		}
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// pair makes session i send to session i+1 (mod n), by full JID.
func pair(sessions []*session) {
	n := len(sessions)
	for i, s := range sessions {
		peer := sessions[(i+1)%n]
		s.from = sessions[(i-1+n)%n]
		s.prefix = []byte("<message type='chat' to='" + escAttr(peer.jid) + "' id='")
	}
}

// phaseSpec describes one message phase.
type phaseSpec struct {
	name     string
	rooms    string // RoomSet.Name for room messages; "" for 1:1 chat
	saturate bool
	rate     int // offered messages/s when not saturating
}

// runPhase drives one message phase over senders: a paced open-loop load
// round-robin over them, or a closed loop with Window messages in flight
// per sender.
func (r *runner) runPhase(ctx context.Context, spec phaseSpec, senders []*session, n int) (Phase, error) {
	name := spec.name
	ph := &phaseState{token: fmt.Appendf(nil, "%s.%d", r.run, n), saturate: spec.saturate, muc: spec.rooms != ""}
	r.logf("phase %q: %d senders, %v", name, len(senders), r.cfg.Duration)
	srv0, err := r.serverCPU()
	if err != nil {
		return Phase{}, err
	}
	own0 := SelfCPU()
	start := r.now()
	ph.active.Store(true)
	r.phase.Store(ph)
	if spec.saturate {
		for _, s := range senders {
			for range r.cfg.Window {
				s.enqueueMsg(r, ph, r.now())
			}
		}
		err = sleepCtx(ctx, r.cfg.Duration)
	} else {
		err = r.pace(ctx, senders, ph, start, spec.rate)
	}
	ph.active.Store(false)
	window := time.Duration(r.now() - start)
	inWindow := ph.delivered.Load()
	srv1, err2 := r.serverCPU()
	own1 := SelfCPU()
	if err != nil {
		return Phase{}, fmt.Errorf("loadgen: phase %s: %w", name, err)
	}
	if err2 != nil {
		return Phase{}, err2
	}

	// Drain what is still in flight so late deliveries count and the
	// next phase starts idle; bounded because losses never arrive.
	complete := func() bool {
		return ph.delivered.Load() >= ph.expected.Load() && allFlushed(senders)
	}
	if ph.muc {
		// A room's backlog at a saturated server takes longer to arrive
		// than a 1:1 one: wait while deliveries keep coming.
		err = r.drainProgress(ctx, ph, complete, mucDrainQuiet, mucDrainMax)
	} else {
		err = waitFor(ctx, min(max(r.cfg.Duration, 2*time.Second), 10*time.Second), complete)
	}
	if err != nil {
		return Phase{}, fmt.Errorf("loadgen: phase %s drain: %w", name, err)
	}
	r.phase.Store(nil)
	for _, s := range senders {
		s.discardPending()
	}

	counts := ph.hist.snapshot()
	p := Phase{
		Name:            name,
		Rooms:           spec.rooms,
		Saturating:      spec.saturate,
		Sent:            int(ph.sent.Load()),
		Delivered:       int(ph.delivered.Load()),
		Expected:        int(ph.expected.Load()),
		Errors:          int(ph.errors.Load()),
		DeliveredPerSec: float64(inWindow) / window.Seconds(),
		P50:             quantile(counts, 0.50),
		P99:             quantile(counts, 0.99),
	}
	if inWindow > 0 {
		if r.cfg.ServerPID > 0 {
			p.CPUPer1000 = (srv1 - srv0) * 1000 / time.Duration(inWindow)
		}
		p.LoadgenPer1000 = (own1 - own0) * 1000 / time.Duration(inWindow)
	}
	what := "delivered"
	if ph.muc {
		what = "deliveries"
	}
	r.logf("phase %q: sent %d, %s %d of %d (%.0f/s), errors %d, p50 %v, p99 %v",
		name, p.Sent, what, p.Delivered, p.Expected, p.DeliveredPerSec, p.Errors, p.P50, p.P99)
	return p, nil
}

// drainProgress waits until complete holds, or no delivery arrived for
// quiet, or limit passed; only ctx ending is an error.
func (r *runner) drainProgress(ctx context.Context, ph *phaseState, complete func() bool, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last, lastChange := ph.delivered.Load(), time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !complete() {
		now := time.Now()
		if d := ph.delivered.Load(); d != last {
			last, lastChange = d, now
		}
		if now.After(deadline) || now.Sub(lastChange) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// pace offers rate messages per second round-robin over the senders for
// cfg.Duration. Each message carries its scheduled send time, so a
// stalled server or generator shows up as latency instead of silently
// lowering the offered load (no coordinated omission).
func (r *runner) pace(ctx context.Context, sessions []*session, ph *phaseState, start int64, rate int) error {
	interval := float64(time.Second) / float64(rate)
	total := int64(r.cfg.Duration.Seconds() * float64(rate))
	timer := time.NewTimer(0)
	defer timer.Stop()
	var k int64
	for k < total {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		due := min(int64(float64(r.now()-start)/interval)+1, total)
		for ; k < due; k++ {
			sessions[k%int64(len(sessions))].enqueueMsg(r, ph, start+int64(float64(k)*interval))
		}
		// Sleep until the next message is due, but not in sub-200µs naps
		// whose wakeups would cost more than batching a few messages.
		wait := time.Duration(start + int64(float64(k)*interval) - r.now())
		timer.Reset(max(wait, 200*time.Microsecond))
	}
	// The phase lasts Duration even if the last message was due earlier.
	return sleepCtx(ctx, time.Duration(start+int64(r.cfg.Duration)-r.now()))
}

func (r *runner) serverCPU() (time.Duration, error) {
	if r.cfg.ServerPID <= 0 {
		return 0, nil
	}
	return ProcCPU(r.cfg.ServerPID)
}

func allFlushed(sessions []*session) bool {
	for _, s := range sessions {
		if !s.flushed() {
			return false
		}
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitFor polls cond until it holds or limit passes; only ctx ending is an
// error.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

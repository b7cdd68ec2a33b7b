// Package pool shares long-lived connections among their users, keyed and reference-counted, within per-group budgets.
//
// It knows nothing of protocols: the IRC gateway keys it by (XMPP user, network) and groups by network,
// the SMTP relay by destination, s2s by domain pair. A connection is opened by the Dial function on
// the first Get of its key, shared by every later Get of that key, and closed a Linger after its last
// user released it, so a user who leaves one room and joins another within the linger keeps the same
// connection.
//
// Each group has a budget of connections. When a group is full, Get closes the group's oldest idle
// (lingering) connection to make room (an eviction); when none is idle it waits up to MaxWait for
// room and then returns ErrExhausted, so that the caller can fall back (the IRC gateway sends through
// its relay connection instead).
package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/core/obs"
)

// ErrExhausted is returned by Get when the key's group has no room within MaxWait.
var ErrExhausted = errors.New("pool: connection budget exhausted")

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("pool: closed")

// Config configures a Pool. Dial is required; the rest have defaults.
type Config[K comparable, C io.Closer] struct {
	// Name labels the pool's metrics, e.g. "irc" or "smtp".
	Name string
	// Dial opens the connection for key. Its context ends after DialTimeout or when the pool is
	// closed, not when the Get that asked for it gives up: a finished dial is kept (idle) for the
	// next user rather than wasted.
	Dial func(ctx context.Context, key K) (C, error)
	// Group names the budget a key counts against (an IRC network, a mail domain). Nil puts every
	// key in one group, "".
	Group func(key K) string
	// Budget returns the most connections a group may hold, dialling ones included; 0 or less means
	// no limit. Nil means no limit for every group.
	Budget func(group string) int
	// Linger is how long a connection stays open after its last user released it. 0 closes at once.
	Linger time.Duration
	// MaxWait bounds how long Get waits for room in a full group before ErrExhausted (the caller's
	// context bounds it too). 0 means no wait: fall back at once.
	MaxWait time.Duration
	// DialTimeout bounds one dial. Default 30s.
	DialTimeout time.Duration
	Metrics     *obs.Metrics // nil: no metrics
	Log         *slog.Logger // nil: discard
}

// Pool is a set of shared connections. It is safe for concurrent use.
type Pool[K comparable, C io.Closer] struct {
	cfg    Config[K, C]
	ctx    context.Context // dials run under it; cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	entries map[K]*entry[C]
	stale   map[*entry[C]]K // evicted while in use, out of entries, closed on last release
	groups  map[string]*group[K]
	closed  bool
	seq     uint64 // orders entries for eviction (oldest idle first)

	size                                                atomic.Int64
	waits, evictions, exhausted, dialErrors, lingerDone *counter
}

// entry is one connection and its users.
type entry[C io.Closer] struct {
	conn    C
	ready   chan struct{} // closed when the dial finished (err set on failure)
	err     error
	refs    int
	idleSeq uint64      // set when refs falls to 0; the lowest is evicted first
	linger  *time.Timer // running while idle
	stale   bool        // Evict was called while in use: close on last release, don't hand out
	closing bool        // retired: its connection is being closed or is closed
	group   string
}

// group tracks a budget's use and wakes waiters when room appears.
type group[K comparable] struct {
	count int
	room  chan struct{} // closed and replaced whenever a slot frees or an entry turns idle
}

// Lease is one user's hold on a connection. Release it exactly once when done; later calls do nothing.
type Lease[K comparable, C io.Closer] struct {
	p        *Pool[K, C]
	key      K
	e        *entry[C]
	released atomic.Bool
}

// Conn returns the leased connection.
func (l *Lease[K, C]) Conn() C { return l.e.conn }

// Key returns the key the lease was taken for.
func (l *Lease[K, C]) Key() K { return l.key }

// Release drops this user's reference; the last release starts the linger.
func (l *Lease[K, C]) Release() {
	if l.released.Swap(true) {
		return
	}
	l.p.release(l.key, l.e)
}

// New returns an empty pool.
func New[K comparable, C io.Closer](cfg Config[K, C]) *Pool[K, C] {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool[K, C]{
		cfg:     cfg,
		ctx:     ctx,
		cancel:  cancel,
		entries: make(map[K]*entry[C]),
		stale:   make(map[*entry[C]]K),
		groups:  make(map[string]*group[K]),
	}
	m := cfg.Metrics
	name := func(family string) string { return obs.Name(family, "pool", cfg.Name) }
	p.waits = newCounter(m, name("aldis_pool_waits_total"))
	p.evictions = newCounter(m, name("aldis_pool_evictions_total"))
	p.exhausted = newCounter(m, name("aldis_pool_exhausted_total"))
	p.dialErrors = newCounter(m, name("aldis_pool_dial_errors_total"))
	p.lingerDone = newCounter(m, name("aldis_pool_linger_closes_total"))
	if m != nil {
		m.Gauge(name("aldis_pool_conns"), func() float64 { return float64(p.size.Load()) })
	}
	return p
}

// Get returns a lease on key's connection, dialling it if there is none. It waits for a dial in
// progress, and for room in a full group up to MaxWait; ctx bounds both. It returns ErrExhausted
// when the group stays full, and the dial's error (wrapped) when dialling fails.
func (p *Pool[K, C]) Get(ctx context.Context, key K) (*Lease[K, C], error) {
	var deadline <-chan time.Time // room wait, started on the first full-group miss
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if e, ok := p.entries[key]; ok {
			p.hold(e)
			p.mu.Unlock()
			return p.await(ctx, key, e)
		}
		gname := p.groupOf(key)
		g := p.group(gname)
		if budget := p.budget(gname); budget > 0 && g.count >= budget {
			if vk, ve, ok := p.evictIdle(gname); ok {
				// Close the victim before dialling, so the group never holds more than its
				// budget (an IRC network's per-IP limit counts a connection until it is gone).
				p.mu.Unlock()
				p.closeAndFree(vk, ve)
				continue
			}
			room := g.room
			p.mu.Unlock()
			if p.cfg.MaxWait <= 0 {
				p.exhausted.Inc()
				return nil, fmt.Errorf("%w (group %q, budget %d)", ErrExhausted, gname, budget)
			}
			if deadline == nil {
				p.waits.Inc()
				t := time.NewTimer(p.cfg.MaxWait)
				defer t.Stop()
				deadline = t.C
			}
			select {
			case <-room:
				continue
			case <-deadline:
				p.exhausted.Inc()
				return nil, fmt.Errorf("%w (group %q, budget %d)", ErrExhausted, gname, budget)
			case <-ctx.Done():
				return nil, fmt.Errorf("pool: waiting for room in group %q: %w", gname, ctx.Err())
			}
		}
		// A stale entry under key lives on for its current users (in p.stale) and counts against
		// the budget until it is closed.
		e := &entry[C]{ready: make(chan struct{}), refs: 1, group: gname}
		p.entries[key] = e
		g.count++
		p.size.Add(1)
		p.mu.Unlock()
		go p.dial(key, e)
		return p.await(ctx, key, e)
	}
}

// await waits for e's dial to finish and returns a lease, or drops the reference taken for the
// caller if the dial failed or ctx ended first.
func (p *Pool[K, C]) await(ctx context.Context, key K, e *entry[C]) (*Lease[K, C], error) {
	select {
	case <-e.ready:
	default:
		p.waits.Inc()
		select {
		case <-e.ready:
		case <-ctx.Done():
			p.release(key, e)
			return nil, fmt.Errorf("pool: waiting for connection: %w", ctx.Err())
		}
	}
	if e.err != nil {
		p.release(key, e)
		return nil, e.err
	}
	return &Lease[K, C]{p: p, key: key, e: e}, nil
}

// dial opens e's connection and publishes the outcome. A failed entry leaves the pool at once, so
// the next Get dials again.
func (p *Pool[K, C]) dial(key K, e *entry[C]) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	c, err := p.cfg.Dial(ctx, key)
	cancel()
	p.mu.Lock()
	if err != nil {
		p.dialErrors.Inc()
		e.err = fmt.Errorf("pool: dialling %v: %w", key, err)
		p.unmap(key, e)
		e.closing = true
		p.free(e)
		close(e.ready)
		p.mu.Unlock()
		p.cfg.Log.Debug("pool dial failed", "pool", p.cfg.Name, "key", key, "err", err)
		return
	}
	e.conn = c
	if p.closed {
		e.err = ErrClosed
	}
	close(e.ready)
	// Closed meanwhile, or everyone who asked gave up and Evict was called: close it. Everyone gave
	// up but it is still wanted: keep it for the next user.
	if p.closed || (e.refs == 0 && e.stale) {
		p.retire(key, e)
		p.mu.Unlock()
		p.closeAndFree(key, e)
		return
	}
	if e.refs == 0 {
		p.idle(key, e)
	}
	p.mu.Unlock()
}

// hold takes a reference on e, stopping its linger. Call with p.mu held.
func (p *Pool[K, C]) hold(e *entry[C]) {
	e.refs++
	if e.linger != nil {
		e.linger.Stop()
		e.linger = nil
	}
}

// release drops one reference on e; the last one starts the linger (or closes e if it is stale,
// the linger is 0, or the pool is closed).
func (p *Pool[K, C]) release(key K, e *entry[C]) {
	p.mu.Lock()
	e.refs--
	if e.refs > 0 {
		p.mu.Unlock()
		return
	}
	select {
	case <-e.ready:
	default:
		// Still dialling: dial() decides when it finishes.
		p.mu.Unlock()
		return
	}
	if e.err != nil || e.closing {
		p.mu.Unlock()
		return
	}
	if e.stale || p.cfg.Linger <= 0 || p.closed {
		p.retire(key, e)
		p.mu.Unlock()
		p.closeAndFree(key, e)
		return
	}
	p.idle(key, e)
	p.mu.Unlock()
}

// idle starts e's linger and signals waiters that an evictable entry exists. Call with p.mu held.
func (p *Pool[K, C]) idle(key K, e *entry[C]) {
	p.seq++
	e.idleSeq = p.seq
	seq := e.idleSeq
	e.linger = time.AfterFunc(p.cfg.Linger, func() { p.expire(key, e, seq) })
	p.wake(e.group)
}

// expire closes e if it is still in the idle period that started the timer (seq) when its linger
// ends; a timer that fired while a new user took e, or after e idled again, finds seq changed.
func (p *Pool[K, C]) expire(key K, e *entry[C], seq uint64) {
	p.mu.Lock()
	if e.refs > 0 || e.linger == nil || e.idleSeq != seq || e.closing {
		p.mu.Unlock()
		return
	}
	p.retire(key, e)
	p.mu.Unlock()
	p.lingerDone.Inc()
	p.closeAndFree(key, e)
}

// evictIdle picks the oldest idle entry of group gname and retires it; the caller closes it with
// closeAndFree once it has released p.mu. Call with p.mu held.
func (p *Pool[K, C]) evictIdle(gname string) (K, *entry[C], bool) {
	var (
		vk    K
		ve    *entry[C]
		found bool
	)
	for k, e := range p.entries {
		if e.group != gname || e.refs > 0 || e.linger == nil {
			continue
		}
		if !found || e.idleSeq < ve.idleSeq {
			vk, ve, found = k, e, true
		}
	}
	if !found {
		return vk, nil, false
	}
	p.retire(vk, ve)
	p.evictions.Inc()
	return vk, ve, true
}

// Evict closes key's connection: at once if nobody uses it, else when its last user releases it.
// Later Gets dial a fresh one. Use it when a connection is known to be broken.
func (p *Pool[K, C]) Evict(key K) {
	p.mu.Lock()
	e, ok := p.entries[key]
	if !ok {
		p.mu.Unlock()
		return
	}
	p.evictions.Inc()
	select {
	case <-e.ready:
	default:
		// Dialling: whoever ends up holding it last closes it.
		p.unmap(key, e)
		p.stale[e] = key
		e.stale = true
		p.mu.Unlock()
		return
	}
	if e.refs > 0 {
		p.unmap(key, e)
		p.stale[e] = key
		e.stale = true
		p.mu.Unlock()
		return
	}
	p.retire(key, e)
	p.mu.Unlock()
	p.closeAndFree(key, e)
}

// unmap takes e out of the map (if it is still key's entry), so no new user finds it.
// Call with p.mu held.
func (p *Pool[K, C]) unmap(key K, e *entry[C]) {
	if p.entries[key] == e {
		delete(p.entries, key)
	}
}

// retire marks e as closing (exactly once) and takes it out of every index, stopping its linger.
// Its budget slot stays taken until closeAndFree has closed it. Call with p.mu held.
func (p *Pool[K, C]) retire(key K, e *entry[C]) {
	e.closing = true
	if e.linger != nil {
		e.linger.Stop()
		e.linger = nil
	}
	p.unmap(key, e)
	delete(p.stale, e)
}

// free gives e's budget slot back and wakes the group's waiters. Call with p.mu held, once per entry.
func (p *Pool[K, C]) free(e *entry[C]) {
	g := p.group(e.group)
	g.count--
	p.size.Add(-1)
	p.wake(e.group)
	if g.count == 0 {
		delete(p.groups, e.group)
	}
}

// closeAndFree closes a retired entry's connection and then frees its slot. Call without p.mu.
func (p *Pool[K, C]) closeAndFree(key K, e *entry[C]) {
	p.closeConn(key, e.conn)
	p.mu.Lock()
	p.free(e)
	p.mu.Unlock()
}

// wake tells Get calls waiting on group gname to look again. Call with p.mu held.
func (p *Pool[K, C]) wake(gname string) {
	g, ok := p.groups[gname]
	if !ok {
		return
	}
	close(g.room)
	g.room = make(chan struct{})
}

func (p *Pool[K, C]) group(gname string) *group[K] {
	g, ok := p.groups[gname]
	if !ok {
		g = &group[K]{room: make(chan struct{})}
		p.groups[gname] = g
	}
	return g
}

func (p *Pool[K, C]) groupOf(key K) string {
	if p.cfg.Group == nil {
		return ""
	}
	return p.cfg.Group(key)
}

func (p *Pool[K, C]) budget(gname string) int {
	if p.cfg.Budget == nil {
		return 0
	}
	return p.cfg.Budget(gname)
}

func (p *Pool[K, C]) closeConn(key K, c C) {
	if err := c.Close(); err != nil {
		p.cfg.Log.Debug("pool close", "pool", p.cfg.Name, "key", key, "err", err)
	}
}

// Stats is a snapshot of a pool's use.
type Stats struct {
	Conns int            // open, dialling or closing
	Idle  int            // lingering with no user
	Users int            // leases held
	Group map[string]int // connections per group
}

// Stats returns a snapshot.
func (p *Pool[K, C]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Group: make(map[string]int, len(p.groups))}
	s.Conns = int(p.size.Load())
	for _, e := range p.entries {
		s.Users += e.refs
		if e.refs == 0 && e.linger != nil {
			s.Idle++
		}
	}
	for e := range p.stale {
		s.Users += e.refs
	}
	for name, g := range p.groups {
		s.Group[name] = g.count
	}
	return s
}

// Close closes every connection, in use or not, and makes later Gets fail with ErrClosed.
// Leases still held stay valid objects, but their connections are closed.
func (p *Pool[K, C]) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	type victim struct {
		key K
		e   *entry[C]
	}
	var victims []victim
	collect := func(k K, e *entry[C]) {
		select {
		case <-e.ready:
			p.retire(k, e)
			victims = append(victims, victim{k, e})
		default:
			p.unmap(k, e) // dial() closes it when it returns
			delete(p.stale, e)
		}
	}
	for k, e := range p.entries {
		collect(k, e)
	}
	for e, k := range p.stale {
		collect(k, e)
	}
	p.mu.Unlock()
	for _, v := range victims {
		p.closeAndFree(v.key, v.e)
	}
	return nil
}

// counter is a metrics counter that may be absent.
type counter struct{ c interface{ Inc() } }

func newCounter(m *obs.Metrics, name string) *counter {
	if m == nil {
		return &counter{}
	}
	return &counter{c: m.Counter(name)}
}

func (c *counter) Inc() {
	if c.c != nil {
		c.c.Inc()
	}
}

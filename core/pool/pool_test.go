package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/obs"
)

// key is what the IRC gateway uses: a user on a network.
type key struct{ user, network string }

// fakeConn records whether it was closed.
type fakeConn struct {
	id     int
	key    key
	closed atomic.Bool
	d      *dialer
}

func (c *fakeConn) Close() error {
	if c.closed.Swap(true) {
		return errors.New("closed twice")
	}
	c.d.mu.Lock()
	c.d.open[c.key.network]--
	c.d.mu.Unlock()
	return nil
}

// dialer hands out fakeConns, counting dials and open connections per network, and can be made to
// block or fail.
type dialer struct {
	mu      sync.Mutex
	dials   int
	open    map[string]int
	maxOpen map[string]int
	fail    error
	gate    chan struct{} // when set, dials wait for it
	delay   time.Duration
	conns   []*fakeConn
}

func newDialer() *dialer {
	return &dialer{open: map[string]int{}, maxOpen: map[string]int{}}
}

func (d *dialer) dial(ctx context.Context, k key) (*fakeConn, error) {
	d.mu.Lock()
	gate, fail, delay := d.gate, d.fail, d.delay
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if fail != nil {
		return nil, fail
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	c := &fakeConn{id: d.dials, key: k, d: d}
	d.conns = append(d.conns, c)
	d.open[k.network]++
	d.maxOpen[k.network] = max(d.maxOpen[k.network], d.open[k.network])
	return c, nil
}

func (d *dialer) stats() (dials int, open int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.open {
		open += n
	}
	return d.dials, open
}

func newPool(d *dialer, budget int, linger, wait time.Duration, m *obs.Metrics) *Pool[key, *fakeConn] {
	return New(Config[key, *fakeConn]{
		Name:    "test",
		Dial:    d.dial,
		Group:   func(k key) string { return k.network },
		Budget:  func(string) int { return budget },
		Linger:  linger,
		MaxWait: wait,
		Metrics: m,
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond for up to 5 s: closes happen on timers and goroutines.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}

func TestSharedAndLinger(t *testing.T) {
	d := newDialer()
	p := newPool(d, 0, 50*time.Millisecond, 0, nil)
	defer p.Close()
	ctx := ctxT(t)
	k := key{"juliet@example.com", "libera"}
	a, err := p.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if a.Conn() != b.Conn() {
		t.Fatal("two leases on one key got different connections")
	}
	if s := p.Stats(); s.Conns != 1 || s.Users != 2 {
		t.Fatalf("stats %+v, want 1 conn 2 users", s)
	}
	a.Release()
	a.Release() // idempotent
	if a.Conn().closed.Load() {
		t.Fatal("closed while still leased")
	}
	b.Release()
	// Within the linger, a new Get reuses the connection.
	c, err := p.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if c.Conn() != a.Conn() {
		t.Fatal("Get during the linger dialled a new connection")
	}
	c.Release()
	eventually(t, "the linger closes the connection", func() bool { return a.Conn().closed.Load() })
	if s := p.Stats(); s.Conns != 0 {
		t.Fatalf("stats after linger %+v", s)
	}
	c2, err := p.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Release()
	if c2.Conn() == a.Conn() || c2.Conn().closed.Load() {
		t.Fatal("Get after the linger did not dial afresh")
	}
}

func TestZeroLingerClosesAtOnce(t *testing.T) {
	d := newDialer()
	p := newPool(d, 0, 0, 0, nil)
	defer p.Close()
	l, err := p.Get(ctxT(t), key{"a", "n"})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if !l.Conn().closed.Load() {
		t.Fatal("not closed on release with no linger")
	}
}

func TestConcurrentGetsDialOnce(t *testing.T) {
	d := newDialer()
	d.gate = make(chan struct{})
	p := newPool(d, 0, time.Minute, 0, nil)
	defer p.Close()
	ctx := ctxT(t)
	k := key{"romeo", "oftc"}
	var wg sync.WaitGroup
	leases := make([]*Lease[key, *fakeConn], 20)
	errs := make([]error, 20)
	for i := range leases {
		wg.Go(func() { leases[i], errs[i] = p.Get(ctx, k) })
	}
	time.Sleep(20 * time.Millisecond)
	close(d.gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		if leases[i].Conn() != leases[0].Conn() {
			t.Fatal("different connections for one key")
		}
	}
	if dials, _ := d.stats(); dials != 1 {
		t.Fatalf("%d dials, want 1", dials)
	}
	if s := p.Stats(); s.Users != 20 {
		t.Fatalf("users %d, want 20", s.Users)
	}
	for _, l := range leases {
		l.Release()
	}
	if s := p.Stats(); s.Users != 0 || s.Idle != 1 {
		t.Fatalf("after release %+v", s)
	}
}

func TestBudgetExhaustedFallsBack(t *testing.T) {
	d := newDialer()
	m := obs.NewMetrics()
	p := newPool(d, 2, time.Minute, 0, m)
	defer p.Close()
	ctx := ctxT(t)
	a, _ := p.Get(ctx, key{"a", "libera"})
	b, _ := p.Get(ctx, key{"b", "libera"})
	_, err := p.Get(ctx, key{"c", "libera"})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("third Get on a budget of 2: %v, want ErrExhausted", err)
	}
	// Another group has its own budget.
	o, err := p.Get(ctx, key{"c", "oftc"})
	if err != nil {
		t.Fatalf("other group: %v", err)
	}
	o.Release()
	// A key already connected is served even when the group is full.
	a2, err := p.Get(ctx, key{"a", "libera"})
	if err != nil {
		t.Fatalf("existing key in a full group: %v", err)
	}
	a2.Release()
	a.Release()
	b.Release()
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	for _, want := range []string{`aldis_pool_exhausted_total{pool="test"} 1`, `aldis_pool_conns{pool="test"} 3`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

func TestFullGroupEvictsOldestIdle(t *testing.T) {
	d := newDialer()
	m := obs.NewMetrics()
	p := newPool(d, 2, time.Minute, 0, m)
	defer p.Close()
	ctx := ctxT(t)
	a, _ := p.Get(ctx, key{"a", "n"})
	b, _ := p.Get(ctx, key{"b", "n"})
	a.Release() // a idles first, so it is the oldest
	b.Release()
	c, err := p.Get(ctx, key{"c", "n"})
	if err != nil {
		t.Fatalf("Get with idle connections to evict: %v", err)
	}
	defer c.Release()
	eventually(t, "the oldest idle connection is closed", func() bool { return a.Conn().closed.Load() })
	if b.Conn().closed.Load() {
		t.Fatal("evicted the newer idle connection")
	}
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), `aldis_pool_evictions_total{pool="test"} 1`) {
		t.Errorf("eviction not counted:\n%s", buf.String())
	}
}

func TestWaitForRoom(t *testing.T) {
	d := newDialer()
	p := newPool(d, 1, 0, 5*time.Second, nil)
	defer p.Close()
	ctx := ctxT(t)
	a, _ := p.Get(ctx, key{"a", "n"})
	got := make(chan error, 1)
	go func() {
		l, err := p.Get(ctx, key{"b", "n"})
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Get returned before room appeared: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	a.Release()
	if err := <-got; err != nil {
		t.Fatalf("waiting Get: %v", err)
	}

	// MaxWait ends the wait with ErrExhausted; the caller's context ends it with its error.
	p2 := newPool(d, 1, 0, 20*time.Millisecond, nil)
	defer p2.Close()
	x, _ := p2.Get(ctx, key{"x", "n"})
	defer x.Release()
	if _, err := p2.Get(ctx, key{"y", "n"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("after MaxWait: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	p3 := newPool(d, 1, 0, time.Minute, nil)
	defer p3.Close()
	z, _ := p3.Get(ctx, key{"z", "n"})
	defer z.Release()
	if _, err := p3.Get(short, key{"w", "n"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after ctx deadline: %v", err)
	}
}

func TestDialErrorThenRetry(t *testing.T) {
	d := newDialer()
	d.fail = errors.New("connection refused")
	p := newPool(d, 1, time.Minute, 0, nil)
	defer p.Close()
	ctx := ctxT(t)
	k := key{"a", "n"}
	if _, err := p.Get(ctx, k); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Get with a failing dial: %v", err)
	}
	if s := p.Stats(); s.Conns != 0 || s.Group["n"] != 0 {
		t.Fatalf("a failed dial holds budget: %+v", s)
	}
	d.mu.Lock()
	d.fail = nil
	d.mu.Unlock()
	l, err := p.Get(ctx, k)
	if err != nil {
		t.Fatalf("Get after the failure cleared: %v", err)
	}
	l.Release()
}

func TestAbandonedDialIsKept(t *testing.T) {
	d := newDialer()
	d.gate = make(chan struct{})
	p := newPool(d, 0, time.Minute, 0, nil)
	defer p.Close()
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	k := key{"a", "n"}
	if _, err := p.Get(short, k); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get whose context ends during the dial: %v", err)
	}
	close(d.gate)
	eventually(t, "the finished dial idles in the pool", func() bool { return p.Stats().Idle == 1 })
	l, err := p.Get(ctxT(t), k)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if dials, _ := d.stats(); dials != 1 {
		t.Fatalf("%d dials, want the abandoned one reused", dials)
	}
}

func TestEvict(t *testing.T) {
	d := newDialer()
	p := newPool(d, 0, time.Minute, 0, nil)
	defer p.Close()
	ctx := ctxT(t)
	k := key{"a", "n"}
	old, _ := p.Get(ctx, k)
	p.Evict(k) // in use: closed on release, not handed out again
	fresh, err := p.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Conn() == old.Conn() {
		t.Fatal("evicted connection handed out again")
	}
	if old.Conn().closed.Load() {
		t.Fatal("evicted connection closed under its user")
	}
	old.Release()
	if !old.Conn().closed.Load() {
		t.Fatal("evicted connection not closed on its last release")
	}
	fresh.Release()
	p.Evict(k) // idle: closed at once
	if !fresh.Conn().closed.Load() {
		t.Fatal("idle connection not closed by Evict")
	}
	if s := p.Stats(); s.Conns != 0 || len(s.Group) != 0 {
		t.Fatalf("stats after evictions %+v", s)
	}
}

func TestClose(t *testing.T) {
	d := newDialer()
	p := newPool(d, 0, time.Minute, 0, nil)
	ctx := ctxT(t)
	a, _ := p.Get(ctx, key{"a", "n"})
	b, _ := p.Get(ctx, key{"b", "n"})
	b.Release()
	p.Close()
	if !a.Conn().closed.Load() || !b.Conn().closed.Load() {
		t.Fatal("Close left connections open")
	}
	a.Release() // must not close twice (fakeConn.Close reports it) or corrupt counts
	if _, err := p.Get(ctx, key{"c", "n"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, open := d.stats(); open != 0 {
		t.Fatalf("%d connections open after Close", open)
	}
}

// TestStress runs many users over few networks with small budgets under the race detector, and
// checks the budget was never exceeded and everything is closed at the end.
func TestStress(t *testing.T) {
	d := newDialer()
	d.delay = 100 * time.Microsecond
	const budget = 3
	p := newPool(d, budget, time.Millisecond, time.Millisecond, nil)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var got, exhausted atomic.Int64
	for w := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				k := key{fmt.Sprint("u", r.IntN(8)), fmt.Sprint("net", r.IntN(2))}
				if r.IntN(20) == 0 {
					p.Evict(k)
				}
				l, err := p.Get(ctx, k)
				if errors.Is(err, ErrExhausted) {
					exhausted.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if l.Conn().closed.Load() {
					t.Error("leased a closed connection")
				}
				got.Add(1)
				if r.IntN(4) == 0 {
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
				}
				l.Release()
			}
		})
	}
	wg.Wait()
	p.Close()
	_, open := d.stats()
	d.mu.Lock()
	defer d.mu.Unlock()
	for n, most := range d.maxOpen {
		if most > budget {
			t.Errorf("network %s had %d connections open at once, budget %d", n, most, budget)
		}
	}
	if open != 0 {
		t.Errorf("%d connections open after Close", open)
	}
	t.Logf("%d leases, %d exhausted, %d dials", got.Load(), exhausted.Load(), d.dials)
}

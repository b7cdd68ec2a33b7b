package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/core/store/sqlite"
)

func memStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// run starts q.Run and stops it when the test ends.
func run(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// waitFor polls cond for up to 30 seconds (the machine may be busy).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliverInPriorityOrder(t *testing.T) {
	st := memStore(t)
	var mu sync.Mutex
	var got []string
	q, err := New(st, Config{Name: "t", Workers: 1, Deliver: func(ctx context.Context, it Item) error {
		mu.Lock()
		got = append(got, it.Key)
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Added before Run, so that order is decided by priority alone.
	for _, it := range []Item{
		{Key: "routine1", Dest: "a", Priority: Routine},
		{Key: "priority", Dest: "a", Priority: Priority},
		{Key: "flash", Dest: "b", Priority: Flash},
		{Key: "routine2", Dest: "a", Priority: Routine},
		{Key: "immediate", Dest: "c", Priority: Immediate},
	} {
		if _, err := q.Add(t.Context(), it); err != nil {
			t.Fatal(err)
		}
	}
	run(t, q)
	waitFor(t, "5 deliveries", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 5 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[flash immediate priority routine1 routine2]" {
		t.Errorf("delivery order %v", got)
	}
	waitFor(t, "an empty queue", func() bool { n, _ := q.Count(t.Context()); return n == 0 })
}

func TestIdempotencyKey(t *testing.T) {
	st := memStore(t)
	delivered := make(chan string, 10)
	q, _ := New(st, Config{Name: "t", Deliver: func(ctx context.Context, it Item) error {
		delivered <- it.Key
		return nil
	}})
	if _, err := q.Add(t.Context(), Item{Key: "once", Dest: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(t.Context(), Item{Key: "once", Dest: "d"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Add = %v, want ErrExists", err)
	}
	run(t, q)
	<-delivered
	waitFor(t, "an empty queue", func() bool { n, _ := q.Count(t.Context()); return n == 0 })
	// Retired, the key still refuses a duplicate.
	if _, err := q.Add(t.Context(), Item{Key: "once", Dest: "d"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Add after delivery = %v, want ErrExists", err)
	}
	select {
	case k := <-delivered:
		t.Errorf("delivered %s twice", k)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestRetryBackoffThenSuccess(t *testing.T) {
	st := memStore(t)
	var attempts atomic.Int32
	var times []time.Time
	var mu sync.Mutex
	q, _ := New(st, Config{
		Name: "t", MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
		Deliver: func(ctx context.Context, it Item) error {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			if attempts.Add(1) < 4 {
				return errors.New("421 try later")
			}
			return nil
		},
	})
	run(t, q)
	q.Add(t.Context(), Item{Dest: "d"})
	waitFor(t, "4 attempts and an empty queue", func() bool {
		n, _ := q.Count(t.Context())
		return attempts.Load() == 4 && n == 0
	})
	mu.Lock()
	defer mu.Unlock()
	// Waits of at least half of 20, 40, 80 ms.
	for i, min := range []time.Duration{10, 20, 40} {
		if d := times[i+1].Sub(times[i]); d < min*time.Millisecond {
			t.Errorf("wait before attempt %d: %v, want >= %v ms", i+2, d, min)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	q, _ := New(memStore(t), Config{Name: "t", Deliver: func(context.Context, Item) error { return nil },
		MinBackoff: time.Minute, MaxBackoff: time.Hour})
	for attempt, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 7: time.Hour, 50: time.Hour} {
		for range 20 {
			if d := q.backoff(attempt); d < want/2 || d > want {
				t.Errorf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestPermanentFailureFollowUp(t *testing.T) {
	st := memStore(t)
	var bounces atomic.Int32
	q, _ := New(st, Config{
		Name: "t",
		Deliver: func(ctx context.Context, it Item) error {
			if it.Meta["kind"] == "bounce" {
				bounces.Add(1)
				return nil
			}
			return Permanent(errors.New("550 no such user"))
		},
		Failed: func(ctx context.Context, it Item, err error) ([]Item, error) {
			if !IsPermanent(err) {
				t.Errorf("Failed with %v, want the permanent error", err)
			}
			return []Item{{Key: "bounce:" + it.Key, Dest: "sender", Meta: map[string]string{"kind": "bounce", "err": err.Error()}}}, nil
		},
	})
	run(t, q)
	q.Add(t.Context(), Item{Key: "m1", Dest: "d"})
	waitFor(t, "the bounce", func() bool { n, _ := q.Count(t.Context()); return bounces.Load() == 1 && n == 0 })
}

func TestExpiry(t *testing.T) {
	st := memStore(t)
	failed := make(chan error, 1)
	q, _ := New(st, Config{
		Name: "t", MinBackoff: time.Hour,
		Deliver: func(ctx context.Context, it Item) error { return errors.New("connection refused") },
		Failed: func(ctx context.Context, it Item, err error) ([]Item, error) {
			failed <- err
			return nil, nil
		},
	})
	run(t, q)
	// Expires before the first retry (an hour away): fails after one attempt.
	q.Add(t.Context(), Item{Dest: "d", Expires: time.Now().Add(time.Minute)})
	select {
	case err := <-failed:
		if !errors.Is(err, ErrExpired) {
			t.Errorf("failed with %v, want ErrExpired", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no final failure")
	}
}

func TestFailedErrorRetries(t *testing.T) {
	st := memStore(t)
	var calls atomic.Int32
	q, _ := New(st, Config{
		Name: "t", MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Deliver: func(ctx context.Context, it Item) error { return Permanent(errors.New("no")) },
		Failed: func(ctx context.Context, it Item, err error) ([]Item, error) {
			if calls.Add(1) < 3 {
				return nil, errors.New("store full")
			}
			return nil, nil
		},
	})
	run(t, q)
	q.Add(t.Context(), Item{Dest: "d"})
	waitFor(t, "the failure reported", func() bool { n, _ := q.Count(t.Context()); return calls.Load() == 3 && n == 0 })
}

func TestConcurrencyBounds(t *testing.T) {
	st := memStore(t)
	var mu sync.Mutex
	cur := map[string]int{}
	total, maxTotal := 0, 0
	maxPer := map[string]int{}
	var delivered atomic.Int32
	q, _ := New(st, Config{
		Name: "t", Workers: 5, PerDest: 2,
		Deliver: func(ctx context.Context, it Item) error {
			mu.Lock()
			cur[it.Dest]++
			total++
			maxTotal = max(maxTotal, total)
			maxPer[it.Dest] = max(maxPer[it.Dest], cur[it.Dest])
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
			mu.Lock()
			cur[it.Dest]--
			total--
			mu.Unlock()
			delivered.Add(1)
			return nil
		},
	})
	var items []Item
	for i := range 60 {
		items = append(items, Item{Dest: fmt.Sprint("d", i%4)})
	}
	if _, err := q.Add(t.Context(), items...); err != nil {
		t.Fatal(err)
	}
	run(t, q)
	waitFor(t, "60 deliveries", func() bool { return delivered.Load() == 60 })
	mu.Lock()
	defer mu.Unlock()
	if maxTotal > 5 {
		t.Errorf("%d deliveries at once, want <= 5", maxTotal)
	}
	for d, n := range maxPer {
		if n > 2 {
			t.Errorf("%d deliveries at once to %s, want <= 2", n, d)
		}
	}
	if maxTotal < 4 {
		t.Errorf("at most %d deliveries at once: the queue does not use its workers", maxTotal)
	}
}

// TestLeaseLapse checks that an item claimed by a deliverer that died
// (here: a claim made directly in the store) is delivered once its lease
// lapses.
func TestLeaseLapse(t *testing.T) {
	st := memStore(t)
	delivered := make(chan Item, 1)
	q, _ := New(st, Config{Name: "t", Lease: 200 * time.Millisecond, Deliver: func(ctx context.Context, it Item) error {
		delivered <- it
		return nil
	}})
	ids, _ := q.Add(t.Context(), Item{Dest: "d"})
	now := time.Now()
	if _, err := st.QueueClaim(t.Context(), "t", ids[0], "dead", now, now.Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	run(t, q)
	select {
	case it := <-delivered:
		if it.Attempts != 2 {
			t.Errorf("attempts = %d, want 2", it.Attempts)
		}
		if time.Since(now) < 200*time.Millisecond {
			t.Error("delivered before the lease lapsed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not delivered after the lease lapsed")
	}
}

// TestOwnerReleases checks that Run releases at once the claims an
// earlier run under the same owner left, and not those of other owners.
func TestOwnerReleases(t *testing.T) {
	st := memStore(t)
	delivered := make(chan string, 2)
	q, _ := New(st, Config{Name: "t", Owner: "node1", Lease: time.Hour, Deliver: func(ctx context.Context, it Item) error {
		delivered <- it.Key
		return nil
	}})
	ids, _ := q.Add(t.Context(), Item{Key: "mine", Dest: "d"}, Item{Key: "theirs", Dest: "d"})
	now := time.Now()
	st.QueueClaim(t.Context(), "t", ids[0], "node1/dead", now, now.Add(time.Hour))
	st.QueueClaim(t.Context(), "t", ids[1], "node2/alive", now, now.Add(time.Hour))
	run(t, q)
	select {
	case k := <-delivered:
		if k != "mine" {
			t.Errorf("delivered %s, want mine", k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the earlier run's claim was not released")
	}
	select {
	case k := <-delivered:
		t.Errorf("delivered %s, claimed by another owner", k)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestShutdownReleases checks that a delivery cut short by shutdown makes
// the item due again at once, not after its lease.
func TestShutdownReleases(t *testing.T) {
	st := memStore(t)
	started := make(chan struct{})
	q, _ := New(st, Config{Name: "t", Lease: time.Hour, Deliver: func(ctx context.Context, it Item) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	ids, _ := q.Add(t.Context(), Item{Dest: "d"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	<-started
	cancel()
	<-done
	it, err := st.QueueGet(t.Context(), "t", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if it.Lease != "" || it.Due.After(time.Now()) {
		t.Errorf("after shutdown: lease %q due %v, want released and due", it.Lease, it.Due)
	}
}

func TestDeliverPanics(t *testing.T) {
	st := memStore(t)
	var n atomic.Int32
	q, _ := New(st, Config{Name: "t", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		Deliver: func(ctx context.Context, it Item) error {
			if n.Add(1) == 1 {
				panic("bad item")
			}
			return nil
		}})
	run(t, q)
	q.Add(t.Context(), Item{Dest: "d"})
	waitFor(t, "delivery after a panic", func() bool { c, _ := q.Count(t.Context()); return n.Load() == 2 && c == 0 })
}

func BenchmarkAddDeliver(b *testing.B) {
	db, err := sqlite.Open(b.Context(), b.TempDir()+"/q.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var delivered atomic.Int64
	q, _ := New(db, Config{Name: "b", Workers: 16, PerDest: 16, Deliver: func(ctx context.Context, it Item) error {
		delivered.Add(1)
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	payload := make([]byte, 4096)
	added := 0
	for i := 0; b.Loop(); i++ {
		added++
		if _, err := q.Add(ctx, Item{Dest: fmt.Sprint("d", i%8), Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	for delivered.Load() < int64(added) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

func qitem(queue, key, dest string, prio int, due time.Time) store.QueueItem {
	return store.QueueItem{
		Queue: queue, Key: key, Dest: dest, Priority: prio, Due: due,
		Meta:    map[string]string{"from": "a@example.org", "k": key},
		Payload: []byte("payload " + key + "\x00\xff"),
	}
}

func testQueueAddGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.UnixMicro(time.Now().UnixMicro())
	in := qitem("mail", "k1", "example.net", 2, t0)
	in.Expires = t0.Add(time.Hour)
	ids, err := s.QueueAdd(ctx, []store.QueueItem{in, qitem("mail", "", "example.net", 0, t0), qitem("mail", "", "x", 0, t0)})
	noErr(t, "QueueAdd", err)
	if len(ids) != 3 || ids[0] >= ids[1] || ids[1] >= ids[2] {
		t.Fatalf("ids %v, want 3 increasing", ids)
	}
	got, err := s.QueueGet(ctx, "mail", ids[0])
	noErr(t, "QueueGet", err)
	if got.ID != ids[0] || got.Queue != "mail" || got.Key != "k1" || got.Dest != "example.net" || got.Priority != 2 ||
		!bytes.Equal(got.Payload, in.Payload) || got.Meta["from"] != "a@example.org" || len(got.Meta) != 2 ||
		!got.Due.Equal(t0) || !got.Expires.Equal(in.Expires) || got.Attempts != 0 || got.Lease != "" || got.Created.IsZero() {
		t.Errorf("QueueGet = %+v, want %+v", got, in)
	}
	_, err = s.QueueGet(ctx, "other", ids[0])
	wantErr(t, "QueueGet in another queue", err, store.ErrNotFound)
	// The same key again: refused, and nothing of the batch is added.
	_, err = s.QueueAdd(ctx, []store.QueueItem{qitem("mail", "k9", "d", 0, t0), qitem("mail", "k1", "d", 0, t0)})
	wantErr(t, "QueueAdd duplicate key", err, store.ErrExists)
	n, err := s.QueueCount(ctx, "mail")
	noErr(t, "QueueCount", err)
	if n != 3 {
		t.Errorf("QueueCount = %d after a refused batch, want 3", n)
	}
	// Keys are per queue.
	_, err = s.QueueAdd(ctx, []store.QueueItem{qitem("link", "k1", "d", 0, t0)})
	noErr(t, "QueueAdd same key, other queue", err)
	_, err = s.QueueAdd(ctx, []store.QueueItem{{Key: "x"}})
	if err == nil {
		t.Error("QueueAdd without a queue name: no error")
	}
}

func testQueueOrderAndClaim(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.UnixMicro(time.Now().UnixMicro())
	items := []store.QueueItem{
		qitem("q", "routine-early", "a", 0, t0.Add(-3*time.Second)),
		qitem("q", "flash", "b", 3, t0),
		qitem("q", "routine-late", "a", 0, t0.Add(-time.Second)),
		qitem("q", "future", "a", 9, t0.Add(time.Hour)),
		qitem("q", "immediate", "c", 2, t0.Add(-time.Second)),
	}
	ids, err := s.QueueAdd(ctx, items)
	noErr(t, "QueueAdd", err)
	due, err := s.QueueDue(ctx, store.QueueDueQuery{Queue: "q", Now: t0, Max: 10})
	noErr(t, "QueueDue", err)
	byID := map[int64]string{}
	for i, id := range ids {
		byID[id] = items[i].Key
	}
	var keys []string
	for _, it := range due {
		keys = append(keys, byID[it.ID])
	}
	if fmt.Sprint(keys) != "[flash immediate routine-early routine-late]" {
		t.Errorf("QueueDue order = %v", keys)
	}
	if len(due[0].Payload) != 0 || due[0].Meta != nil {
		t.Errorf("QueueDue returned a payload or meta: %+v", due[0])
	}
	due, err = s.QueueDue(ctx, store.QueueDueQuery{Queue: "q", Now: t0, Max: 10, SkipDests: []string{"b", "c"}})
	noErr(t, "QueueDue skip", err)
	if len(due) != 2 || byID[due[0].ID] != "routine-early" || due[0].Dest != "a" || due[0].Priority != 0 || !due[0].Due.Equal(t0.Add(-3*time.Second)) {
		t.Errorf("QueueDue skipping b, c = %v", due)
	}
	due, err = s.QueueDue(ctx, store.QueueDueQuery{Queue: "q", Now: t0, Max: 1})
	noErr(t, "QueueDue max 1", err)
	if len(due) != 1 {
		t.Fatalf("QueueDue max 1 gave %d", len(due))
	}
	id := due[0].ID
	c, err := s.QueueClaim(ctx, "q", id, "lease-1", t0, t0.Add(time.Minute))
	noErr(t, "QueueClaim", err)
	if c.Lease != "lease-1" || c.Attempts != 1 || !c.Due.Equal(t0.Add(time.Minute)) || c.Key != "flash" ||
		!bytes.Equal(c.Payload, []byte("payload flash\x00\xff")) || c.Meta["k"] != "flash" {
		t.Errorf("claimed %+v", c)
	}
	_, err = s.QueueClaim(ctx, "q", id, "lease-2", t0, t0.Add(time.Minute))
	wantErr(t, "second claim", err, store.ErrNotFound)
	// A claimed item is not due until its claim lapses, then anyone may take it over.
	due, _ = s.QueueDue(ctx, store.QueueDueQuery{Queue: "q", Now: t0, Max: 10})
	if len(due) != 3 {
		t.Errorf("QueueDue while one is claimed: %d items, want 3", len(due))
	}
	next, ok, err := s.QueueNextDue(ctx, "q")
	noErr(t, "QueueNextDue", err)
	if !ok || !next.Equal(t0.Add(-3*time.Second)) {
		t.Errorf("QueueNextDue = %v %v", next, ok)
	}
	later := t0.Add(2 * time.Minute)
	c2, err := s.QueueClaim(ctx, "q", id, "lease-2", later, later.Add(time.Minute))
	noErr(t, "QueueClaim after the lease lapsed", err)
	if c2.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", c2.Attempts)
	}
	// The first claimant's lease is no longer valid.
	wantErr(t, "QueueDone with a lapsed lease", s.QueueDone(ctx, "q", id, "lease-1", nil), store.ErrNotFound)
	wantErr(t, "QueueRetry with a lapsed lease", s.QueueRetry(ctx, "q", id, "lease-1", t0, "x"), store.ErrNotFound)
	wantErr(t, "QueueDone with an empty lease", s.QueueDone(ctx, "q", due[0].ID, "", nil), store.ErrNotFound)
	noErr(t, "QueueRetry", s.QueueRetry(ctx, "q", id, "lease-2", t0.Add(time.Hour), "421 try later"))
	r, err := s.QueueGet(ctx, "q", id)
	noErr(t, "QueueGet", err)
	if r.Lease != "" || r.LastError != "421 try later" || !r.Due.Equal(t0.Add(time.Hour)) || r.Attempts != 2 {
		t.Errorf("after retry: %+v", r)
	}
	_, err = s.QueueClaim(ctx, "q", id, "lease-3", t0, t0.Add(time.Minute))
	wantErr(t, "claim before due", err, store.ErrNotFound)
}

func testQueueDone(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Now()
	ids, err := s.QueueAdd(ctx, []store.QueueItem{qitem("q", "k", "d", 0, t0), qitem("q", "", "d", 0, t0)})
	noErr(t, "QueueAdd", err)
	_, err = s.QueueClaim(ctx, "q", ids[0], "L", t0, t0.Add(time.Minute))
	noErr(t, "QueueClaim", err)
	// A follow-up whose key is taken: nothing changes.
	err = s.QueueDone(ctx, "q", ids[0], "L", []store.QueueItem{qitem("q", "k", "d", 0, t0)})
	wantErr(t, "QueueDone with a clashing follow-up", err, store.ErrExists)
	if _, err := s.QueueGet(ctx, "q", ids[0]); err != nil {
		t.Fatalf("item gone after a failed QueueDone: %v", err)
	}
	bounce := qitem("q", "bounce:k", "sender.example", 1, t0)
	noErr(t, "QueueDone", s.QueueDone(ctx, "q", ids[0], "L", []store.QueueItem{bounce}))
	_, err = s.QueueGet(ctx, "q", ids[0])
	wantErr(t, "QueueGet done item", err, store.ErrNotFound)
	wantErr(t, "QueueDone twice", s.QueueDone(ctx, "q", ids[0], "L", nil), store.ErrNotFound)
	n, _ := s.QueueCount(ctx, "q")
	if n != 2 {
		t.Errorf("QueueCount = %d, want 2 (the other item and the follow-up)", n)
	}
	// The tombstone keeps the key taken until pruned.
	_, err = s.QueueAdd(ctx, []store.QueueItem{qitem("q", "k", "d", 0, t0)})
	wantErr(t, "QueueAdd key of a done item", err, store.ErrExists)
	pruned, err := s.QueuePrune(ctx, "q", time.Now().Add(-time.Hour))
	noErr(t, "QueuePrune", err)
	if pruned != 0 {
		t.Errorf("QueuePrune of older tombstones removed %d", pruned)
	}
	pruned, err = s.QueuePrune(ctx, "q", time.Now().Add(time.Second))
	noErr(t, "QueuePrune", err)
	if pruned != 1 {
		t.Errorf("QueuePrune removed %d, want 1", pruned)
	}
	_, err = s.QueueAdd(ctx, []store.QueueItem{qitem("q", "k", "d", 0, t0)})
	noErr(t, "QueueAdd key after prune", err)
	// Live items are never pruned.
	n, _ = s.QueueCount(ctx, "q")
	if n != 3 {
		t.Errorf("QueueCount = %d, want 3", n)
	}
	_, ok, err := s.QueueNextDue(ctx, "empty")
	noErr(t, "QueueNextDue", err)
	if ok {
		t.Error("QueueNextDue of an empty queue: ok")
	}
}

// testQueueClaimConcurrent checks that of many concurrent claims of one
// item exactly one wins.
func testQueueClaimConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Now()
	ids, err := s.QueueAdd(ctx, []store.QueueItem{qitem("q", "", "d", 0, t0)})
	noErr(t, "QueueAdd", err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.QueueClaim(ctx, "q", ids[0], fmt.Sprint("L", i), t0, t0.Add(time.Minute))
			if err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d claims won, want 1", won)
	}
}

func testQueueRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Now()
	ids, err := s.QueueAdd(ctx, []store.QueueItem{qitem("q", "", "d", 0, t0), qitem("q", "", "d", 0, t0), qitem("q", "", "d", 0, t0)})
	noErr(t, "QueueAdd", err)
	for i, lease := range []string{"node1/a", "node1/b", "node2/a"} {
		_, err := s.QueueClaim(ctx, "q", ids[i], lease, t0, t0.Add(time.Hour))
		noErr(t, "QueueClaim", err)
	}
	n, err := s.QueueRelease(ctx, "q", "node1/")
	noErr(t, "QueueRelease", err)
	if n != 2 {
		t.Errorf("released %d, want 2", n)
	}
	due, err := s.QueueDue(ctx, store.QueueDueQuery{Queue: "q", Now: time.Now(), Max: 10})
	noErr(t, "QueueDue", err)
	if len(due) != 2 || due[0].ID != ids[0] || due[1].ID != ids[1] || due[0].Lease != "" {
		t.Errorf("due after release: %+v", due)
	}
	wantErr(t, "QueueDone with a released lease", s.QueueDone(ctx, "q", ids[0], "node1/a", nil), store.ErrNotFound)
}

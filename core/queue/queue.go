// Package queue delivers items of a durable store-and-forward queue, with retries, backoff, expiry and bounded concurrency.
//
// An item is an opaque payload with string metadata, a destination key and
// a priority; the queue knows nothing of mail or stanzas. Add returns only
// once the items are committed to the store, so whoever acknowledges an
// item to its sender after Add may rely on it surviving a crash or a kill
// -9.
//
// One goroutine (Run) owns the scheduling: it claims due items in priority
// order, at most Workers at a time and PerDest per destination, and hands
// each to a delivery goroutine. A claim is a lease: it lapses after Lease,
// and then the item is due again. The outcome of a delivery is written back
// by the delivery goroutine: done, retry with exponential backoff and
// jitter, or a final failure, for which Failed may return follow-up items
// (a bounce to the sender) that are added in the same transaction as the
// item is retired, so a failure report is made exactly once.
//
// Delivery semantics: exactly once within the queue, at least once towards
// the destination. An item is claimed by one deliverer at a time, and a
// retired item's idempotency key refuses duplicates until KeepDone has
// passed. The boundary is the destination's acknowledgement: if the process
// dies after the destination accepted an item but before the queue recorded
// it, the item is delivered again when its lease lapses. Destinations that
// can, deduplicate on the item's Key (mail carries it as its Message-ID).
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

// Item is one queued item; see store.QueueItem for its fields. When
// adding, ID, Queue, Attempts, Lease and LastError are ignored; a zero Due
// means now and a zero Expires means now + Config.MaxAge.
type Item = store.QueueItem

// Priorities, lowest to highest, after the precedence levels of military
// messaging. Any int is allowed: higher is delivered first.
const (
	Routine   = 0
	Priority  = 1
	Immediate = 2
	Flash     = 3
)

// ErrExpired is the final error of an item that outlived its expiry.
var ErrExpired = errors.New("queue: item expired before it could be delivered")

// Store is the part of store.Store the queue uses.
type Store interface {
	QueueAdd(ctx context.Context, items []store.QueueItem) ([]int64, error)
	QueueDue(ctx context.Context, q store.QueueDueQuery) ([]store.QueueItem, error)
	QueueClaim(ctx context.Context, queue string, id int64, lease string, now, until time.Time) (store.QueueItem, error)
	QueueDone(ctx context.Context, queue string, id int64, lease string, followUps []store.QueueItem) error
	QueueRetry(ctx context.Context, queue string, id int64, lease string, due time.Time, lastError string) error
	QueueNextDue(ctx context.Context, queue string) (time.Time, bool, error)
	QueueRelease(ctx context.Context, queue, prefix string) (int64, error)
	QueueCount(ctx context.Context, queue string) (int, error)
	QueuePrune(ctx context.Context, queue string, before time.Time) (int64, error)
}

// Config sets up a Queue. Name and Deliver are required; the other zero
// values take the defaults given.
type Config struct {
	// Name is the queue's name in the store; queues of different names
	// are independent.
	Name string
	// Deliver delivers one item. A nil error retires it; an error marked
	// with Permanent fails it for good; any other error retries it later.
	// ctx ends before the item's lease does.
	Deliver func(ctx context.Context, it Item) error
	// Failed is called once an item has failed for good (a permanent
	// error, or expiry) and returns items to add as it is retired: a
	// bounce, say. If it returns an error the item is retried later, so
	// that no failure goes unreported. Nil: failures are only logged.
	Failed func(ctx context.Context, it Item, err error) ([]Item, error)
	// Workers bounds concurrent deliveries (default 8); PerDest bounds them
	// per destination (default 2).
	Workers, PerDest int
	// Lease is how long a claim lasts (default 5 minutes): a delivery is
	// cancelled a little before, and an item whose deliverer died is due
	// again after it.
	Lease time.Duration
	// MinBackoff and MaxBackoff bound the wait before a retry (defaults 1
	// minute and 1 hour); it doubles with each attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxAge is the lifetime of an item added without Expires (default 5
	// days).
	MaxAge time.Duration
	// KeepDone is how long a retired item's key keeps refusing duplicates
	// (default 24 hours).
	KeepDone time.Duration
	// Poll is how often the scheduler looks at the store even with nothing
	// due: other processes may add items (default 30 seconds).
	Poll time.Duration
	// Owner names this process among those sharing the store (a node
	// name). Its claims carry it, and Run starts by releasing the claims
	// an earlier run under the same name left behind when it died, so
	// that they are delivered at once rather than when their leases
	// lapse. Two processes running at once must not share an Owner.
	// Empty: claims lapse only with their leases.
	Owner string
	// Logger receives delivery failures; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Queue is a durable queue and its delivery scheduler.
type Queue struct {
	cfg  Config
	st   Store
	log  *slog.Logger
	wake chan struct{} // capacity 1: a pending wake-up is enough
	// done carries the destination of each finished delivery to the
	// scheduler; capacity Workers, so a deliverer never waits on it.
	done chan string
}

// New checks cfg and returns a queue over st; Run starts its deliveries.
func New(st Store, cfg Config) (*Queue, error) {
	if cfg.Name == "" {
		return nil, errors.New("queue: empty name")
	}
	if cfg.Deliver == nil {
		return nil, fmt.Errorf("queue %s: no Deliver function", cfg.Name)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Workers, 8)
	def(&cfg.PerDest, 2)
	defDur(&cfg.Lease, 5*time.Minute)
	defDur(&cfg.MinBackoff, time.Minute)
	defDur(&cfg.MaxBackoff, time.Hour)
	defDur(&cfg.MaxAge, 5*24*time.Hour)
	defDur(&cfg.KeepDone, 24*time.Hour)
	defDur(&cfg.Poll, 30*time.Second)
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{
		cfg:  cfg,
		st:   st,
		log:  log.With("queue", cfg.Name),
		wake: make(chan struct{}, 1),
		done: make(chan string, cfg.Workers),
	}, nil
}

// Add commits items to the store and returns their IDs; when it returns
// nil the items are durable. It fails with store.ErrExists (adding
// nothing) if an item's Key is already taken in this queue.
func (q *Queue) Add(ctx context.Context, items ...Item) ([]int64, error) {
	now := q.cfg.Now()
	batch := make([]store.QueueItem, len(items))
	for i, it := range items {
		it.Queue = q.cfg.Name
		if it.Due.IsZero() {
			it.Due = now
		}
		if it.Expires.IsZero() {
			it.Expires = now.Add(q.cfg.MaxAge)
		}
		batch[i] = it
	}
	ids, err := q.st.QueueAdd(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("queue %s: add: %w", q.cfg.Name, err)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return ids, nil
}

// Count returns how many items wait or are being delivered.
func (q *Queue) Count(ctx context.Context) (int, error) {
	return q.st.QueueCount(ctx, q.cfg.Name)
}

// Run schedules deliveries until ctx ends, then waits for the deliveries
// under way; those that were cut short are due again at once, for the next
// run. It returns ctx's error.
func (q *Queue) Run(ctx context.Context) error {
	inflight := 0
	perDest := map[string]int{}
	finished := func(dest string) {
		inflight--
		if perDest[dest]--; perDest[dest] <= 0 {
			delete(perDest, dest)
		}
	}
	defer func() {
		for inflight > 0 {
			finished(<-q.done)
		}
	}()
	if q.cfg.Owner != "" {
		n, err := q.st.QueueRelease(ctx, q.cfg.Name, q.cfg.Owner+"/")
		if err != nil {
			return fmt.Errorf("queue %s: releasing the claims of an earlier run: %w", q.cfg.Name, err)
		}
		if n > 0 {
			q.log.Info("released deliveries interrupted by an earlier run", "items", n)
		}
	}
	nextPrune := time.Time{}
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := q.cfg.Now()
		blocked := q.fill(ctx, now, &inflight, perDest)
		if !now.Before(nextPrune) {
			if _, err := q.st.QueuePrune(ctx, q.cfg.Name, now.Add(-q.cfg.KeepDone)); err != nil && ctx.Err() == nil {
				q.log.Warn("pruning retired items", "err", err)
			}
			nextPrune = now.Add(time.Hour)
		}
		// Sleep until the next item is due, a delivery ends, an item is
		// added, or Poll passes.
		wait := q.cfg.Poll
		if blocked && inflight == 0 {
			wait = min(wait, time.Second) // a store error: try again soon
		}
		if !blocked && inflight < q.cfg.Workers {
			if due, ok, err := q.st.QueueNextDue(ctx, q.cfg.Name); err != nil {
				if ctx.Err() == nil {
					q.log.Warn("reading the next due time", "err", err)
					wait = time.Second
				}
			} else if ok {
				wait = min(wait, max(due.Sub(q.cfg.Now()), 0))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case dest := <-q.done:
			finished(dest)
		case <-q.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// fill claims due items while there is capacity and starts their
// deliveries. blocked reports that items are due but their destinations
// are at capacity (or a store error stopped it): the scheduler then waits
// for a delivery to end rather than for the next due time, which has
// passed.
func (q *Queue) fill(ctx context.Context, now time.Time, inflight *int, perDest map[string]int) (blocked bool) {
	for *inflight < q.cfg.Workers {
		var skip []string
		for d, n := range perDest {
			if n >= q.cfg.PerDest {
				skip = append(skip, d)
			}
		}
		free := q.cfg.Workers - *inflight
		cands, err := q.st.QueueDue(ctx, store.QueueDueQuery{
			Queue: q.cfg.Name, Now: now, SkipDests: skip, Max: 2*free + q.cfg.PerDest,
		})
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn("reading due items", "err", err)
			}
			return true
		}
		if len(cands) == 0 {
			return false
		}
		started := 0
		for _, c := range cands {
			if *inflight >= q.cfg.Workers {
				return false
			}
			if perDest[c.Dest] >= q.cfg.PerDest {
				blocked = true
				continue
			}
			it, err := q.st.QueueClaim(ctx, q.cfg.Name, c.ID, q.newLease(), now, now.Add(q.cfg.Lease))
			if errors.Is(err, store.ErrNotFound) {
				continue // claimed by another process, or retired meanwhile
			}
			if err != nil {
				if ctx.Err() == nil {
					q.log.Warn("claiming an item", "id", c.ID, "err", err)
				}
				return true
			}
			*inflight++
			perDest[it.Dest]++
			started++
			go q.deliver(ctx, it)
		}
		if started == 0 {
			return blocked
		}
	}
	return false
}

// deliver runs one delivery and records its outcome, then tells the
// scheduler.
func (q *Queue) deliver(ctx context.Context, it Item) {
	defer func() { q.done <- it.Dest }()
	// The outcome is recorded even when ctx ends meanwhile: a delivery
	// that succeeded must be retired, not repeated by the next run.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	log := q.log.With("id", it.ID, "dest", it.Dest, "attempt", it.Attempts)

	now := q.cfg.Now()
	if !it.Expires.IsZero() && now.After(it.Expires) && it.Attempts > 1 {
		q.fail(wctx, log, it, ErrExpired)
		return
	}
	// The deliverer must finish before the lease lapses, or another could
	// start on the same item.
	dctx, dcancel := context.WithTimeout(ctx, q.cfg.Lease-q.cfg.Lease/10)
	err := safeDeliver(dctx, q.cfg.Deliver, it)
	dcancel()
	switch {
	case err == nil:
		if err := q.st.QueueDone(wctx, q.cfg.Name, it.ID, it.Lease, nil); err != nil {
			// The lease lapsed and another deliverer has the item: it will
			// be delivered twice (the at-least-once boundary).
			log.Warn("delivered, but could not retire the item", "err", err)
		}
	case ctx.Err() != nil:
		// Shutting down: due again at once, for the next run.
		if err := q.st.QueueRetry(wctx, q.cfg.Name, it.ID, it.Lease, now, "interrupted: "+err.Error()); err != nil {
			log.Warn("releasing an interrupted delivery", "err", err)
		}
	case IsPermanent(err):
		log.Info("delivery failed for good", "err", err)
		q.fail(wctx, log, it, err)
	default:
		wait := q.backoff(it.Attempts)
		var ra *retryAfterError
		if errors.As(err, &ra) {
			wait = max(wait, ra.after)
		}
		next := q.cfg.Now().Add(wait)
		if !it.Expires.IsZero() && next.After(it.Expires) {
			log.Info("delivery failed and the item expires before the next attempt", "err", err)
			q.fail(wctx, log, it, fmt.Errorf("%w; last error: %w", ErrExpired, err))
			return
		}
		log.Info("delivery failed, will retry", "err", err, "in", wait.Round(time.Second))
		if err := q.st.QueueRetry(wctx, q.cfg.Name, it.ID, it.Lease, next, err.Error()); err != nil {
			log.Warn("scheduling a retry", "err", err)
		}
	}
}

// fail retires an item that failed for good, adding its follow-ups.
func (q *Queue) fail(ctx context.Context, log *slog.Logger, it Item, cause error) {
	var follow []Item
	if q.cfg.Failed != nil {
		var err error
		follow, err = q.cfg.Failed(ctx, it, cause)
		if err != nil {
			log.Warn("reporting a failed item; will try again", "err", err)
			next := q.cfg.Now().Add(q.backoff(it.Attempts))
			if err := q.st.QueueRetry(ctx, q.cfg.Name, it.ID, it.Lease, next, cause.Error()); err != nil {
				log.Warn("scheduling a retry", "err", err)
			}
			return
		}
	}
	now := q.cfg.Now()
	for i := range follow {
		follow[i].Queue = q.cfg.Name
		if follow[i].Due.IsZero() {
			follow[i].Due = now
		}
		if follow[i].Expires.IsZero() {
			follow[i].Expires = now.Add(q.cfg.MaxAge)
		}
	}
	err := q.st.QueueDone(ctx, q.cfg.Name, it.ID, it.Lease, follow)
	if errors.Is(err, store.ErrExists) {
		log.Warn("a follow-up's key is taken; retiring the item without it", "err", err)
		err = q.st.QueueDone(ctx, q.cfg.Name, it.ID, it.Lease, nil)
	}
	if err != nil {
		log.Warn("retiring a failed item", "err", err)
		return
	}
	log.Warn("item failed for good", "err", cause, "followups", len(follow))
	if len(follow) > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// backoff is the wait after the attempt-th attempt: MinBackoff doubled per
// earlier attempt, capped at MaxBackoff, the upper half of it jittered.
func (q *Queue) backoff(attempt int) time.Duration {
	d := q.cfg.MinBackoff
	for i := 1; i < attempt && d < q.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.cfg.MaxBackoff)
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

// safeDeliver runs deliver, turning a panic into an error so one bad item
// cannot take the server down.
func safeDeliver(ctx context.Context, deliver func(context.Context, Item) error, it Item) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("queue: delivery panicked: %v", r)
		}
	}()
	return deliver(ctx, it)
}

func (q *Queue) newLease() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	if q.cfg.Owner != "" {
		return q.cfg.Owner + "/" + hex.EncodeToString(b[:])
	}
	return hex.EncodeToString(b[:])
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as final: the item is not retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as temporary, with the next attempt no sooner than
// after (the backoff applies if it is longer).
func RetryAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err, after}
}

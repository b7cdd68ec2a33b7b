package relay

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// waiter is one item waiting to cross: a queued item whose delivery holds
// its claim (done is set), or a folded presence (foldKey is set). The
// link's goroutine owns the fields below the line.
type waiter struct {
	item    *Item
	qid     int64      // queue ID: FIFO within a precedence
	done    chan error // capacity 1: the outcome, once
	foldKey string

	seq         uint64 // arrival order among folded presence
	heapIdx     int    // in ready while ≥ 0
	inFlight    bool   // with the sender
	gone        bool   // finished, or replaced by a newer presence
	handedEpoch uint64 // the link epoch it was last handed to the bearer in; 0: never
}

// offer is the next item for the sender, and the epoch it goes out in.
type offer struct {
	w     *waiter
	epoch uint64
}

// result is the sender's report on an offer.
type result struct {
	offer
	err error
}

// snapshot is what other goroutines may read of the link's state.
type snapshot struct {
	state   State
	ready   int // items waiting for the bearer
	pending int // queued items handed over or waiting, not yet acknowledged
	folded  int // folded presence held
}

// ready orders the items waiting for the bearer: highest precedence, then
// queued items before folded presence, then oldest first.
type ready []*waiter

func (r ready) Len() int { return len(r) }
func (r ready) Less(i, j int) bool {
	a, b := r[i], r[j]
	if a.item.Precedence != b.item.Precedence {
		return a.item.Precedence > b.item.Precedence
	}
	if (a.done == nil) != (b.done == nil) {
		return a.done != nil
	}
	if a.qid != b.qid {
		return a.qid < b.qid
	}
	return a.seq < b.seq
}
func (r ready) Swap(i, j int) {
	r[i], r[j] = r[j], r[i]
	r[i].heapIdx, r[j].heapIdx = i, j
}
func (r *ready) Push(x any) {
	w := x.(*waiter)
	w.heapIdx = len(*r)
	*r = append(*r, w)
}
func (r *ready) Pop() any {
	old := *r
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*r = old[:len(old)-1]
	w.heapIdx = -1
	return w
}

// loop is the state of the link's goroutine.
type loop struct {
	l        *Link
	up       bool
	degraded bool
	emcon    bool
	epoch    uint64 // counts the bearer's Down→Up transitions
	state    State
	waiters  map[brlink.ID]*waiter
	folds    map[string]*waiter
	foldIDs  map[brlink.ID]*waiter
	ready    ready
	seq      uint64
	last     snapshot
	// settle, while set, holds offers back: see gather.
	settle      *time.Timer
	settleStart time.Time
}

// The link waits until items have stopped becoming ready for settleTime
// (but no longer than maxSettle) before it offers one: the queue starts
// each delivery in its own goroutine, and items claimed together reach
// the loop in any order. Gathering them first keeps them in queue order
// (stanzas between two JIDs must not be reordered), at the cost of a
// delay that is nothing on an HF link.
const (
	settleTime = 20 * time.Millisecond
	maxSettle  = 250 * time.Millisecond
)

// gather starts or extends the settle time.
func (lp *loop) gather() {
	now := time.Now()
	switch {
	case lp.settle == nil:
		lp.settle, lp.settleStart = time.NewTimer(settleTime), now
	case now.Sub(lp.settleStart) < maxSettle:
		lp.settle.Reset(settleTime)
	}
}

// runLoop owns the link state: it takes the bearer's events, the items of
// the queue's deliveries and the folded presence, offers the sender the
// most urgent item while the link may transmit, and settles items as the
// far side acknowledges them. frontDone ends with the bearer and the
// receiver.
func (l *Link) runLoop(ctx context.Context, frontDone <-chan struct{}, ev <-chan Event) {
	defer close(l.loopDone)
	lp := &loop{
		l: l, emcon: l.emcon.Load(),
		waiters: map[brlink.ID]*waiter{}, folds: map[string]*waiter{}, foldIDs: map[brlink.ID]*waiter{},
	}
	lp.state = lp.compute()
	lp.last = *l.snap.Load()
	for {
		var offers chan<- offer
		var next offer
		var settled <-chan time.Time
		if lp.settle != nil {
			settled = lp.settle.C
		} else if lp.transmitting() && len(lp.ready) > 0 {
			offers, next = l.offers, offer{lp.ready[0], lp.epoch}
		}
		select {
		case <-ctx.Done():
			return
		case <-settled:
			lp.settle = nil
		case offers <- next:
			heap.Pop(&lp.ready)
			next.w.inFlight = true
		case r := <-l.results:
			lp.result(r)
		case e := <-ev:
			lp.event(ctx, frontDone, e)
		case w := <-l.register:
			lp.add(w)
		case w := <-l.unregister:
			lp.remove(w)
		case w := <-l.fold:
			lp.addFold(w)
		case <-l.emconKick:
			lp.emcon = l.emcon.Load()
			lp.changed()
		}
		lp.publish()
	}
}

func (lp *loop) transmitting() bool { return lp.up && !lp.emcon }

func (lp *loop) compute() State {
	switch {
	case lp.emcon:
		return StateEMCON
	case !lp.up:
		return StateDown
	case lp.degraded:
		return StateDegraded
	}
	return StateUp
}

// changed recomputes the state after up, degraded or emcon changed,
// reports a change, and queues everything due for (re)transmission once
// the link may transmit.
func (lp *loop) changed() {
	if s := lp.compute(); s != lp.state {
		lp.l.log.Info("link state changed", "from", lp.state.String(), "to", s.String())
		lp.state = s
		if lp.l.cfg.OnState != nil {
			lp.l.cfg.OnState(s)
		}
	}
	if !lp.transmitting() {
		return
	}
	// Whatever was not handed to the bearer in this epoch goes (again):
	// after a Down, the bearer has forgotten what it had not delivered.
	for _, w := range lp.waiters {
		lp.push(w)
	}
	for _, w := range lp.folds {
		lp.push(w)
	}
}

// push makes w ready unless it already is, is with the sender, or was
// handed over in this epoch.
func (lp *loop) push(w *waiter) {
	if w.gone || w.heapIdx >= 0 || w.inFlight || w.handedEpoch == lp.epoch {
		return
	}
	heap.Push(&lp.ready, w)
	lp.gather()
}

func (lp *loop) add(w *waiter) {
	w.heapIdx = -1
	if old := lp.waiters[w.item.ID]; old != nil {
		lp.finish(old, errors.New("relay: superseded by a new claim"))
	}
	lp.waiters[w.item.ID] = w
	if lp.transmitting() {
		lp.push(w)
	}
}

func (lp *loop) remove(w *waiter) {
	if lp.waiters[w.item.ID] == w {
		delete(lp.waiters, w.item.ID)
	}
	lp.drop(w)
}

// drop takes w out of the ready heap for good.
func (lp *loop) drop(w *waiter) {
	w.gone = true
	if w.heapIdx >= 0 {
		heap.Remove(&lp.ready, w.heapIdx)
	}
}

// finish settles a queued item: its delivery returns err.
func (lp *loop) finish(w *waiter, err error) {
	lp.remove(w)
	select {
	case w.done <- err:
	default:
	}
}

func (lp *loop) addFold(w *waiter) {
	w.heapIdx = -1
	if old := lp.folds[w.foldKey]; old != nil {
		delete(lp.foldIDs, old.item.ID)
		lp.drop(old)
	} else if len(lp.folds) >= maxFolded {
		lp.l.log.Warn("too much folded presence held: dropping an update", "limit", maxFolded)
		return
	}
	lp.seq++
	w.seq = lp.seq
	lp.folds[w.foldKey] = w
	lp.foldIDs[w.item.ID] = w
	if lp.transmitting() {
		lp.push(w)
	}
}

func (lp *loop) forgetFold(w *waiter) {
	if lp.folds[w.foldKey] == w {
		delete(lp.folds, w.foldKey)
	}
	delete(lp.foldIDs, w.item.ID)
	lp.drop(w)
}

// result settles the sender's report.
func (lp *loop) result(r result) {
	w := r.w
	w.inFlight = false
	if w.gone {
		return
	}
	switch {
	case r.err == nil:
		lp.l.m.sent.Inc()
		w.handedEpoch = r.epoch
		// If the link went down and up while the bearer took it, the
		// bearer has forgotten it: send it again.
		if lp.transmitting() {
			lp.push(w)
		}
	case errors.Is(r.err, ErrDown):
		// The bearer's Down is on its way, and the next Up sends it
		// again; if that Up has already come, send it now.
		if r.epoch != lp.epoch && lp.transmitting() {
			lp.push(w)
		}
	case w.done == nil:
		lp.l.log.Info("folded presence not sent", "err", r.err)
		lp.forgetFold(w)
	case errors.Is(r.err, ErrExpired), errors.Is(r.err, ErrForbidden), errors.Is(r.err, ErrTooLarge),
		errors.Is(r.err, ErrBadItem):
		lp.finish(w, queue.Permanent(r.err))
	default:
		// The bearer failed in a way it did not describe: the queue tries
		// the item again after a backoff.
		lp.finish(w, fmt.Errorf("relay: bearer: %w", r.err))
	}
}

func (lp *loop) event(ctx context.Context, frontDone <-chan struct{}, e Event) {
	switch e.Kind {
	case Up:
		if !lp.up {
			lp.epoch++
		}
		lp.up, lp.degraded = true, e.Degraded
		lp.changed()
	case Down:
		if lp.up {
			lp.l.log.Info("bearer down", "err", e.Err)
		}
		lp.up = false
		lp.changed()
	case Acked:
		for _, id := range e.IDs {
			if w := lp.waiters[id]; w != nil {
				lp.l.m.acked.Inc()
				lp.finish(w, nil)
			} else if w := lp.foldIDs[id]; w != nil {
				lp.forgetFold(w)
			}
		}
	case Rejected:
		for _, id := range e.IDs {
			if w := lp.waiters[id]; w != nil {
				lp.l.m.rejected.Inc()
				lp.l.log.Warn("far side refused an item", "id", fmt.Sprintf("%x", id), "err", e.Err)
				lp.finish(w, queue.Permanent(fmt.Errorf("%w: %w", ErrRejected, errOrUnknown(e.Err))))
			} else if w := lp.foldIDs[id]; w != nil {
				lp.forgetFold(w)
			}
		}
	case Received:
		// The receiver commits it; waiting here holds the bearer back
		// while the store is slow.
		select {
		case lp.l.received <- e:
		case <-frontDone:
		case <-ctx.Done():
		}
	}
}

func errOrUnknown(err error) error {
	if err == nil {
		return errors.New("no reason given")
	}
	return err
}

// publish makes the state visible to State and the metrics.
func (lp *loop) publish() {
	s := snapshot{state: lp.state, ready: len(lp.ready), pending: len(lp.waiters), folded: len(lp.folds)}
	if s != lp.last {
		lp.last = s
		lp.l.snap.Store(&s)
	}
}

// runSender hands the items the link's goroutine offers to the bearer,
// one at a time, so that the most urgent waiting item is always next.
func (l *Link) runSender(ctx context.Context) {
	for {
		var o offer
		select {
		case <-ctx.Done():
			return
		case o = <-l.offers:
		}
		err := l.handOver(ctx, o.w.item)
		select {
		case l.results <- result{o, err}:
		case <-ctx.Done():
			return
		}
	}
}

// handOver checks an item once more and gives it to the bearer: it may
// have expired while waiting, or the link's clearance may have changed.
func (l *Link) handOver(ctx context.Context, it *Item) error {
	if !it.Expires.IsZero() && !l.cfg.Now().Before(it.Expires) {
		return ErrExpired
	}
	if l.cfg.Allowed != nil && it.Class != brlink.ClassEmail {
		st, err := wire.ParseElement(string(it.Payload))
		if err != nil {
			return fmt.Errorf("relay: queued stanza damaged: %w", err)
		}
		if !l.cfg.Allowed(st) {
			l.log.Info("link no longer cleared for a queued stanza", "id", fmt.Sprintf("%x", it.ID))
			return ErrForbidden
		}
	}
	return l.cfg.Bearer.Send(ctx, it)
}

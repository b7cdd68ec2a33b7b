package relay

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// fakeBearer is one end of an in-memory link. Like the real bearers it
// keeps a bounded transmit buffer ordered by precedence, forgets it on
// Down, and lets the relay acknowledge what it receives. Tests control it:
// up or down, transmission held, acknowledgements lost, items refused.
type fakeBearer struct {
	mu       sync.Mutex
	peer     *fakeBearer
	up       bool
	hold     bool // transmit nothing (the buffer fills up)
	dropAcks bool // the far side's acknowledgements of our items are lost
	reject   bool // the far side refuses our items (NACK)
	bufCap   int
	buf      []*Item
	handed   []*Item // what the relay handed to Send, in order
	sent     []*Item // what was transmitted, in order
	acks     int     // acknowledgements our relay gave for received items
	pending  []Event // events not yet given to the relay
	kick     chan struct{}
	space    chan struct{}
}

func newFakeBearer() *fakeBearer {
	return &fakeBearer{bufCap: 16, kick: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// pair connects two fake bearers.
func pair(a, b *fakeBearer) {
	a.mu.Lock()
	a.peer = b
	a.mu.Unlock()
	b.mu.Lock()
	b.peer = a
	b.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (f *fakeBearer) emit(e Event) {
	f.mu.Lock()
	f.pending = append(f.pending, e)
	f.mu.Unlock()
	signal(f.kick)
}

func (f *fakeBearer) setUp(up bool) {
	f.mu.Lock()
	f.up = up
	e := Event{Kind: Up}
	if !up {
		e = Event{Kind: Down, Err: ErrDown}
		f.buf = nil // what was not transmitted is lost
	}
	f.pending = append(f.pending, e)
	f.mu.Unlock()
	signal(f.kick)
	signal(f.space)
}

func (f *fakeBearer) set(fn func(f *fakeBearer)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
	signal(f.kick)
}

func (f *fakeBearer) get(fn func(f *fakeBearer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBearer) Run(ctx context.Context, ev chan<- Event) error {
	f.mu.Lock()
	if f.up {
		f.pending = append([]Event{{Kind: Up}}, f.pending...)
	}
	f.mu.Unlock()
	for {
		if !f.step(ctx, ev) {
			select {
			case <-ctx.Done():
				return nil
			case <-f.kick:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// step gives the relay one pending event or transmits one item, and
// reports whether it did anything.
func (f *fakeBearer) step(ctx context.Context, ev chan<- Event) bool {
	f.mu.Lock()
	if len(f.pending) > 0 {
		e := f.pending[0]
		f.pending = f.pending[1:]
		f.mu.Unlock()
		select {
		case ev <- e:
		case <-ctx.Done():
		}
		return true
	}
	if !f.up || f.hold || len(f.buf) == 0 {
		f.mu.Unlock()
		return false
	}
	// Highest precedence first, FIFO within one, as the real bearers.
	best := 0
	for i, it := range f.buf {
		if it.Precedence > f.buf[best].Precedence {
			best = i
		}
	}
	it := f.buf[best]
	f.buf = slices.Delete(f.buf, best, best+1)
	f.sent = append(f.sent, it)
	peer, reject := f.peer, f.reject
	f.mu.Unlock()
	signal(f.space)
	if reject {
		f.emit(Event{Kind: Rejected, IDs: []brlink.ID{it.ID}, Err: errors.New("expired at the far side")})
		return true
	}
	cp := *it
	cp.Payload = slices.Clone(it.Payload)
	peer.deliver(&cp, func() {
		f.mu.Lock()
		lost := f.dropAcks
		f.mu.Unlock()
		if !lost {
			f.emit(Event{Kind: Acked, IDs: []brlink.ID{cp.ID}})
		}
	})
	return true
}

// deliver is the far side's transmission arriving; lost while down.
func (f *fakeBearer) deliver(it *Item, ack func()) {
	f.mu.Lock()
	if !f.up {
		f.mu.Unlock()
		return
	}
	f.pending = append(f.pending, Event{Kind: Received, Item: it, Ack: func() {
		f.mu.Lock()
		f.acks++
		f.mu.Unlock()
		// Asynchronous, as a real bearer's ACK frame: the relay never
		// waits on the far side's event channel.
		go ack()
	}})
	f.mu.Unlock()
	signal(f.kick)
}

func (f *fakeBearer) Send(ctx context.Context, it *Item) error {
	for {
		f.mu.Lock()
		if !f.up {
			f.mu.Unlock()
			return ErrDown
		}
		if len(f.buf) < f.bufCap {
			f.buf = append(f.buf, it)
			f.handed = append(f.handed, it)
			f.mu.Unlock()
			signal(f.kick)
			return nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.space:
		}
	}
}

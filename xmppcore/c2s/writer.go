package c2s

import (
	"runtime"
	"sync"
)

// A writer writes what many connections have queued, one connection after
// the other, on one goroutine, without blocking on any of them (sock): a
// room's message to its occupants costs one goroutine for all of them
// rather than a flush goroutine per occupant. A connection whose socket
// does not take everything at once, or that has more queued than one
// write carries, or that is closing, goes on in a flush goroutine of its
// own, as before, so a client that stopped reading holds up no one else.
//
// The server has one writer per processor, each connection uses one, and
// a writer runs a goroutine only while connections wait for it.
type writer struct {
	mu      sync.Mutex
	ready   []*conn
	spare   []*conn
	running bool
}

// add gives the writer a connection to write for; the caller has set
// c.writing.
func (w *writer) add(c *conn) {
	w.mu.Lock()
	w.ready = append(w.ready, c)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

func (w *writer) run() {
	// Started as the next goroutine to run, the writer would write each
	// stanza as soon as one is queued. Behind what is runnable already
	// (readers, hubs, rooms), it finds more queued per connection when
	// the server is busy, and writes it in one go.
	runtime.Gosched()
	for {
		w.mu.Lock()
		batch := w.ready
		if len(batch) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		// Swap only a non-empty list, so ready and spare never share an array.
		w.ready = w.spare[:0]
		w.mu.Unlock()
		for i, c := range batch {
			c.writeTurn()
			batch[i] = nil
		}
		w.spare = batch[:0]
	}
}

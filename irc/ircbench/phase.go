package ircbench

import (
	"bytes"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// phase counts one batch of messages in one direction: which receiver got which message (each
// at most once: more copies are duplicates), when, and which messages every receiver has got.
// Receivers' reader goroutines call deliver and bounce concurrently; the driver sends and reads
// the counts.
type phase struct {
	dir       Direction
	name      string
	token     []byte // "<run tag>.<phase number> ", the start of every message of the phase
	n         int    // messages the phase may send
	receivers int

	sentAt  []atomic.Int64 // when message i was handed to its sender (bench clock); 0: not yet
	got     []atomic.Int32 // receivers that have message i
	bounced []atomic.Bool  // message i came back as an error
	seen    []atomic.Bool  // receiver r has message i: seen[r*n+i]

	sent, delivered, duplicates, errors, complete atomic.Int64
	last                                          atomic.Int64 // bench time of the last delivery

	mu  sync.Mutex
	lat []time.Duration // one per delivery

	progress chan struct{} // poked (without blocking) when a message completes or bounces
}

func newPhase(dir Direction, name string, token []byte, n, receivers int) *phase {
	return &phase{
		dir: dir, name: name, token: token, n: n, receivers: receivers,
		sentAt:   make([]atomic.Int64, n),
		got:      make([]atomic.Int32, n),
		bounced:  make([]atomic.Bool, n),
		seen:     make([]atomic.Bool, n*receivers),
		lat:      make([]time.Duration, 0, n*receivers),
		progress: make(chan struct{}, 1),
	}
}

// text is the body of message seq: the token, the number, and padding up to size bytes.
func (p *phase) text(seq, size int, pad string) string {
	b := make([]byte, 0, max(size, len(p.token)+12))
	b = append(b, p.token...)
	b = appendInt(b, seq)
	if n := size - len(b) - 1; n > 0 {
		b = append(b, ' ')
		b = append(b, pad[:min(n, len(pad))]...)
	}
	return string(b)
}

func appendInt(b []byte, v int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

// seq finds the phase's token in a received text and returns the message number after it. The
// token may be anywhere: a gateway may prefix the text (such as "<nick> " when it relays for a
// user through its own connection).
func (p *phase) seq(text []byte) (int, bool) {
	i := bytes.Index(text, p.token)
	if i < 0 {
		return 0, false
	}
	rest := text[i+len(p.token):]
	v, n := 0, 0
	for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9'; n++ {
		if n == 9 {
			return 0, false // longer than any phase
		}
		v = v*10 + int(rest[n]-'0')
	}
	if n == 0 || v >= p.n {
		return 0, false
	}
	return v, true
}

// markSent records that message seq is being sent now.
func (p *phase) markSent(seq int, now int64) {
	p.sentAt[seq].Store(max(now, 1))
	p.sent.Add(1)
}

// deliver records that receiver r got message seq at now.
func (p *phase) deliver(r, seq int, now int64) {
	sent := p.sentAt[seq].Load()
	if sent == 0 || r < 0 || r >= p.receivers {
		return // not sent by this run: a stale copy, or not ours
	}
	if !p.seen[r*p.n+seq].CompareAndSwap(false, true) {
		p.duplicates.Add(1)
		return
	}
	p.delivered.Add(1)
	for {
		l := p.last.Load()
		if now <= l || p.last.CompareAndSwap(l, now) {
			break
		}
	}
	p.mu.Lock()
	p.lat = append(p.lat, time.Duration(now-sent))
	p.mu.Unlock()
	if int(p.got[seq].Add(1)) == p.receivers {
		p.complete.Add(1)
		p.poke()
	}
}

// bounce records that message seq came back as an error: it will reach nobody.
func (p *phase) bounce(seq int) {
	if p.sentAt[seq].Load() == 0 || p.bounced[seq].Swap(true) {
		return
	}
	p.errors.Add(1)
	p.poke()
}

func (p *phase) poke() {
	select {
	case p.progress <- struct{}{}:
	default:
	}
}

// finished reports whether message seq needs no more waiting for: every receiver has it, or it
// bounced.
func (p *phase) finished(seq int) bool {
	return int(p.got[seq].Load()) == p.receivers || p.bounced[seq].Load()
}

// gotBy reports how many of the receivers have message seq.
func (p *phase) gotBy(seq int) int { return int(p.got[seq].Load()) }

// receiverCount is how many messages receiver r has got.
func (p *phase) receiverCount(r int) int {
	c := 0
	for i := range p.n {
		if p.seen[r*p.n+i].Load() {
			c++
		}
	}
	return c
}

// percentiles returns the p50 and p99 of the latencies recorded so far (nearest rank), or zeros.
func (p *phase) percentiles() (p50, p99 time.Duration) {
	p.mu.Lock()
	l := slices.Clone(p.lat)
	p.mu.Unlock()
	if len(l) == 0 {
		return 0, 0
	}
	slices.Sort(l)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(l)))) - 1
		return l[min(max(i, 0), len(l)-1)]
	}
	return rank(0.50), rank(0.99)
}
